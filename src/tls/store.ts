/**
 * CertificateStore: the server's certificates (one or several, chosen by SNI), swapped atomically
 * on reload.
 *
 * Invariants:
 * - `select()`/`current()` are called once per handshake; a live session keeps the context it
 *   started with, only new handshakes see a reloaded certificate. Contexts are built at load and
 *   reload (sni.ts), never per connection.
 * - The first pair is the default: clients without SNI, or asking for a name no certificate
 *   covers, get it.
 * - A failed reload never replaces a good context: a pair that fails to load keeps its previous
 *   version in service (the other pairs still reload), a set of pairs that cannot be combined
 *   (TLS_CERT_CONFLICT) keeps everything as it was; the failure is returned (and reported to
 *   listeners) for logging, naming the config key and the file.
 * - "No certificate" is a state: `current()` returns null, so the server answers STARTTLS with
 *   454 (RFC 3207 §4) instead of failing.
 * - Reloads are serialised; the watcher follows the files' directories, not their inodes, so an
 *   editor or certbot replacing a file by rename is still seen.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type tls from 'node:tls';
import { PostsealError } from '../errors.js';
import { readKeyPairFiles, validateKeyPair, type LoadedKeyPair } from './certs.js';
import { serverContextOptions, type ServerContexts, type ServerTlsPolicyOptions } from './options.js';
import { buildSelection, sanDnsNames, type CertificateSelection, type LabelledPair } from './sni.js';
import type { CertificateSummary } from './summary.js';

export type ReloadResult =
  | { ok: true; changed: boolean; certificate: CertificateSummary; certificates: CertificateSummary[] }
  /** `changed`: other pairs did reload (only the failed ones kept their previous version). */
  | { ok: false; error: PostsealError; changed: boolean };

/** One certificate/key pair to serve; `label` names it in messages (e.g. 'tls.certificates[1]'). */
export interface CertificateFiles {
  certFile: string;
  keyFile: string;
  label?: string;
}

/** What is in service for one configured pair. */
export interface ServedCertificate {
  label: string;
  certFile: string;
  keyFile: string;
  /** SAN DNS names it serves by SNI (wildcards as written). */
  names: string[];
  leaf: CertificateSummary;
}

export interface CertificateStoreOptions {
  policy?: ServerTlsPolicyOptions;
  /** Quiet period after the last file event before reloading; default 200 ms. */
  debounceMs?: number;
}

type Listener = (result: ReloadResult) => void;
type Spec = Required<CertificateFiles>;

function withLabel(label: string, err: unknown): PostsealError {
  if (err instanceof PostsealError) return new PostsealError(err.code, `${label}: ${err.message}`, { cause: err });
  return new PostsealError('TLS_CERT_INVALID', `${label}: ${String(err)}`, { cause: err });
}

export class CertificateStore {
  readonly #specs: Spec[];
  readonly #policy: ServerTlsPolicyOptions;
  readonly #debounceMs: number;
  #pairs: LabelledPair[];
  #selection: CertificateSelection | null;
  #listeners = new Set<Listener>();
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(specs: Spec[], pairs: LabelledPair[], selection: CertificateSelection | null, options: CertificateStoreOptions) {
    this.#specs = specs;
    this.#pairs = pairs;
    this.#selection = selection;
    this.#policy = options.policy ?? {};
    this.#debounceMs = options.debounceMs ?? 200;
  }

  /** A store with no certificate: current() is null, STARTTLS is answered with 454. */
  static empty(): CertificateStore {
    return new CertificateStore([], [], null, {});
  }

  /** Load one pair now; throws PostsealError('TLS_CERT_INVALID') naming the bad file. */
  static async fromFiles(
    certFile: string,
    keyFile: string,
    options: CertificateStoreOptions = {},
  ): Promise<CertificateStore> {
    return CertificateStore.fromPairs([{ certFile, keyFile }], options);
  }

  /**
   * Load several pairs now, the first being the default. Throws PostsealError
   * ('TLS_CERT_INVALID' or 'TLS_CERT_CONFLICT') whose message starts with the pair's label.
   */
  static async fromPairs(files: CertificateFiles[], options: CertificateStoreOptions = {}): Promise<CertificateStore> {
    if (files.length === 0) return CertificateStore.empty();
    const specs: Spec[] = files.map((f, i) => ({ certFile: f.certFile, keyFile: f.keyFile, label: f.label ?? `certificate #${i + 1}` }));
    const pairs: LabelledPair[] = [];
    for (const spec of specs) {
      try {
        const { certPem, keyPem } = await readKeyPairFiles(spec.certFile, spec.keyFile);
        pairs.push({ label: spec.label, pair: validateKeyPair(certPem, keyPem, spec, options.policy) });
      } catch (err) {
        throw withLabel(spec.label, err);
      }
    }
    return new CertificateStore(specs, pairs, buildSelection(pairs, options.policy), options);
  }

