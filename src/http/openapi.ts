/**
 * The OpenAPI 3.1 description of `/api/v1` (served at `GET /api/v1/openapi.json`). Response schemas
 * are JSON Schema 2020-12 (OpenAPI 3.1's dialect); test/http/api.test.ts validates real responses
 * against them, so a change of a route's JSON without a change here fails the tests.
 *
 * Invariants: every route of src/http/api/ is listed with its success and error responses; the
 * report schemas pin the top level of `postseal check --json` (src/check/SCHEMA.md has the rest).
 */

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const nullable = (s: Schema): Schema => ({ anyOf: [s, { type: 'null' }] });
const str: Schema = { type: 'string' };
const strOrNull: Schema = { type: ['string', 'null'] };
const int: Schema = { type: 'integer' };
const bool: Schema = { type: 'boolean' };
const obj = (properties: Record<string, Schema>, required: string[] = Object.keys(properties)): Schema => ({ type: 'object', properties, required });
const json = (schema: Schema, description: string): Schema => ({ description, content: { 'application/json': { schema } } });
const err = (description: string): Schema => json(ref('Error'), description);
const idParam = (description: string): Schema => ({ name: 'id', in: 'path', required: true, description, schema: str });

const schemas: Record<string, Schema> = {
  Error: {
    ...obj({ error: { anyOf: [obj({ code: str, message: str }), str] } }),
    description: 'Route errors carry {code, message} (code from src/errors.ts); the auth layer (401/403) and the body limit (413) answer {error: "text"}.',
  },
  TlsFacts: obj({ protocol: str, cipher: str, group: strOrNull, sni: strOrNull, alpn: strOrNull }),
  AuthVerdicts: obj({
    spf: obj({ result: str, domain: strOrNull, comment: strOrNull }),
    dkim: { type: 'array', items: obj({ result: str, domain: strOrNull, selector: strOrNull, aligned: strOrNull, comment: strOrNull }) },
    dkimOmitted: int,
    dmarc: obj({ result: str, domain: strOrNull, policy: strOrNull, comment: strOrNull }),
    arc: obj({ result: str, comment: strOrNull }),
  }),
  MessageSummary: {
    ...obj({
      id: str, receivedAt: { type: 'string', format: 'date-time' }, mailFrom: str, recipients: { type: 'array', items: str },
      size: int, listener: str, clientAddress: str, heloName: str, authUser: strOrNull, tls: nullable(ref('TlsFacts')),
      requireTls: bool, authResults: nullable(ref('AuthVerdicts')), quarantine: bool,
    }),
    description: 'The fields of `postseal mailbox list --json`.',
  },
  MessageDetail: { allOf: [ref('MessageSummary'), obj({ rawUrl: str })] },
  TlsOutcome: obj({ host: strOrNull, levelAsked: str, levelReached: str, protocol: strOrNull, cipher: strOrNull, verified: bool, whyNot: strOrNull }),
  QueueEntry: {
    ...obj({
      id: str, mailFrom: str, recipient: str, domain: str, target: strOrNull,
      status: { enum: ['queued', 'deferred', 'delivered', 'failed'] }, attempts: int, nextAttemptAt: str, lastError: strOrNull,
      lastTls: nullable(ref('TlsOutcome')), claimedUntil: strOrNull, requireTls: bool,
      dsn: obj({ envId: strOrNull, ret: { enum: ['FULL', 'HDRS', null] }, notify: { type: ['array', 'null'], items: str }, orcpt: strOrNull }),
    }),
    description: 'A row of `postseal queue list --json`.',
  },
  QueueAttempt: obj({
    recipient: str, at: str, outcome: { enum: ['delivered', 'deferred', 'failed'] }, error: strOrNull,
    tls: nullable(ref('TlsOutcome')), nextAttemptAt: strOrNull,
  }),
  QueueShow: {
    ...obj({ message: nullable(ref('MessageSummary')), recipients: { type: 'array', items: ref('QueueEntry') }, attempts: { type: 'array', items: ref('QueueAttempt') } }),
    description: '`postseal queue show ID --json`: each attempt with its TLS outcome (level asked by the policy, level reached).',
  },
  User: obj({ address: str, admin: bool }),
  Explanation: {
    ...obj({
      domain: str, mx: obj({ kind: str, secure: bool }),
      mtaSts: obj({ enabled: bool, from: strOrNull, id: strOrNull, mode: strOrNull, mx: { type: 'array', items: str }, expiresAt: strOrNull, failure: strOrNull }),
      dane: obj({ enabled: bool }), table: strOrNull, defaultLevel: str, source: str,
      hosts: {
        type: 'array',
        items: obj({
          host: str, preference: int, addresses: { type: 'array', items: str }, addressesSecure: bool,
          tlsa: nullable({ type: 'object' }), matchesPolicy: { type: ['boolean', 'null'] }, allowed: bool, level: str,
          verifyName: str, source: str, rule: str, rfc: str, connect: { type: ['array', 'null'] },
        }),
      },
      summary: str,
    }),
    description: '`postseal policy explain DOMAIN --json` (without --connect).',
  },
  CheckRequest: {
    type: 'object',
    description: 'Exactly one of target and domain.',
    properties: {
      target: { type: 'string', description: 'HOST[:PORT] (port 25 by default; 465 means implicit TLS)', maxLength: 300 },
      domain: { type: 'string', description: 'check every MX host and address, and the domain policies' },
      port: { type: 'integer', minimum: 1, maximum: 65535 },
      starttls: { type: 'boolean', description: 'target only: false = implicit TLS from the first byte' },
    },
    additionalProperties: false,
  },
  CheckAccepted: obj({ id: { type: 'string', pattern: '^[A-Za-z0-9_-]{22}$' }, status: { const: 'running' }, url: str }),
  CheckProgress: { ...obj({ t: int, step: str, detail: str, address: str }, ['t', 'step', 'detail']) },
  CheckRunning: obj({ id: str, status: { const: 'running' }, kind: { enum: ['host', 'domain'] }, target: str, progress: { type: 'array', items: ref('CheckProgress') } }),
  Finding: obj({ id: str, severity: { enum: ['critical', 'high', 'medium', 'low', 'info'] }, title: str, detail: str, where: str }),
  Grade: { type: ['string', 'null'] },
  HostReport: {
    ...obj({
      schemaVersion: { const: 1 }, kind: { const: 'host' },
      target: obj({ host: str, address: str, port: int, mode: { enum: ['starttls', 'implicit'] }, submission: bool }),
      startedAt: { type: 'string', format: 'date-time' }, durationMs: int, status: { enum: ['checked', 'error'] },
      error: nullable(obj({ code: str, message: str })), grade: ref('Grade'), findings: { type: 'array', items: ref('Finding') },
      smtp: { type: 'object', required: ['greeting', 'ehlo', 'starttlsAdvertised', 'starttlsReply', 'ehloAfterTls'] },
      tls: nullable({ type: 'object', required: ['protocol', 'cipher', 'versions', 'cipherClasses'] }),
      certificate: nullable({ type: 'object', required: ['chain'] }),
      probes: { type: 'object' },
      transcript: { type: 'array', items: { type: 'object', required: ['dir', 'tls', 'text'], properties: { dir: str, tls: bool, text: str } } },
    }),
    description: '`postseal check HOST --json` (src/check/SCHEMA.md).',
  },
  DomainReport: {
    ...obj({
      schemaVersion: { const: 1 }, kind: { const: 'domain' }, domain: str, startedAt: str, durationMs: int,
      status: { enum: ['checked', 'error'] }, error: nullable(obj({ code: str, message: str })), grade: ref('Grade'),
      downgrade: str, findings: { type: 'array', items: ref('Finding') },
      mx: obj({ nullMx: bool, implicit: bool, hosts: { type: 'array', items: obj({ name: str, preference: int, addresses: { type: 'array', items: str }, lookupFailed: bool }) } }),
      hosts: { type: 'array', items: ref('HostReport') },
      mtaSts: { type: 'object' }, tlsRpt: { type: 'object' }, dane: { type: 'array' }, spf: { type: 'object' }, dmarc: { type: 'object' }, dkim: { type: 'object' },
    }),
    description: '`postseal check --domain D --json` (src/check/SCHEMA.md).',
  },
  CheckErrorReport: obj({ schemaVersion: { const: 1 }, kind: { enum: ['host', 'domain'] }, status: { const: 'error' }, error: obj({ code: str, message: str }) }),
};

