/**
 * Server side, several certificates: read the client's first TLS flight far enough to learn the
 * server name it asks for (SNI, RFC 6066 §3), pick the SecureContext for that name, put the bytes
 * back, and only then let OpenSSL see the handshake.
 *
 * Why not Node's SNICallback: a context returned from it is applied with one SSL_use_certificate
 * (Node's UseSNIContext copies the context's *current* certificate only), so a context holding an
 * ECDSA and an RSA pair for one name loses one of them, and the other key type is served from the
 * default context (nodejs/node#54235, verified on Node 20.20). A context given at TLSSocket
 * construction keeps every pair, and OpenSSL then picks ECDSA or RSA per client. So the choice is
 * made here, before the TLSSocket exists.
 *
 * Invariants:
 * - not one byte is lost or reordered: everything read is unshifted into the raw socket, which
 *   the TLSSocket constructor then feeds to OpenSSL (Node's initRead);
 * - anything that is not a well-formed ClientHello is no reason to refuse here: the default
 *   context is used and OpenSSL rejects the handshake with its own alert;
 * - bounded: at most MAX_HELLO_BYTES are held; the caller's handshake timeout and abort hook
 *   cover this step as well.
 */
import type { Socket } from 'node:net';
import type { SecureContext, TLSSocketOptions } from 'node:tls';

/** A ClientHello larger than this (post-quantum key shares are ~1-2 KiB) is not parsed. */
export const MAX_HELLO_BYTES = 64 * 1024;

const RECORD_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const NAME_TYPE_HOST_NAME = 0;
/** RFC 6066 §3: HostName is ASCII; we accept what may appear in a DNS name and nothing else. */
const HOST_NAME = /^[A-Za-z0-9_.-]{1,253}$/;

export type ClientHelloScan = { kind: 'incomplete' } | { kind: 'done'; servername: string | null };

/**
 * Scan the bytes received so far. 'incomplete': wait for more. 'done': the SNI host name, or null
 * when the client sent none or the bytes are not a ClientHello we can read (OpenSSL will judge).
 */
export function scanClientHello(buf: Uint8Array): ClientHelloScan {
  // RFC 8446 §5.1: records of type handshake(22); a ClientHello may be fragmented over several.
  const fragments: Uint8Array[] = [];
  let have = 0;
  let need = -1; // handshake message length including its 4-byte header, once known
  let pos = 0;
  while (need < 0 || have < need) {
    if (buf.length < pos + 5) return buf.length >= MAX_HELLO_BYTES ? done(null) : { kind: 'incomplete' };
    if (buf[pos] !== RECORD_HANDSHAKE) return done(null);
    const length = ((buf[pos + 3] ?? 0) << 8) | (buf[pos + 4] ?? 0);
    if (length === 0) return done(null);
    if (buf.length < pos + 5 + length) return buf.length >= MAX_HELLO_BYTES ? done(null) : { kind: 'incomplete' };
    fragments.push(buf.subarray(pos + 5, pos + 5 + length));
    have += length;
    pos += 5 + length;
    if (need < 0 && have >= 4) {
      const head = concat(fragments, 4);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return done(null);
      need = 4 + (((head[1] ?? 0) << 16) | ((head[2] ?? 0) << 8) | (head[3] ?? 0));
      if (need > MAX_HELLO_BYTES) return done(null);
    }
  }
  return done(serverName(concat(fragments, need).subarray(4)));
}

function done(servername: string | null): ClientHelloScan {
  return { kind: 'done', servername };
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    if (at >= length) break;
    const take = p.subarray(0, length - at);
    out.set(take, at);
    at += take.length;
  }
  return out;
}

