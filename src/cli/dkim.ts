/**
 * `postseal dkim keygen|list|activate|remove` (DKIM keys in the data directory, src/auth/dkim-keys.ts)
 * and `postseal dns-records DOMAIN` (what to publish, src/auth/dns-records.ts). Printing only.
 */
import type { Command } from 'commander';
import { activateKey, DKIM_ALGORITHMS, generateKey, listKeys, removeKey, zoneLine, type DkimAlgorithm } from '../auth/dkim-keys.js';
import { dnsRecords } from '../auth/dns-records.js';
import { loadConfigFile } from '../config.js';
import { ConfigError } from '../errors.js';
import { DEFAULT_DATA_DIR } from './common.js';

export function registerDkim(program: Command): void {
  const dkim = program.command('dkim').description('DKIM signing keys per sender domain (rotation: keygen, publish, activate, later remove)');
  dkim
    .command('keygen')
    .argument('<domain>', 'the sender (From) domain')
    .option('--selector <selector>', 'selector (default: ed|rsa + YYYYMM)')
    .option('--algorithm <alg>', 'ed25519 or rsa (RSA-2048)', 'ed25519')
    .option('--data <dir>', 'data directory', DEFAULT_DATA_DIR)
    .action((domain: string, flags: { selector?: string; algorithm: string; data: string }) => {
      if (!(DKIM_ALGORITHMS as readonly string[]).includes(flags.algorithm)) throw new ConfigError(`dkim keygen: --algorithm must be ed25519 or rsa, not ${JSON.stringify(flags.algorithm)}`);
      const key = generateKey(flags.data, domain, { algorithm: flags.algorithm as DkimAlgorithm, ...(flags.selector !== undefined ? { selector: flags.selector } : {}) });
      process.stdout.write(`# ${key.algorithm} key ${key.selector} for ${key.domain}: ${key.file}${key.active ? ' (active)' : ' (not active yet: publish, wait for the TTL, then postseal dkim activate)'}\n`);
      process.stdout.write(`# publish:\n${zoneLine(key)}\n`);
    });
  dkim
    .command('list')
    .argument('[domain]', 'only this domain')
    .option('--json', 'JSON output')
    .option('--data <dir>', 'data directory', DEFAULT_DATA_DIR)
    .action((domain: string | undefined, flags: { json?: boolean; data: string }) => {
      const keys = listKeys(flags.data, domain);
      if (flags.json) {
        const rows = keys.map((k) => ({ domain: k.domain, selector: k.selector, algorithm: k.algorithm, active: k.active, file: k.file, name: `${k.selector}._domainkey.${k.domain}`, record: k.record }));
        process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
        return;
      }
      for (const k of keys) process.stdout.write(`${k.domain}\t${k.selector}\t${k.algorithm}\t${k.active ? 'active' : '-'}\n`);
    });
  dkim
    .command('activate')
    .description('sign with this selector from now on (the previous key of its algorithm stays on disk and published)')
    .argument('<domain>')
    .argument('<selector>')
    .option('--data <dir>', 'data directory', DEFAULT_DATA_DIR)
    .action((domain: string, selector: string, flags: { data: string }) => {
      const k = activateKey(flags.data, domain, selector);
      process.stdout.write(`${k.domain}: ${k.algorithm} signing with ${k.selector}\n`);
    });
  dkim
    .command('remove')
    .description('delete a key (afterwards, remove its DNS record)')
    .argument('<domain>')
    .argument('<selector>')
    .option('--force', 'remove even the active key (that algorithm then signs nothing)')
    .option('--data <dir>', 'data directory', DEFAULT_DATA_DIR)
    .action((domain: string, selector: string, flags: { data: string; force?: boolean }) => {
      const k = removeKey(flags.data, domain, selector, { force: flags.force === true });
      process.stdout.write(`removed ${k.selector} (${k.algorithm}) of ${k.domain}; its record ${k.selector}._domainkey.${k.domain} can go\n`);
    });
  program
    .command('dns-records')
    .description('the DNS records to publish for a sending domain: MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT')
    .argument('<domain>')
    .option('--hostname <host>', 'the mail host (MX and MTA-STS mx:)', undefined)
    .option('--data <dir>', 'data directory', DEFAULT_DATA_DIR)
    .option('--config <file>', "serve's config file: its hostname, data directory and http.mtaSts policy (the _mta-sts id then matches the policy serve serves)")
    .action((domain: string, flags: { hostname?: string; data: string; config?: string }) => {
      // With --config: the MX host is serve's hostname and the MTA-STS policy is http.mtaSts (mx default: hostname), as src/http/mta-sts.ts serves it.
      const cfg = flags.config !== undefined ? loadConfigFile(flags.config) : null;
      const hostname = flags.hostname ?? cfg?.hostname;
      const sts = cfg?.http.mtaSts;
      const dataDir = cfg !== null && flags.data === DEFAULT_DATA_DIR ? cfg.dataDir : flags.data;
      for (const r of dnsRecords(domain, { dataDir, ...(hostname !== undefined ? { hostname } : {}), ...(sts !== undefined ? { mtaSts: { mode: sts.mode, maxAge: sts.maxAge, mx: sts.mx } } : {}) })) {
        if (r.kind === 'MTA-STS-POLICY') process.stdout.write(`; ${r.kind}: ${r.note}\n; ${r.name}:\n${r.text.trimEnd().replace(/^/gm, ';   ')}\n`);
        else process.stdout.write(`; ${r.kind}: ${r.note}\n${r.text}\n`);
      }
    });
}