const unauthorized = err('No bearer token and no console session.');

export const OPENAPI = {
  openapi: '3.1.0',
  jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
  info: {
    title: 'postseal API',
    version: '1',
    description: 'The JSON API of `postseal serve --http`: the checker, received messages, the queue, users and sending policy. ' +
      'Every path needs `Authorization: Bearer TOKEN` (`postseal token create --name NAME`) or a console session cookie; ' +
      'state-changing requests made with the cookie also need the CSRF token (`X-CSRF-Token`), those with a bearer token do not.',
  },
  servers: [{ url: '/api/v1' }],
  security: [{ bearer: [] }, { session: [] }],
  components: {
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer' },
      session: { type: 'apiKey', in: 'cookie', name: 'postseal_session' },
    },
    schemas,
  },
  paths: {
    '/checks': {
      post: {
        summary: 'Start a check of one server (target) or of a domain\'s MX set',
        description: 'Targets that resolve to private, loopback, link-local, unique-local, CGNAT, multicast or unspecified addresses are refused (422) unless serve runs with --http-check-private. Per client: 10 checks a minute, 2 running at once.',
        requestBody: { required: true, content: { 'application/json': { schema: ref('CheckRequest') } } },
        responses: {
          202: json(ref('CheckAccepted'), 'Started; poll `url` or stream `url`/events.'),
          400: err('The body is not a valid check request.'),
          401: unauthorized,
          403: err('Missing CSRF token (cookie session).'),
          413: err('Body over 4096 bytes.'),
          422: err('Target refused (SSRF guard: CHECK_TARGET_REFUSED) or not resolvable (CHECK_DNS).'),
          429: { ...err('Rate limited (HTTP_RATE_LIMITED).'), headers: { 'Retry-After': { schema: int } } },
        },
      },
    },
    '/checks/{id}': {
      get: {
        summary: 'A check: its progress while running, the report of `postseal check --json` when done',
        parameters: [idParam('check id (128 random bits)')],
        responses: {
          200: json({ anyOf: [ref('CheckRunning'), ref('HostReport'), ref('DomainReport'), ref('CheckErrorReport')] }, 'Running, or the finished report.'),
          401: unauthorized,
          404: err('Unknown or expired (results are kept an hour).'),
        },
      },
    },
    '/checks/{id}/events': {
      get: {
        summary: 'Server-Sent Events: `progress` (CheckProgress) per step as it happens, then `done` (the report)',
        parameters: [idParam('check id')],
        responses: { 200: { description: 'An event stream', content: { 'text/event-stream': { schema: str } } }, 401: unauthorized, 404: err('Unknown or expired.') },
      },
    },
    '/messages': {
      get: {
        summary: 'Received messages, newest first (`postseal mailbox list --json`)',
        parameters: [
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 10000, default: 100 } },
          { name: 'mailbox', in: 'query', schema: str, description: 'only messages for this local address' },
          { name: 'all', in: 'query', schema: { enum: ['true', '1', 'false', '0'] }, description: 'also messages only relayed out' },
        ],
        responses: { 200: json({ type: 'array', items: ref('MessageSummary') }, 'Messages'), 400: err('Bad limit.'), 401: unauthorized },
      },
    },
    '/messages/{id}': {
      get: {
        summary: 'One message: summary with TLS facts and authentication results',
        parameters: [idParam('message id')],
        responses: { 200: json(ref('MessageDetail'), 'The message'), 401: unauthorized, 404: err('No such message.') },
      },
    },
    '/messages/{id}/raw': {
      get: {
        summary: 'The stored message bytes, as a download (never rendered inline)',
        parameters: [idParam('message id')],
        responses: { 200: { description: 'RFC 5322 message', content: { 'message/rfc822': { schema: str } } }, 401: unauthorized, 404: err('No such message.') },
      },
    },
    '/queue': {
      get: {
        summary: 'Queue rows (`postseal queue list --json`)',
        parameters: [{ name: 'status', in: 'query', schema: { enum: ['queued', 'deferred', 'delivered', 'failed'] } }],
        responses: { 200: json({ type: 'array', items: ref('QueueEntry') }, 'Rows'), 400: err('Unknown status.'), 401: unauthorized },
      },
    },
    '/queue/{id}': {
      get: {
        summary: 'One queued message with its attempts (`postseal queue show ID --json`)',
        parameters: [idParam('message id')],
        responses: { 200: json(ref('QueueShow'), 'Rows and attempts'), 401: unauthorized, 404: err('Not in the queue.') },
      },
      delete: {
        summary: 'Delete the message\'s queue rows (`postseal queue delete ID`)',
        parameters: [idParam('message id'), { name: 'recipient', in: 'query', schema: str, description: 'only this recipient' }],
        responses: { 200: json(obj({ id: str, deleted: int }), 'Deleted'), 401: unauthorized, 403: err('Missing CSRF token (cookie session).'), 404: err('Nothing to delete.') },
      },
    },
    '/queue/{id}/retry': {
      post: {
        summary: 'Make the message\'s deferred rows due now and wake the queue runner (`postseal queue retry ID`)',
        parameters: [idParam('message id')],
        responses: { 200: json(obj({ id: str, due: int }), 'Rows made due'), 401: unauthorized, 403: err('Missing CSRF token (cookie session).'), 404: err('Not in the queue.') },
      },
    },
    '/users': {
      get: { summary: 'Users (`postseal user list`) and whether each may use the console', responses: { 200: json({ type: 'array', items: ref('User') }, 'Users'), 401: unauthorized } },
    },
    '/policy/{domain}': {
      get: {
        summary: 'What the relay would do for mail to DOMAIN and why (`postseal policy explain DOMAIN --json`)',
        parameters: [{ name: 'domain', in: 'path', required: true, schema: str }],
        responses: { 200: json(ref('Explanation'), 'The explanation'), 400: err('Not a domain name.'), 401: unauthorized },
      },
    },
    // The console's own views (J4: api/stats.ts, api/message-view.ts).
    '/stats/tls': {
      get: {
        summary: 'Inbound messages and outbound delivery sessions per hour by TLS version, and who still sends or receives in plaintext (last 7 days)',
        parameters: [{ name: 'hours', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 168, default: 24 } }],
        responses: {
          200: json(obj({
            hours: int,
            bucketSeconds: int,
            buckets: { type: 'array', items: int },
            inbound: { type: 'object', additionalProperties: { type: 'array', items: int } },
            outbound: { type: 'object', additionalProperties: { type: 'array', items: int } },
            plaintext: obj({
              days: int,
              inbound: { type: 'array', items: obj({ heloName: str, clientAddress: str, count: int, last: str }) },
              outbound: { type: 'array', items: obj({ domain: str, count: int, last: str, whyNot: strOrNull }) },
            }),
            truncated: bool,
          }), 'Series keyed by TLS version (`plaintext`: none); `buckets` are Unix seconds of each hour'),
          400: err('hours is not an integer from 1 to 168.'),
          401: unauthorized,
        },
      },
    },
    '/stats/now': {
      get: {
        summary: 'SMTP sessions open now, listeners, queue depth, messages stored, uptime',
        responses: {
          200: json(obj({
            sessions: int,
            listeners: { type: 'array', items: obj({ name: str, host: str, port: int, tls: str }) },
            queue: { type: 'object', additionalProperties: int },
            messages: int,
            startedAt: str,
            uptimeSeconds: int,
          }), 'Now'),
          401: unauthorized,
        },
      },
    },
    '/messages/{id}/parsed': {
      get: {
        summary: 'One message parsed (postal-mime): header fields, text body, whether it has an HTML body, attachment names and sizes',
        parameters: [idParam('message id')],
        responses: {
          200: json(obj({
            summary: ref('MessageSummary'),
            subject: strOrNull,
            from: { type: ['object', 'null'] },
            to: { type: 'array' },
            date: strOrNull,
            headers: { type: 'array', items: obj({ name: str, value: str }) },
            text: str,
            textTruncated: bool,
            hasHtml: bool,
            attachments: { type: 'array', items: obj({ filename: strOrNull, mimeType: str, size: int }) },
          }), 'The parsed message'),
          401: unauthorized,
          404: err('No such message.'),
        },
      },
    },
    '/messages/{id}/html': {
      get: {
        summary: 'The HTML body alone, for the console\'s <iframe sandbox="">: served with `Content-Security-Policy: sandbox; default-src \'none\'; img-src data:`',
        parameters: [idParam('message id')],
        responses: { 200: { description: 'HTML (empty when the message has none)', content: { 'text/html': { schema: str } } }, 401: unauthorized, 404: err('No such message.') },
      },
    },
    '/openapi.json': {
      get: { summary: 'This document (no login needed: it holds no data)', security: [], responses: { 200: json({ type: 'object' }, 'OpenAPI 3.1') } },
    },
  },
} as const;
