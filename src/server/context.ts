/**
 * The AUTH limiter shared by all sessions of a server.
 *
 * Exponential delay, not lockout. Why:
 * - a hard per-account lockout lets anyone lock the real user out by failing on purpose, and a
 *   hard per-address lockout also refuses the right password to everyone behind the same NAT;
 * - a delay that doubles with each failure (Dovecot's auth penalty: 2 s doubling up to 15 s, per
 *   IP, IPv6 per /48) still lets the right password in, slowly, while a guesser's rate collapses;
 * - a delay alone is beaten by parallel connections, so the number of attempts in flight (being
 *   checked or waiting out their delay) is capped per client network and per account: the rate
 *   of password checks is at most maxInFlight / maxDelayMs, whatever the parallelism (Postfix
 *   bounds AUTH per client with anvil's smtpd_client_auth_rate_limit in the same spirit).
 *
 * Invariants:
 * - an attempt is counted when it is admitted (a reservation), before the password is checked;
 *   success gives the reservation back, failure (or a client that leaves while waiting) keeps it,
 *   so parallel sessions cannot all slip past the count (the old check-then-record race);
 * - the delay of an attempt is computed from the failures already counted, including the
 *   reservations of attempts still in flight;
 * - failures count per client network (clientKey(): IPv4 per ipv4Prefix, default /32; IPv6 per
 *   ipv6Prefix, default /64) and per account name (lower-cased), so a botnet spread over many networks
 *   cannot grind one account; an account is not delayed or capped from a network it logged in
 *   from successfully in the last KNOWN_NETWORK_MS (its owner's usual networks), those attempts
 *   are bound by the network limit only;
 * - success never clears the failures of others: logging in to one's own account from a shared
 *   address must not reset an attacker's count there;
 * - memory is bounded: at most maxTrackedKeys networks, accounts and known pairs each; past that,
 *   entries with nothing recent go first, then the least recently used idle ones.
 */
import { clientKey } from './client-network.js';
import type { AuthLimits } from './types.js';

/** How long a successful login makes (account, network) "known" (in memory; lost on restart). */
export const KNOWN_NETWORK_MS = 30 * 86_400_000;

/** One admitted attempt: call checking() when the password check starts, settle() exactly once. */
export interface AuthTicket {
  /** The delay is over and the password is being checked. */
  checking(): void;
  settle(success: boolean): void;
}

export type AuthAdmission =
  | { ok: true; delayMs: number; delayedBy: 'network' | 'account' | null; network: string; ticket: AuthTicket }
  | { ok: false; reason: 'network-busy' | 'account-busy'; network: string };

interface Entry {
  /** Times of counted failures (and reservations in flight), oldest first. */
  failures: number[];
  inFlight: number;
}

export interface AuthLimiterStats {
  networks: number;
  accounts: number;
  known: number;
  /** Admitted attempts not settled yet. */
  inFlight: number;
  /** Of those, the ones still waiting out a delay. */
  waiting: number;
}

export class AuthLimiter {
  private readonly networks = new Map<string, Entry>();
  private readonly accounts = new Map<string, Entry>();
  private readonly known = new Map<string, number>();
  private readonly keep: number;
  private inFlight = 0;
  private waiting = 0;

  constructor(private readonly limits: AuthLimits) {
    // Past the point where the delay reaches its ceiling, older failures change nothing.
    const steps = Math.ceil(Math.log2(Math.max(1, limits.maxDelayMs / Math.max(1, limits.delayMs))));
    this.keep = limits.maxFailures + steps + 1;
  }