  /** The default context for the next handshake, or null when there is no certificate. */
  current(): tls.SecureContext | null {
    return this.#selection?.context ?? null;
  }

  /** Same as current(), bound, to pass where a SecureContextGetter is expected. */
  readonly getter = (): tls.SecureContext | null => this.current();

  /**
   * The contexts for the next handshake: the default and, with several certificates, the SNI
   * selector (hand to serverSocketOptions). Null without a certificate. No allocation.
   */
  select(): ServerContexts | null {
    return this.#selection;
  }

  /** The context a client asking for `servername` would get now (null: no certificate). */
  contextFor(servername: string): tls.SecureContext | null {
    return this.#selection?.pick(servername) ?? null;
  }

  /** Summary of the default leaf in service (subject, SANs, notAfter, fingerprint...), or null. */
  certificate(): CertificateSummary | null {
    return this.#pairs[0]?.pair.leaf ?? null;
  }

  /** Leaf-first summaries of the default chain in service; empty without a certificate. */
  chain(): CertificateSummary[] {
    return this.#pairs[0]?.pair.chain ?? [];
  }

  /** Every configured pair in service, default first. */
  certificates(): ServedCertificate[] {
    return this.#pairs.map(({ label, pair }) => ({
      label,
      certFile: pair.certFile,
      keyFile: pair.keyFile,
      names: sanDnsNames(pair),
      leaf: pair.leaf,
    }));
  }

  /** Default certificate and key PEM in service (for `tls.Server.setSecureContext`), or null. */
  material(): { cert: string; key: string } | null {
    const first = this.#pairs[0];
    return first === undefined ? null : { cert: first.pair.certPem, key: first.pair.keyPem };
  }

  /**
   * Re-read every pair's files. Pairs that load serve the next handshakes; a pair that fails
   * keeps its previous version. Never throws; listeners get the same result.
   */
  reload(): Promise<ReloadResult> {
    const run = this.#queue.then(() => this.#reloadNow());
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #reloadNow(): Promise<ReloadResult> {
    const result = await this.#reloadPairs();
    this.#emit(result);
    return result;
  }

  async #reloadPairs(): Promise<ReloadResult> {
    if (this.#specs.length === 0) {
      return { ok: false, changed: false, error: new PostsealError('TLS_NO_CERTIFICATE', 'no certificate files configured') };
    }
    const next: LabelledPair[] = [];
    const failures: PostsealError[] = [];
    let changed = false;
    for (const [i, spec] of this.#specs.entries()) {
      const previous = this.#pairs[i];
      try {
        const { certPem, keyPem } = await readKeyPairFiles(spec.certFile, spec.keyFile);
        if (previous !== undefined && previous.pair.certPem === certPem && previous.pair.keyPem === keyPem) {
          next.push(previous);
          continue;
        }
        next.push({ label: spec.label, pair: validateKeyPair(certPem, keyPem, spec, this.#policy) });
        changed = true;
      } catch (err) {
        failures.push(withLabel(spec.label, err));
        if (previous !== undefined) next.push(previous);
      }
    }
    if (changed) {
      try {
        const selection = buildSelection(next, this.#policy);
        this.#pairs = next;
        this.#selection = selection;
      } catch (err) {
        failures.push(err instanceof PostsealError ? err : withLabel('tls', err));
        changed = false;
      }
    }
    const first = failures[0];
    if (first !== undefined) {
      const message = failures.map((f) => f.message).join('; ');
      return { ok: false, changed, error: failures.length === 1 ? first : new PostsealError(first.code, message, { cause: failures }) };
    }
    const certificates = this.#pairs.map((p) => p.pair.leaf);
    const certificate = certificates[0];
    if (certificate === undefined) return { ok: false, changed, error: new PostsealError('TLS_NO_CERTIFICATE', 'no certificate in service') };
    return { ok: true, changed, certificate, certificates };
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
   * Watch every pair's files and reload (debounced) when one changes. Watches the parent
   * directories filtered by file name, which survives rename-replacement (vim, certbot's
   * symlink swap, `mv new.pem cert.pem`). Idempotent; no-op for an empty store.
   */
  watch(): void {
    if (this.#specs.length === 0 || this.#watchers.length > 0 || this.#closed) return;
    const byDir = new Map<string, Set<string>>();
    for (const file of this.#specs.flatMap((s) => [resolve(s.certFile), resolve(s.keyFile)])) {
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
          changed: false,
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
