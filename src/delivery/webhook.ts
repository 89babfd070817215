/**
 * The webhook delivery target (`webhook:URL`, issue 12): one HTTP(S) POST per message, for all its
 * recipients, signed with HMAC-SHA256 over a timestamp and the body (Stripe-style), so the
 * receiving application can tell the call is ours and fresh.
 *
 * Body: `message/rfc822` (the message as stored, CRLF, our Received header first) or, with
 * format 'json', `application/json`:
 *   { id, receivedAt, envelope: { mailFrom, recipients }, headers: [{ name, value }] (in order,
 *     unfolded), tls, authResults, quarantine, raw: base64 of the message }.
 * Headers: `Idempotency-Key: <queue id>` (the same on every retry: a receiver de-duplicates on it),
 * `X-Postseal-Timestamp: <unix seconds>`, `X-Postseal-Signature: v1=<hex HMAC-SHA256(secret,
 * timestamp + "." + body)>`.
 *
 * How a receiver verifies a call (also in docs/delivery.md):
 *   1. take the raw request body bytes (before any JSON parsing) and the timestamp header;
 *   2. reject when |now - timestamp| > 300 s (the replay window: 5 minutes);
 *   3. compute hex HMAC-SHA256 with the shared secret over `${timestamp}.` followed by the body;
 *   4. compare it with the `v1=` value in constant time (crypto.timingSafeEqual); reject otherwise;
 *   5. de-duplicate on Idempotency-Key (a retry after a lost answer carries the same key).
 *
 * Outcomes (all recipients alike): 2xx → delivered; 4xx except 408 and 429 → failed (the
 * receiver refuses it: bounce); 408, 429, 5xx, other codes, a timeout, a connection or TLS error
 * → deferred (retried with the queue's backoff); 3xx → deferred (redirects are not followed: the
 * URL is wrong, and following one would send the mail where the operator did not configure).
 *
 * Invariants: never throws; the whole call (connect to the last byte of the answer) has one
 * deadline; at most maxResponseBytes of the answer are read and they are discarded; https
 * verifies the certificate (system roots plus `ca`, never rejectUnauthorized: false).
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { DeliveryTarget, LocalDelivery, RecipientOutcome } from './types.js';

/** How far a receiver should accept a timestamp from its clock (seconds); documented, used by receivers. */
export const WEBHOOK_REPLAY_WINDOW_S = 300;

/** Deadline of one call when none is given (the default of config delivery.webhook.timeoutMs). */
export const WEBHOOK_TIMEOUT_MS = 30_000;

export interface WebhookOptions {
  /** http: or https: URL the POST goes to. */
  url: string;
  /** The shared secret the signature is made with. */
  secret: string;
  /** 'raw' (message/rfc822, the default) or 'json'. */
  format?: 'raw' | 'json';
  /** Whole call deadline (default 30 s). */
  timeoutMs?: number;
  /** Extra trusted CAs (PEM) for https:, besides the system roots. */
  ca?: string[];
  /** Most bytes of the answer read (default 64 KiB); the rest is not read (the connection is closed). */
  maxResponseBytes?: number;
  /** Clock for the timestamp (ms); default Date.now. */
  now?: () => number;
}

/** The signature header value for a timestamp and a body. */
export function webhookSignature(secret: string, timestamp: string, body: Buffer): string {
  const h = createHmac('sha256', secret);
  h.update(`${timestamp}.`);
  h.update(body);
  return `v1=${h.digest('hex')}`;
}

