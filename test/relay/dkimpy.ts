/**
 * Independent DKIM verification for tests: Debian's python3-dkim (dkimpy) run by /usr/bin/python3
 * (pyenv's python3 comes first in PATH and lacks the module), with a dnsfunc that answers from
 * the TXT records we publish (given as a JSON map name → record text), so no DNS is involved.
 */
import { spawn, spawnSync } from 'node:child_process';
import { listKeys } from '../../src/auth/dkim-keys.js';

const PY = '/usr/bin/python3';
export const hasDkimpy = spawnSync(PY, ['-c', 'import dkim'], { stdio: 'ignore' }).status === 0;
// Tests skip without it on a developer machine; on CI=true (.ci/run installs python3-dkim) a
// missing module fails every file that imports this one instead of skipping their checks.
if (!hasDkimpy && process.env.CI === 'true') throw new Error(`${PY} cannot import dkim: .ci/run must install python3-dkim`);

const PY_VERIFY = `
import sys, json, dkim
txt = {k.lower().rstrip('.'): v for k, v in json.loads(sys.argv[1]).items()}
def dnsfunc(name, timeout=5):
    return txt.get(name.decode().lower().rstrip('.'), '').encode() or None
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
n = len([l for l in msg.split(b'\\r\\n\\r\\n')[0].split(b'\\r\\n') if l.lower().startswith(b'dkim-signature:')])
def one(i):
    try:
        return 'pass' if d.verify(idx=i, dnsfunc=dnsfunc) else 'fail'
    except dkim.DKIMException:
        return 'fail'
print(' '.join(one(i) for i in range(n)))
`;

/** The TXT records of every key of a domain in the data directory, as published. */
export function publishedTxt(dataDir: string, domain: string): Record<string, string> {
  return Object.fromEntries(listKeys(dataDir, domain).map((k) => [`${k.selector}._domainkey.${domain}`, k.record.join('')]));
}

/** 'pass pass' / 'fail' …: one word per DKIM-Signature field, top first; '' when none. */
export function dkimpyVerify(msg: Uint8Array, txt: Record<string, string>): Promise<string> {
  return runPython(PY_VERIFY, [JSON.stringify(txt)], msg);
}

/** Runs a script with /usr/bin/python3 (30 s at most), the message on stdin: its stdout, trimmed. */
export function runPython(script: string, args: string[], msg: Uint8Array): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(PY, ['-c', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 });
    let out = '';
    let err = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.stderr.on('data', (b: Buffer) => (err += b.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`dkimpy exited ${String(code)}: ${err}`))));
    p.stdin.end(msg);
  });
}

/** The DKIM-Signature fields of a message's header, unfolded. */
export function dkimSignatures(msg: Uint8Array): string[] {
  const text = Buffer.from(msg).toString('latin1');
  const head = text.slice(0, text.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ');
  return head.split('\r\n').filter((l) => /^DKIM-Signature:/i.test(l));
}
