/**
 * ARC (RFC 8617) by an independent implementation: Debian's python3-dkim (`dkim.arc_sign`,
 * `dkim.arc_verify`; its AR parsing needs python3-authres), run with /usr/bin/python3 (the
 * distribution's modules). DNS questions go to the test DNS server (dnspython, a real UDP query).
 */
import { execFileSync, spawn } from 'node:child_process';

/**
 * Runs /usr/bin/python3 without blocking the event loop: the test DNS server lives in this
 * process and must answer while python waits for it.
 */
function python(args: string[], input: Buffer, env: NodeJS.ProcessEnv = process.env): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/python3', args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`python3 exited ${code}: ${Buffer.concat(err).toString()}`))));
    child.stdin.end(input);
  });
}

const DNSFUNC = `
import dns.resolver
def make_dnsfunc(port):
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ['127.0.0.1']
    r.port = port
    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        try:
            ans = r.resolve(n.rstrip('.'), 'TXT', lifetime=timeout)
        except Exception:
            return None
        for rr in ans:
            return b''.join(rr.strings)
        return None
    return dnsfunc
`;

export interface PyArcResult {
  /** 'pass' | 'fail' | 'none'; null when a seal reports cv=fail ("the chain is terminated"). */
  cv: string | null;
  reason: string;
  /** Instances validated (newest first), as dkimpy lists them, and each one's AMS and AS validity. */
  instances: number[];
  amsValid: boolean[];
  asValid: boolean[];
}

/** dkim.arc_verify of `msg` (asynchronous: the DNS server is in this process), keys from the test DNS server on `dnsPort`. */
export async function pythonArcVerify(msg: Buffer, dnsPort: number): Promise<PyArcResult> {
  const script = `${DNSFUNC}
import dkim, sys, json
msg = sys.stdin.buffer.read()
cv, results, reason = dkim.arc_verify(msg, dnsfunc=make_dnsfunc(int(sys.argv[1])))
print(json.dumps({'cv': cv.decode() if cv is not None else None, 'reason': reason,
                  'instances': [r.get('instance') for r in results],
                  'amsValid': [bool(r.get('ams-valid')) for r in results],
                  'asValid': [bool(r.get('as-valid')) for r in results]}))
`;
  const out = await python(['-c', script, String(dnsPort)], msg);
  return JSON.parse(out.toString()) as PyArcResult;
}

/**
 * Adds `count` ARC Sets with dkim.arc_sign (d=domain, s=selector, authserv-id srvId): the first
 * with cv=none, the later ones over an AR saying arc=pass (cv=pass), as a chain of list servers
 * would. `keyPem`: PKCS#1 RSA.
 */
export function pythonArcSign(msg: Buffer, o: { domain: string; selector: string; keyPem: string; srvId: string; count?: number }): Buffer {
  const script = `
import dkim, sys, os
msg = sys.stdin.buffer.read()
key = os.environ['ARC_KEY'].encode()
arcs = b''
for n in range(int(sys.argv[4])):
    ar = b'Authentication-Results: ' + sys.argv[3].encode() + b'; spf=pass smtp.mailfrom=example.org' + (b'; arc=pass' if n > 0 else b'') + b'\\r\\n'
    sigs = dkim.arc_sign(ar + arcs + msg, sys.argv[2].encode(), sys.argv[1].encode(), key, sys.argv[3].encode(),
                         include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])
    if not sigs:
        sys.exit('arc_sign made no ARC set at instance %d' % (n + 1))
    arcs = b''.join(sigs) + arcs
sys.stdout.buffer.write(arcs + msg)
`;
  return execFileSync('/usr/bin/python3', ['-c', script, o.domain, o.selector, o.srvId, String(o.count ?? 1)], {
    input: msg,
    env: { ...process.env, ARC_KEY: o.keyPem },
    maxBuffer: 64 << 20,
  });
}