/** Header fields of a message in order, unfolded (RFC 5322 §2.2.3), values without the leading blank. */
export function parseHeaderFields(data: Buffer): Array<{ name: string; value: string }> {
  let end = data.indexOf('\r\n\r\n');
  end = end < 0 ? data.length : end + 2;
  const text = data.subarray(0, end).toString('utf8');
  const out: Array<{ name: string; value: string }> = [];
  for (const line of text.split('\r\n')) {
    if (line === '') continue;
    const last = out[out.length - 1];
    if ((line.startsWith(' ') || line.startsWith('\t')) && last !== undefined) {
      last.value += line;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    out.push({ name: line.slice(0, colon).trimEnd(), value: line.slice(colon + 1).replace(/^[ \t]+/, '') });
  }
  return out;
}

/** The JSON body of format 'json'. */
export function webhookJson(msg: LocalDelivery): Buffer {
  return Buffer.from(
    JSON.stringify({
      id: msg.id,
      receivedAt: msg.summary.receivedAt,
      envelope: { mailFrom: msg.mailFrom, recipients: msg.recipients },
      headers: parseHeaderFields(msg.data),
      tls: msg.summary.tls,
      authResults: msg.summary.authResults,
      quarantine: msg.summary.quarantine,
      raw: msg.data.toString('base64'),
    }),
  );
}

type CallResult = { kind: 'delivered' } | { kind: 'deferred' | 'failed'; error: string };

/** Outcome for an HTTP status. */
export function classifyStatus(status: number): 'delivered' | 'deferred' | 'failed' {
  if (status >= 200 && status < 300) return 'delivered';
  // 408 Request Timeout and 429 Too Many Requests (RFC 9110 §15.5.9, RFC 6585 §4) ask to come back later.
  if (status === 408 || status === 429) return 'deferred';
  if (status >= 400 && status < 500) return 'failed';
  return 'deferred';
}

export class WebhookTarget implements DeliveryTarget {
  private readonly opts: WebhookOptions;

  constructor(opts: WebhookOptions) {
    this.opts = opts;
  }

  async deliver(msg: LocalDelivery, signal?: AbortSignal): Promise<RecipientOutcome[]> {
    let r: CallResult;
    try {
      r = await this.call(msg, signal);
    } catch (err) {
      r = { kind: 'deferred', error: `webhook: ${err instanceof Error ? err.message : String(err)}` };
    }
    return msg.recipients.map((recipient): RecipientOutcome => (r.kind === 'delivered' ? { recipient, outcome: 'delivered' } : { recipient, outcome: r.kind, error: r.error }));
  }

  private call(msg: LocalDelivery, signal?: AbortSignal): Promise<CallResult> {
    const o = this.opts;
    let url: URL;
    try {
      url = new URL(o.url);
    } catch {
      return Promise.resolve({ kind: 'failed', error: `webhook: ${JSON.stringify(o.url)} is not a URL` });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return Promise.resolve({ kind: 'failed', error: `webhook: ${url.protocol} URLs are not supported (http: or https:)` });
    const json = o.format === 'json';
    // Raw: the stored Buffer is the body as it is (no copy).
    const body = json ? webhookJson(msg) : msg.data;
    const timestamp = String(Math.floor((o.now ?? Date.now)() / 1000));
    const timeoutMs = o.timeoutMs ?? WEBHOOK_TIMEOUT_MS;
    const cap = o.maxResponseBytes ?? 64 * 1024;
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const where = `${url.origin}${url.pathname}`;
    return new Promise<CallResult>((resolve) => {
      let settled = false;
      const finish = (r: CallResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        req.destroy();
        resolve(r);
      };
      const defer = (why: string): void => finish({ kind: 'deferred', error: `webhook ${where}: ${why}` });
      const common = {
        host,
        port: url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: 'POST',
        ...(url.username !== '' ? { auth: `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` } : {}),
        headers: {
          'content-type': json ? 'application/json' : 'message/rfc822',
          'content-length': String(body.length),
          'user-agent': 'postseal-webhook',
          'idempotency-key': msg.id,
          'x-postseal-timestamp': timestamp,
          'x-postseal-signature': webhookSignature(o.secret, timestamp, body),
        },
        agent: false as const,
      };
      const onResponse = (res: http.IncomingMessage): void => {
        const status = res.statusCode ?? 0;
        let size = 0;
        const settle = (): void => {
          const kind = classifyStatus(status);
          if (kind === 'delivered') finish({ kind });
          else if (status >= 300 && status < 400) defer(`HTTP ${status}: redirects are not followed (is the webhook URL right?${res.headers.location !== undefined ? ` it points to ${JSON.stringify(res.headers.location.slice(0, 200))}` : ''})`);
          else if (kind === 'failed') finish({ kind, error: `webhook ${where}: HTTP ${status} (refused: permanent)` });
          else defer(`HTTP ${status}`);
        };
        res.on('data', (c: Buffer) => {
          // The answer is read to be discarded, and bounded: past the cap the status decides alone.
          size += c.length;
          if (size > cap) settle();
        });
        res.on('end', settle);
        res.on('error', (e) => defer(e.message));
        res.on('aborted', () => defer('the answer was cut off'));
      };
      const req =
        url.protocol === 'https:'
          ? https.request(
              {
                ...common,
                // SNI carries host names only (RFC 6066 §3); the certificate is checked against the host either way.
                ...(net.isIP(host) === 0 ? { servername: host } : {}),
                // PKIX: system roots plus the operator's CAs; never rejectUnauthorized: false.
                ca: [...tls.rootCertificates, ...(o.ca ?? [])],
              },
              onResponse,
            )
          : http.request(common, onResponse);
      const timer = setTimeout(() => defer(`no complete answer within ${timeoutMs} ms`), timeoutMs);
      const onAbort = (): void => defer('delivery aborted');
      if (signal?.aborted === true) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (e) => defer(e.message));
      req.end(body);
    });
  }
}
