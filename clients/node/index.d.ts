// Types of warden-client.

export type Mode = 'exclusive' | 'shared' | 'read' | 'write';

export interface WardenOptions {
  /** The server, default $WARDEN_URL or http://127.0.0.1:7070. */
  url?: string;
  /** API key (sent as a bearer token), default $WARDEN_TOKEN. */
  token?: string;
  /** Recorded with every lease, default `node-<pid>`. */
  clientId?: string;
  /** Bound on each request besides its wait, ms, default 10000. */
  timeoutMs?: number;
  /** A fetch to use instead of the global one (e.g. with a TLS agent for a private CA). */
  fetch?: typeof fetch;
}

export interface AcquireOptions {
  /** Lease length, ms (10..=86400000, default 30000). */
  ttl?: number;
  /** How long to wait in the FIFO queue, ms (0: try once; Infinity: until granted; default 5000). */
  wait?: number;
  mode?: Mode;
  /** Take one of this many permits of a semaphore (1..=1000) instead of a lock; every user of the resource passes the same number. */
  permits?: number;
  clientId?: string;
  /** Refuse renewals after this many. */
  maxRenewals?: number;
  /** Never extend the lease past acquired + maxHold ms. */
  maxHold?: number;
  /** Granted only if nobody held the resource since the lease that got this fencing token (else ConditionFailedError). */
  ifFencingToken?: number;
  /** Granted only if nobody was granted the resource within this many ms (1..=86400000; else ConditionFailedError). */
  ifNotGrantedWithin?: number;
  /** Wait with this priority, -100..=100 (default 0): queued as if arrived priority x 100 ms earlier. */
  priority?: number;
}

/** A lock object as the server shows it. */
export interface LockInfo {
  lockId?: string;
  leaseHandle: string;
  resource: string;
  type: string;
  mode?: string;
  clientId: string;
  acquiredAt: string;
  expiresAt: string;
  ttl: number;
  fencingToken: number;
  renewalCount: number;
  isExpired?: boolean;
}

export interface QueueInfo {
  waitingClients: number;
  queue: { clientId: string; type: string; mode?: string; ttl: number }[];
  holders: LockInfo[];
  foreignHolder: boolean;
  nextOffset?: number;
}

export interface LeaderInfo {
  candidateId: string;
  fencingToken: number;
  since: string;
  expiresAt: string;
}

export class Lease {
  readonly lockId: string;
  readonly leaseHandle: string;
  readonly resource: string;
  readonly type: string;
  /** Strictly increasing per resource: hand it to the protected resource with every write. */
  readonly fencingToken: number;
  readonly acquiredAt: Date;
  readonly expiresAt: Date;
  readonly ttl: number;
  readonly renewalCount: number;
  /** Epoch ms until which the lease is trusted (the ttl from the request's send, less the clock allowance). */
  readonly validUntil: number;
  /** Aborts the moment the lease can no longer be trusted (lost, expired or released). */
  readonly signal: AbortSignal;
  readonly lost: boolean;
  /** Renews every third of the ttl until released. */
  autoRenew(): this;
  renew(ttl?: number): Promise<this>;
  release(): Promise<void>;
  /** Gives up a leadership at once: the same as release(). */
  resign(): Promise<void>;
}

/** A member of a group: a name (exclusive), or a resource with its mode or permits. */
export type GroupMember = string | { resource: string; mode?: Mode; permits?: number };

export interface GroupOptions {
  /** Lease length of every member, ms (10..=86400000, default 30000). */
  ttl?: number;
  /** How long to wait for the whole group, ms (0: try once; at most 600000; default 5000). */
  wait?: number;
  clientId?: string;
  maxRenewals?: number;
  maxHold?: number;
}

export interface PathOptions extends GroupOptions {
  /** Take the path shared (default exclusive). */
  shared?: boolean;
  /** The character between segments (default `/`). */
  separator?: string;
}

/** A held group: one lease per member, renewed, lost and released together. */
export class Group {
  /** The group's secret id: with the client id it renews and releases every member. */
  readonly groupId: string;
  /** One lease per member, in the global order (by resource name). */
  readonly locks: LockInfo[];
  /** The shortest of the members' ttls. */
  readonly ttl: number;
  readonly expiresAt: Date;
  readonly validUntil: number;
  /** Aborts the moment a member's lease can no longer be trusted (lost, expired or released). */
  readonly signal: AbortSignal;
  readonly lost: boolean;
  /** A member's fencing token (undefined for a resource not in the group). */
  fencingToken(resource: string): number | undefined;
  /** Renews every member every third of the ttl until released. */
  autoRenew(): this;
  renew(ttl?: number): Promise<this>;
  release(): Promise<void>;
}