  /**
   * Admits (and counts) one AUTH attempt from `ip` for `account`, or refuses it because too many
   * are in flight. An admitted attempt must wait `delayMs` before its password is checked.
   */
  admit(ip: string, account: string, now = Date.now()): AuthAdmission {
    const l = this.limits;
    const network = clientKey(ip, l.ipv4Prefix, l.ipv6Prefix);
    const name = account.trim().toLowerCase().slice(0, 320);
    const pair = `${name}\n${network}`;
    const knownUntil = this.known.get(pair);
    const knownNetwork = knownUntil !== undefined && knownUntil > now;
    const net = this.entry(this.networks, network, now);
    const acct = knownNetwork ? null : this.entry(this.accounts, name, now);
    if (net.inFlight >= l.maxInFlightPerNetwork) return { ok: false, reason: 'network-busy', network };
    if (acct && acct.inFlight >= l.maxInFlightPerAccount) return { ok: false, reason: 'account-busy', network };
    const netDelay = this.delayFor(net.failures.length);
    const acctDelay = acct ? this.delayFor(acct.failures.length) : 0;
    const delayMs = Math.max(netDelay, acctDelay);
    const delayedBy = delayMs === 0 ? null : netDelay >= acctDelay ? 'network' : 'account';
    // The reservation: counted as a failure now, given back on success.
    const reserve = (e: Entry): void => {
      e.failures.push(now);
      if (e.failures.length > this.keep) e.failures.shift();
      e.inFlight++;
    };
    reserve(net);
    if (acct) reserve(acct);
    this.inFlight++;
    let waiting = delayMs > 0;
    if (waiting) this.waiting++;
    let settled = false;
    const stopWaiting = (): void => {
      if (waiting) {
        waiting = false;
        this.waiting--;
      }
    };
    const ticket: AuthTicket = {
      checking: stopWaiting,
      settle: (success) => {
        if (settled) return;
        settled = true;
        stopWaiting();
        this.inFlight--;
        for (const e of acct ? [net, acct] : [net]) {
          e.inFlight--;
          if (success) {
            const i = e.failures.lastIndexOf(now);
            if (i >= 0) e.failures.splice(i, 1);
          }
        }
        if (success) {
          this.known.delete(pair);
          this.known.set(pair, Date.now() + KNOWN_NETWORK_MS);
          if (this.known.size > l.maxTrackedKeys) this.pruneKnown(Date.now());
        }
      },
    };
    return { ok: true, delayMs, delayedBy, network, ticket };
  }

  stats(): AuthLimiterStats {
    return { networks: this.networks.size, accounts: this.accounts.size, known: this.known.size, inFlight: this.inFlight, waiting: this.waiting };
  }

  /** 0 within the free failures, then delayMs doubling per further failure, up to maxDelayMs. */
  private delayFor(failures: number): number {
    const l = this.limits;
    if (failures < l.maxFailures) return 0;
    const exp = Math.min(30, failures - l.maxFailures);
    return Math.min(l.maxDelayMs, l.delayMs * 2 ** exp);
  }

  /** The entry for `key` with its old failures dropped, moved to the most recently used end. */
  private entry(map: Map<string, Entry>, key: string, now: number): Entry {
    let e = map.get(key);
    if (e === undefined) {
      e = { failures: [], inFlight: 0 };
      if (map.size >= this.limits.maxTrackedKeys) this.prune(map, now);
    } else {
      map.delete(key);
      this.expire(e, now);
    }
    map.set(key, e);
    return e;
  }

  private expire(e: Entry, now: number): void {
    const w = this.limits.windowMs;
    let drop = 0;
    while (drop < e.failures.length && now - (e.failures[drop] ?? now) >= w) drop++;
    if (drop > 0) e.failures.splice(0, drop);
  }

  /** Down to 90% of the cap, so the O(n) pass runs once per tenth of the cap of new keys. */
  private prune(map: Map<string, Entry>, now: number): void {
    const target = Math.floor(this.limits.maxTrackedKeys * 0.9);
    for (const [k, e] of map) {
      this.expire(e, now);
      if (e.failures.length === 0 && e.inFlight === 0) map.delete(k);
    }
    // Still full: forget the least recently used idle entries (Map order is use order).
    for (const [k, e] of map) {
      if (map.size <= target) break;
      if (e.inFlight === 0) map.delete(k);
    }
  }

  private pruneKnown(now: number): void {
    const target = Math.floor(this.limits.maxTrackedKeys * 0.9);
    for (const [k, until] of this.known) if (until <= now) this.known.delete(k);
    for (const k of this.known.keys()) {
      if (this.known.size <= target) break;
      this.known.delete(k);
    }
  }
}
