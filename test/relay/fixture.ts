/**
 * Shared pieces of the queue-runner tests: a sender store in a temp dir, a runner pointed at a
 * receiver and a test DNS server, messages tagged by Message-ID, and lookup of what a postseal
 * receiver stored for a tag.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteStore, type SqliteStore, type Store } from '../../src/store/index.js';
import { queueOutbound } from '../helpers/outbound.js';
import { DEFAULT_RELAY } from '../../src/config.js';
import { QueueRunner, type RelayConfig } from '../../src/relay/runner.js';
import { systemResolver, uniformTimeouts } from '../../src/client/index.js';
import { silentLogger } from '../../src/log.js';
import type { TestServer } from '../helpers/server.js';
import type { DnsServer } from '../helpers/dns-server.js';

export class RelayFixture {
  private readonly dirs: string[] = [];
  constructor(
    private readonly receiver: () => TestServer,
    private readonly dns: () => DnsServer,
  ) {}

  async senderStore(): Promise<SqliteStore> {
    const dir = await mkdtemp(join(tmpdir(), 'postseal-relay-'));
    this.dirs.push(dir);
    return openSqliteStore(dir);
  }

  runner(store: Store, over: Partial<RelayConfig> = {}): QueueRunner {
    const receiver = this.receiver();
    const cfg: RelayConfig = {
      ...DEFAULT_RELAY,
      hostname: 'out.sender.test',
      localDomains: ['sender.test'],
      ca: receiver.caPem,
      smtpPort: receiver.port('mx'),
      timeouts: uniformTimeouts(10_000),
      ...over,
    };
    return new QueueRunner(store, cfg, systemResolver([`127.0.0.1:${this.dns().port}`]), silentLogger);
  }

  /** What the postseal receiver stored for the message tagged `tag` (Received header first). */
  receivedByTag(tag: string): Buffer | null {
    const store = this.receiver().running.store;
    for (const m of store.listMessages({ limit: 10_000 })) {
      const full = store.getMessage(m.id);
      if (full && full.data.includes(`Message-ID: <${tag}@sender.test>`)) return full.data;
    }
    return null;
  }

  async cleanup(): Promise<void> {
    for (const d of this.dirs) await rm(d, { recursive: true, force: true });
  }
}

/** A message tagged by its Message-ID, with dot lines (a relay must stuff them on the way out). */
export function taggedBody(tag: string): Buffer {
  return Buffer.from(`From: <a@sender.test>\r\nSubject: ${tag}\r\nMessage-ID: <${tag}@sender.test>\r\n\r\nbody ${tag}\r\n.leading dot line\r\n..two dots\r\n`);
}

/** Queue a message for remote recipients as authenticated submission would. */
export async function queueMessage(store: Store, to: string[], tag: string, extra: { receivedAt?: Date; requireTls?: boolean; mailFrom?: string } = {}): Promise<string> {
  return queueOutbound(store, { from: extra.mailFrom ?? 'a@sender.test', to, data: taggedBody(tag), ...(extra.receivedAt ? { receivedAt: extra.receivedAt } : {}), requireTls: extra.requireTls ?? false });
}