export class Election {
  readonly name: string;
  readonly resource: string;
  /** Waits to lead (FIFO among candidates), then renews; the lease's signal aborts if leadership is lost. */
  campaign(candidateId: string, opts?: { ttl?: number; wait?: number }): Promise<Lease>;
  leader(): Promise<LeaderInfo | null>;
  observe(opts?: { intervalMs?: number; signal?: AbortSignal }): AsyncGenerator<LeaderInfo | null>;
}

/** Duration percentiles, in ms. */
export interface Percentiles { count: number; p50: number; p90: number; p99: number; max: number }
/** What one server instance saw of one resource. */
export interface ResourceAnalytics {
  resource: string;
  acquires: number;
  grants: number;
  /** Acquires not granted at their first attempt (granted after a wait, or timed out). */
  waited: number;
  /** `waited / acquires`. */
  contention: number;
  timeouts: number;
  refused: number;
  expiries: number;
  waitMs?: Percentiles;
  holdMs?: Percentiles;
}
export interface Analytics {
  scope: 'instance';
  since: string;
  by: string;
  tracked: number;
  forgotten: number;
  resources: ResourceAnalytics[];
}

export class Warden {
  constructor(opts?: WardenOptions);
  readonly url: string;
  readonly clientId: string;
  acquire(resource: string, opts?: AcquireOptions): Promise<Lease>;
  /** Every member or none; taken in one global order, so groups never deadlock. */
  acquireGroup(members: GroupMember[], opts?: GroupOptions): Promise<Group>;
  /** A path in a tree (`orders/eu/42`): excludes below and above, never siblings; a group of the ancestors'
   * intentions and the path. */
  acquirePath(path: string, opts?: PathOptions): Promise<Group>;
  release(lockId: string, clientId?: string): Promise<void>;
  renew(lockId: string, ttl?: number, clientId?: string): Promise<LockInfo>;
  status(lockId: string): Promise<LockInfo>;
  held(clientId?: string): Promise<LockInfo[]>;
  queue(resource: string): Promise<QueueInfo>;
  stats(): Promise<Record<string, unknown>>;
  /** Per-resource analytics of the answering server instance, most first. */
  analytics(opts?: { top?: number; by?: 'grants' | 'contention' | 'wait' | 'hold' | 'expiries' }): Promise<Analytics>;
  health(): Promise<Record<string, unknown>>;
  using<T>(resource: string, opts: AcquireOptions, routine: (signal: AbortSignal, lease: Lease) => Promise<T>): Promise<T>;
  using<T>(resource: string, routine: (signal: AbortSignal, lease: Lease) => Promise<T>): Promise<T>;
  election(name: string): Election;
}

export const ENDPOINTS: [string, string][];
/** The error class of each API code. */
export const ERROR_CLASSES: Record<string, typeof WardenError>;

export class WardenError extends Error {
  /** The API's code (`not_found`, `lock_timeout`, ...), or `unreachable`. */
  readonly code: string;
  /** The HTTP status (0 when no answer came). */
  readonly status: number;
}
export class InvalidRequestError extends WardenError {}
export class UnauthorizedError extends WardenError {}
export class ForbiddenError extends WardenError {}
export class NotFoundError extends WardenError {}
export class RequestTimeoutError extends WardenError {}
export class LockTimeoutError extends WardenError {}
export class NotOwnerError extends WardenError {}
export class LeaseLostError extends WardenError {}
export class RenewalCappedError extends WardenError {}
/** 409 `conflict`: the resource is in use as a semaphore with other permits, or as a lock. */
export class ConflictError extends WardenError {}
/** 412 `condition_failed`: a conditional acquire's condition does not hold; nothing is held. */
export class ConditionFailedError extends WardenError {}
export class TooManyWaitersError extends WardenError {}
export class RateLimitedError extends WardenError {
  /** Seconds the server asked to wait (Retry-After). */
  readonly retryAfter?: number;
}
export class BackendUnavailableError extends WardenError {}
export class ShuttingDownError extends WardenError {}
export class InternalError extends WardenError {}
export class UnreachableError extends WardenError {}
