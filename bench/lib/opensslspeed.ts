/**
 * `openssl speed` for the handshake primitives of the bench certificate, on the server core: the
 * per-core ceiling of full TLS 1.3 handshakes if a server did nothing but the asymmetric crypto
 * (server side: one X25519 key generation + one derivation, one signature).
 */
import { spawnSync } from 'node:child_process';
import type { CertType } from './pki.js';

export interface SpeedResult {
  command: string;
  version: string;
  x25519PerSec: number | null;
  ecdsaP256SignPerSec: number | null;
  ecdsaP256VerifyPerSec: number | null;
  rsa2048SignPerSec: number | null;
  /** 1 / (2/x25519 + 1/sign): server-side asymmetric crypto only. */
  handshakeCeilingPerSec: number | null;
  raw: string;
}

export function opensslSpeed(seconds: number, certType: CertType, core: number | null): SpeedResult {
  const algs = ['ecdhx25519', 'ecdsap256', ...(certType === 'rsa' ? ['rsa2048'] : [])];
  const argv = [...(core === null ? [] : ['taskset', '-c', String(core)]), 'openssl', 'speed', '-seconds', String(seconds), ...algs];
  const r = spawnSync(argv[0] as string, argv.slice(1), { encoding: 'utf8', timeout: 120_000 });
  const out = r.stdout ?? '';
  const version = spawnSync('openssl', ['version'], { encoding: 'utf8' }).stdout.trim();
  const num = (re: RegExp): number | null => {
    const m = re.exec(out);
    return m ? Number(m[1]) : null;
  };
  const ecdsa = /ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)/.exec(out);
  const res: SpeedResult = {
    command: argv.join(' '),
    version,
    x25519PerSec: num(/ecdh \(X25519\)\s+\S+\s+([\d.]+)/),
    ecdsaP256SignPerSec: ecdsa ? Number(ecdsa[1]) : null,
    ecdsaP256VerifyPerSec: ecdsa ? Number(ecdsa[2]) : null,
    rsa2048SignPerSec: num(/rsa 2048 bits\s+\S+\s+\S+\s+([\d.]+)/),
    handshakeCeilingPerSec: null,
    raw: out.split('\n').filter((l) => /ecdsa|ecdh|rsa|sign|op/.test(l)).join('\n'),
  };
  const sign = certType === 'rsa' ? res.rsa2048SignPerSec : res.ecdsaP256SignPerSec;
  if (res.x25519PerSec && sign) res.handshakeCeilingPerSec = 1 / (2 / res.x25519PerSec + 1 / sign);
  return res;
}