/** The host_name of the server_name extension of a ClientHello body, or null. */
function serverName(body: Uint8Array): string | null {
  const u8 = (i: number): number => body[i] ?? 0;
  const u16 = (i: number): number => (u8(i) << 8) | u8(i + 1);
  // RFC 8446 §4.1.2 (same layout as RFC 5246 §7.4.1.2): version(2) random(32) session_id<0..32>
  // cipher_suites<2..2^16-2> compression_methods<1..2^8-1> extensions<8..2^16-1>.
  let pos = 34;
  pos += 1 + u8(pos);
  pos += 2 + u16(pos);
  pos += 1 + u8(pos);
  if (pos + 2 > body.length) return null; // no extensions at all: no SNI
  const end = Math.min(body.length, pos + 2 + u16(pos));
  pos += 2;
  while (pos + 4 <= end) {
    const type = u16(pos);
    const length = u16(pos + 2);
    const data = pos + 4;
    if (data + length > end) return null;
    if (type === EXT_SERVER_NAME) {
      // RFC 6066 §3: ServerNameList<1..2^16-1>, each { NameType name_type; HostName host_name<1..2^16-1> }.
      let p = data + 2;
      const listEnd = Math.min(data + length, data + 2 + u16(data));
      while (p + 3 <= listEnd) {
        const nameLength = u16(p + 1);
        if (p + 3 + nameLength > listEnd) return null;
        if (u8(p) === NAME_TYPE_HOST_NAME) {
          const name = Buffer.from(body.buffer, body.byteOffset + p + 3, nameLength).toString('latin1');
          return HOST_NAME.test(name) ? name : null;
        }
        p += 3 + nameLength;
      }
      return null;
    }
    pos = data + length;
  }
  return null;
}

type SniCallback = NonNullable<TLSSocketOptions['SNICallback']>;

/**
 * Wait for the ClientHello on `raw`, ask `options.SNICallback` for the context its server name
 * needs (no SNI → `options.secureContext`), and resolve with options for `new TLSSocket` that
 * carry that context and no SNICallback. The bytes read are back in `raw`, which is paused.
 * `timeoutMs` 0 means the caller enforces the deadline through `onAbort`.
 */
export function preselectContext(
  raw: Socket,
  options: TLSSocketOptions,
  timeoutMs: number,
  onAbort?: (abort: (err: Error) => void) => void,
): Promise<{ options: TLSSocketOptions; remainingMs: number }> {
  const { SNICallback: select, ...rest } = options;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    let held: Buffer = Buffer.alloc(0);
    let settled = false;
    const cleanup = (): void => {
      if (timer !== null) clearTimeout(timer);
      raw.off('data', onData);
      raw.off('end', onEnd);
      raw.off('close', onEnd);
      raw.off('error', fail);
    };
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      cleanup();
      raw.destroy();
      reject(err);
    };
    const finish = (secureContext: SecureContext | undefined): void => {
      if (settled) return;
      settled = true;
      cleanup();
      const remainingMs = timeoutMs > 0 ? Math.max(1, timeoutMs - (Date.now() - started)) : 0;
      resolve({ options: secureContext === undefined ? rest : { ...rest, secureContext }, remainingMs });
    };
    const onEnd = (): void => fail(new Error('connection closed during TLS handshake'));
    const onData = (chunk: Buffer): void => {
      held = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
      const scan = scanClientHello(held);
      if (scan.kind === 'incomplete') return;
      // Stop reading and give the bytes back before anything else can run.
      raw.off('data', onData);
      raw.pause();
      raw.unshift(held);
      if (scan.servername === null || select === undefined) return finish(undefined);
      try {
        pick(select, scan.servername, (err, ctx) => (err ? fail(err) : finish(ctx)));
      } catch (err) {
        fail(err instanceof Error ? err : new Error(String(err)));
      }
    };
    const timer =
      timeoutMs > 0
        ? setTimeout(() => fail(Object.assign(new Error('TLS handshake timed out'), { code: 'TLS_HANDSHAKE_TIMEOUT' })), timeoutMs)
        : null;
    onAbort?.(fail);
    raw.on('data', onData);
    raw.once('end', onEnd);
    raw.once('close', onEnd);
    raw.once('error', fail);
    // A paused socket (STARTTLS stops reading before the 220) does not flow on 'data' alone.
    raw.resume();
  });
}

function pick(select: SniCallback, servername: string, cb: (err: Error | null, ctx: SecureContext | undefined) => void): void {
  let called = false;
  select(servername, (err, ctx) => {
    if (called) return;
    called = true;
    cb(err, ctx ?? undefined);
  });
}
