/**
 * CertificateStore: the server's current certificate, swapped atomically on reload.
 *
 * Invariants:
 * - `current()` is called once per handshake; a live session keeps the context it started with,
 *   only new handshakes see a reloaded certificate.
 * - A failed reload never replaces a good context: the previous one stays in service and the
 *   failure is returned (and reported to listeners) for logging.
 * - "No certificate" is a state: `current()` returns null, so the server answers STARTTLS with
 *   454 (RFC 3207 §4) instead of failing.
 * - Reloads are serialised; the watcher follows the files' directories, not their inodes, so an
 *   editor or certbot replacing a file by rename is still seen.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type tls from 'node:tls';
import { PostsealError } from '../errors.js';
import { loadKeyPair, type LoadedKeyPair } from './certs.js';
import { serverContextOptions, type ServerTlsPolicyOptions } from './options.js';
import type { CertificateSummary } from './summary.js';

export type ReloadResult =
  | { ok: true; changed: boolean; certificate: CertificateSummary }
  | { ok: false; error: PostsealError };

export interface CertificateStoreOptions {
  policy?: ServerTlsPolicyOptions;
  /** Quiet period after the last file event before reloading; default 200 ms. */
  debounceMs?: number;
}

type Listener = (result: ReloadResult) => void;

export class CertificateStore {
  readonly #files: { certFile: string; keyFile: string } | null;
  readonly #policy: ServerTlsPolicyOptions;
  readonly #debounceMs: number;
  #pair: LoadedKeyPair | null;
  #listeners = new Set<Listener>();
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(
    files: { certFile: string; keyFile: string } | null,
    pair: LoadedKeyPair | null,
    options: CertificateStoreOptions,
  ) {
    this.#files = files;
    this.#pair = pair;
    this.#policy = options.policy ?? {};
    this.#debounceMs = options.debounceMs ?? 200;
  }

  /** A store with no certificate: current() is null, STARTTLS is answered with 454. */
  static empty(): CertificateStore {
    return new CertificateStore(null, null, {});
  }

  /** Load the pair now; throws PostsealError('TLS_CERT_INVALID') naming the bad file. */
  static async fromFiles(
    certFile: string,
    keyFile: string,
    options: CertificateStoreOptions = {},
  ): Promise<CertificateStore> {
    const pair = await loadKeyPair(certFile, keyFile, options.policy);
    return new CertificateStore({ certFile, keyFile }, pair, options);
  }

  /** The context for the next handshake, or null when there is no certificate. */
  current(): tls.SecureContext | null {
    return this.#pair?.context ?? null;
  }

  /** Same as current(), bound, to pass where a SecureContextGetter is expected. */
  readonly getter = (): tls.SecureContext | null => this.current();

  /** Summary of the leaf in service (subject, SANs, notAfter, fingerprint...), or null. */
  certificate(): CertificateSummary | null {
    return this.#pair?.leaf ?? null;
  }

  /** Leaf-first summaries of the chain in service; empty without a certificate. */
  chain(): CertificateSummary[] {
    return this.#pair?.chain ?? [];
  }

  /** Certificate and key PEM in service (for `tls.Server.setSecureContext`), or null. */
  material(): { cert: string; key: string } | null {
    return this.#pair === null ? null : { cert: this.#pair.certPem, key: this.#pair.keyPem };
  }

  /**
   * Re-read the files. On success the new context serves the next handshakes; on failure the
   * previous one stays. Never throws; listeners get the same result.
   */
  reload(): Promise<ReloadResult> {
    const run = this.#queue.then(() => this.#reloadNow());
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #reloadNow(): Promise<ReloadResult> {
    let result: ReloadResult;
    if (this.#files === null) {
      result = { ok: false, error: new PostsealError('TLS_NO_CERTIFICATE', 'no certificate files configured') };
    } else {
      try {
        const pair = await loadKeyPair(this.#files.certFile, this.#files.keyFile, this.#policy);
        const changed = pair.leaf.fingerprint256 !== this.#pair?.leaf.fingerprint256;
        this.#pair = pair;
        result = { ok: true, changed, certificate: pair.leaf };
      } catch (err) {
        const error =
          err instanceof PostsealError
            ? err
            : new PostsealError('TLS_CERT_INVALID', `TLS reload failed: ${String(err)}`, { cause: err });
        result = { ok: false, error };
      }
    }
    this.#emit(result);
    return result;
  }

  /** Be told about every reload (manual, SIGHUP-driven or from the watcher). Returns an unsubscribe. */
  onReload(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(result: ReloadResult): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(result);
      } catch {
        // A logging listener must not break the reload path.
      }
    }
  }

  /**
   * Watch both files and reload (debounced) when either changes. Watches the parent
   * directories filtered by file name, which survives rename-replacement (vim, certbot's
   * symlink swap, `mv new.pem cert.pem`). Idempotent; no-op for an empty store.
   */
  watch(): void {
    if (this.#files === null || this.#watchers.length > 0 || this.#closed) return;
    const certFile = resolve(this.#files.certFile);
    const keyFile = resolve(this.#files.keyFile);
    const byDir = new Map<string, Set<string>>();
    for (const file of [certFile, keyFile]) {
      const names = byDir.get(dirname(file)) ?? new Set<string>();
      names.add(basename(file));
      byDir.set(dirname(file), names);
    }
    for (const [dir, names] of byDir) {
      const watcher = watch(dir, { persistent: false }, (_event, filename) => {
        // filename can be null on some platforms: then reload anyway.
        if (filename === null || names.has(filename.toString())) this.#schedule();
      });
      watcher.on('error', (err) => {
        this.#emit({
          ok: false,
          error: new PostsealError('TLS_WATCH_FAILED', `cannot watch ${dir}: ${String(err)}`, { cause: err }),
        });
      });
      this.#watchers.push(watcher);
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.reload();
    }, this.#debounceMs);
    this.#timer.unref();
  }

  /**
   * Keep a `tls.createServer` server's default context (used for clients that send no SNI)
   * in step with this store: applied now and after every successful reload. Returns an unbind.
   */
  bindServer(server: tls.Server): () => void {
    const apply = (): void => {
      const material = this.material();
      if (material !== null) server.setSecureContext({ ...serverContextOptions(this.#policy), ...material });
    };
    apply();
    return this.onReload((r) => {
      if (r.ok) apply();
    });
  }

  /** Stop watching. Contexts already handed out stay valid. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
  }
}
