'use strict';
// warden-client: the warden lock service's REST API with the library's safety: background renewal, an
// AbortSignal that aborts the moment a lease can no longer be trusted, fencing tokens, typed errors.
// No dependencies: Node >= 18's fetch (keep-alive by default).

/** Every endpoint this client calls (method, path): a test checks each against the server's /openapi.json. */
const ENDPOINTS = [
  ['post', '/api/locks/acquire'],
  ['post', '/api/locks/release'],
  ['post', '/api/locks/renew'],
  ['get', '/api/locks/{lockId}/status'],
  ['get', '/api/locks/held'],
  ['get', '/api/locks/queue'],
  ['get', '/api/locks/stats'],
  ['get', '/api/locks/analytics'],
  ['get', '/api/locks/health'],
  ['post', '/api/groups/acquire'],
  ['post', '/api/paths/acquire'],
  ['post', '/api/groups/release'],
  ['post', '/api/groups/renew'],
];

class WardenError extends Error {
  /** @param {string} message @param {string} code @param {number} status */
  constructor(message, code, status) {
    super(message);
    this.name = this.constructor.name;
    this.code = code;
    this.status = status;
  }
}
class InvalidRequestError extends WardenError {}
class UnauthorizedError extends WardenError {}
class ForbiddenError extends WardenError {}
class NotFoundError extends WardenError {}
class RequestTimeoutError extends WardenError {}
class LockTimeoutError extends WardenError {}
class NotOwnerError extends WardenError {}
class LeaseLostError extends WardenError {}
class RenewalCappedError extends WardenError {}
/** The resource is in use in a way the acquire does not match (a semaphore with other permits, or a lock). */
class ConflictError extends WardenError {}
/** A conditional acquire's condition (`ifFencingToken`, `ifNotGrantedWithin`) does not hold; nothing is held. */
class ConditionFailedError extends WardenError {}
class TooManyWaitersError extends WardenError {}
class RateLimitedError extends WardenError {}
class BackendUnavailableError extends WardenError {}
class ShuttingDownError extends WardenError {}
class InternalError extends WardenError {}
/** The server could not be reached, or did not answer as a warden server. */
class UnreachableError extends WardenError {}

const BY_CODE = {
  invalid_request: InvalidRequestError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  not_found: NotFoundError,
  request_timeout: RequestTimeoutError,
  lock_timeout: LockTimeoutError,
  not_owner: NotOwnerError,
  lease_lost: LeaseLostError,
  renewal_capped: RenewalCappedError,
  conflict: ConflictError,
  condition_failed: ConditionFailedError,
  too_many_waiters: TooManyWaitersError,
  rate_limited: RateLimitedError,
  backend_unavailable: BackendUnavailableError,
  shutting_down: ShuttingDownError,
  internal: InternalError,
};

/** The longest waitTimeout one request may carry (ms); longer waits are several requests. */
const MAX_WAIT = 600000;
const MODES = {
  exclusive: { type: 'exclusive' },
  shared: { type: 'shared' },
  read: { type: 'read-write', mode: 'read' },
  write: { type: 'read-write', mode: 'write' },
};

/** The wire fields (`type`, `mode`, `permits`) of `{mode?, permits?}`. */
function modeOf(opts) {
  if (opts.permits !== undefined) {
    // One of N permits of a semaphore.
    if (opts.mode !== undefined) throw new InvalidRequestError('permits and mode do not go together: a semaphore has no mode', 'invalid_request', 0);
    if (!Number.isInteger(opts.permits) || opts.permits < 1 || opts.permits > 1000) {
      throw new InvalidRequestError(`permits must be a whole number from 1 to 1000, got ${opts.permits}`, 'invalid_request', 0);
    }
    return { type: 'semaphore', permits: opts.permits };
  }
  const mode = MODES[opts.mode || 'exclusive'];
  if (!mode) throw new InvalidRequestError(`mode must be exclusive, shared, read or write, got ${opts.mode}`, 'invalid_request', 0);
  return mode;
}

/** The wire fields of a condition: `ifFencingToken` (granted only if nobody held the resource since the lease
 * that got that token) or `ifNotGrantedWithin` (ms: only if nobody was granted it within that long). */
function conditionOf(opts) {
  const { ifFencingToken: token, ifNotGrantedWithin: within } = opts;
  if (token !== undefined && within !== undefined) {
    throw new InvalidRequestError('give one condition: ifFencingToken or ifNotGrantedWithin', 'invalid_request', 0);
  }
  if (token !== undefined) return { ifFencingToken: positive('ifFencingToken', token, 1, Number.MAX_SAFE_INTEGER) };
  if (within !== undefined) return { ifNotGrantedWithin: positive('ifNotGrantedWithin', within, 1, 86400000) };
  return {};
}

function positive(name, v, min, max) {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new InvalidRequestError(`${name} must be a whole number of ms from ${min} to ${max}, got ${v}`, 'invalid_request', 0);
  }
  return v;
}

class Warden {
  /**
   * @param {object} [opts]
   * @param {string} [opts.url] the server, default $WARDEN_URL or http://127.0.0.1:7070
   * @param {string} [opts.token] API key, default $WARDEN_TOKEN
   * @param {string} [opts.clientId] recorded with every lease, default `node-<pid>`
   * @param {number} [opts.timeoutMs] bound on each request besides its wait, default 10000
   * @param {typeof fetch} [opts.fetch] a fetch to use instead of the global one (e.g. one with a TLS agent)
   */
  constructor(opts = {}) {
    const env = typeof process !== 'undefined' ? process.env : {};
    this.url = String(opts.url || env.WARDEN_URL || 'http://127.0.0.1:7070').replace(/\/+$/, '');
    this.token = opts.token || env.WARDEN_TOKEN || undefined;
    this.clientId = opts.clientId || `node-${typeof process !== 'undefined' ? process.pid : 0}`;
    this.timeoutMs = opts.timeoutMs ?? 10000;
    this.fetch = opts.fetch || globalThis.fetch;
    if (typeof this.fetch !== 'function') {
      throw new Error('warden-client needs fetch: use Node.js 18 or later, or pass opts.fetch');
    }
  }

  async _call(method, path, body, waitMs = 0) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let res;
    try {
      res = await this.fetch(this.url + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs + waitMs),
      });
    } catch (e) {
      throw new UnreachableError(`no warden server answered at ${this.url}: ${e.cause?.code || e.message}`, 'unreachable', 0);
    }
    let json;
    try {
      json = await res.json();
    } catch {
      throw new UnreachableError(`${this.url} answered ${res.status} without warden's JSON: is it a warden server?`, 'unreachable', res.status);
    }
    if (json && json.success === true) return json;
    const code = (json && json.code) || 'unknown';
    const Cls = BY_CODE[code] || WardenError;
    const err = new Cls((json && json.error) || `the server answered ${res.status}`, code, res.status);
    if (code === 'rate_limited') err.retryAfter = Number(res.headers.get('retry-after')) || undefined;
    throw err;
  }

  /**
   * Acquires a lock: waits up to `wait` ms (0: try once) in the resource's FIFO queue (`priority`, -100..=100:
   * ahead of lower priorities, as if arrived priority x 100 ms earlier).
   * @returns {Promise<Lease>}
   */
  async acquire(resource, opts = {}) {
    const ttl = positive('ttl', opts.ttl ?? 30000, 10, 86400000);
    let left = opts.wait === Infinity ? Infinity : positive('wait', opts.wait ?? 5000, 0, Number.MAX_SAFE_INTEGER);
    const mode = modeOf(opts);
    for (;;) {
      const wait = Math.min(left, MAX_WAIT);
      const body = { resource, ...mode, ttl, waitTimeout: wait, clientId: opts.clientId || this.clientId };
      if (opts.maxRenewals !== undefined) body.maxRenewals = opts.maxRenewals;
      if (opts.maxHold !== undefined) body.maxHold = opts.maxHold;
      Object.assign(body, conditionOf(opts));
      if (opts.priority) {
        if (!Number.isInteger(opts.priority) || Math.abs(opts.priority) > 100) {
          throw new InvalidRequestError(`priority must be a whole number from -100 to 100, got ${opts.priority}`,
            'invalid_request', 0);
        }
        body.priority = opts.priority;
      }
      const sent = Date.now();
      try {
        const { data } = await this._call('POST', '/api/locks/acquire', body, wait);
        return new Lease(this, data, sent, body.clientId);
      } catch (e) {
        // A wait longer than one request allows queues again (at the back) and waits on.
        if (!(e instanceof LockTimeoutError) || left <= MAX_WAIT) throw e;
        left -= wait;
      }
    }
  }

  /**
   * Acquires several resources as one group, all or none: `members` are names (exclusive) or
   * `{resource, mode?, permits?}`. They are taken in one global order, so groups never deadlock; the wait (up to
   * 600000 ms) is for the whole group. A LockTimeoutError names the member still held; nothing is then held.
   * @returns {Promise<Group>}
   */
  async acquireGroup(members, opts = {}) {
    if (!Array.isArray(members)) throw new InvalidRequestError('members must be an array of names or {resource, mode?, permits?}', 'invalid_request', 0);
    const m = members.map((x) => (typeof x === 'string' ? { resource: x } : { resource: x.resource, ...modeOf(x) }));
    return this._group('/api/groups/acquire', { members: m }, opts);
  }

  /**
   * Locks a path in a tree (`orders/eu/42`): excludes locks on anything below and above it, never its siblings.
   * It is a group (an intention on each ancestor, then the path itself); `group.fencingToken(path)` is the token to
   * pass on. `opts.shared` takes it shared; `opts.separator` (default `/`) splits the path.
   * @returns {Promise<Group>}
   */
  async acquirePath(path, opts = {}) {
    if (typeof path !== 'string' || path === '') throw new InvalidRequestError('path must be a non-empty string', 'invalid_request', 0);
    const what = { path, mode: opts.shared ? 'shared' : 'exclusive' };
    if (opts.separator !== undefined) what.separator = opts.separator;
    return this._group('/api/paths/acquire', what, opts);
  }

  /** A group acquire at `endpoint`: `what` (its members, or its path) with the group's options from `opts`. */
  async _group(endpoint, what, opts) {
    const ttl = positive('ttl', opts.ttl ?? 30000, 10, 86400000);
    const wait = positive('wait', opts.wait ?? 5000, 0, MAX_WAIT);
    const body = { ...what, ttl, waitTimeout: wait, clientId: opts.clientId || this.clientId };
    if (opts.maxRenewals !== undefined) body.maxRenewals = opts.maxRenewals;
    if (opts.maxHold !== undefined) body.maxHold = opts.maxHold;
    const sent = Date.now();
    const { data } = await this._call('POST', endpoint, body, wait);
    return new Group(this, data, sent, body.clientId);
  }

  /** Releases a lease by lock id. */
  async release(lockId, clientId = this.clientId) {
    await this._call('POST', '/api/locks/release', { lockId, clientId });
  }

  /** Renews a lease by lock id for `ttl` ms (default: its own ttl); resolves to the lock object. */
  async renew(lockId, ttl, clientId = this.clientId) {
    const body = { lockId, clientId };
    if (ttl !== undefined) body.ttl = positive('ttl', ttl, 10, 86400000);
    return (await this._call('POST', '/api/locks/renew', body)).data;
  }

  /** A lease's status (the lock object plus isExpired). */
  async status(lockId) {
    return (await this._call('GET', `/api/locks/${encodeURIComponent(lockId)}/status`)).data;
  }

  /** The leases a client holds (by lease handle). */
  async held(clientId = this.clientId) {
    return (await this._call('GET', `/api/locks/held?clientId=${encodeURIComponent(clientId)}`)).data;
  }

  /** Who holds a resource and who waits for it. */
  async queue(resource) {
    return (await this._call('GET', `/api/locks/queue?resource=${encodeURIComponent(resource)}`)).data;
  }

  /** Cluster-wide statistics. */
  async stats() {
    return (await this._call('GET', '/api/locks/stats')).data;
  }

  /**
   * The server's per-resource analytics (what this instance served): the `top` resources ranked `by` grants,
   * contention, wait, hold or expiries.
   */
  async analytics({ top = 10, by = 'grants' } = {}) {
    const q = `top=${encodeURIComponent(top)}&by=${encodeURIComponent(by)}`;
    return (await this._call('GET', `/api/locks/analytics?${q}`)).data;
  }

  /** The backend's health. */
  async health() {
    return (await this._call('GET', '/api/locks/health')).data;
  }

  /**
   * Runs `routine(signal, lease)` under the lock: renews in the background, aborts `signal` the moment the lease
   * can no longer be trusted, and releases when the routine settles (also when it throws).
   */
  async using(resource, opts, routine) {
    if (typeof opts === 'function') [opts, routine] = [{}, opts];
    const lease = await this.acquire(resource, opts);
    lease.autoRenew();
    try {
      return await routine(lease.signal, lease);
    } finally {
      await lease.release().catch(() => {});
    }
  }

  /** An election: who leads `name`, and the means to campaign for it. */
  election(name) {
    return new Election(this, name);
  }
}

class Lease {
  constructor(warden, data, sentAt, clientId) {
    this._warden = warden;
    this._clientId = clientId;
    this._controller = new AbortController();
    this._timers = [];
    this._released = false;
    this._apply(data, sentAt);
  }

  _apply(data, sentAt) {
    this.lockId = data.lockId ?? this.lockId;
    this.leaseHandle = data.leaseHandle;
    this.resource = data.resource;
    this.type = data.type;
    this.fencingToken = data.fencingToken;
    this.acquiredAt = new Date(data.acquiredAt);
    this.expiresAt = new Date(data.expiresAt);
    this.ttl = data.ttl;
    this.renewalCount = data.renewalCount;
    // Trusted until the ttl counted from when the request was sent, less the clock-rate allowance.
    this.validUntil = sentAt + data.ttl - (data.ttl * 0.01 + 2);
  }

  /** Aborts the moment the lease can no longer be trusted (lost, expired, or released). */
  get signal() {
    return this._controller.signal;
  }

  /** True once the lease can no longer be trusted. */
  get lost() {
    return this._controller.signal.aborted;
  }

  _lose(reason) {
    this._stop();
    if (!this._controller.signal.aborted) this._controller.abort(reason);
  }

  _stop() {
    for (const t of this._timers) clearTimeout(t);
    this._timers = [];
  }

  /** Renews every third of the ttl until released; the signal aborts if a renewal is refused or too late. */
  autoRenew() {
    const schedule = () => {
      this._stop();
      const expire = setTimeout(() => {
        this._lose(new LeaseLostError(`the lease on ${this.resource} ran out before a renewal was confirmed`, 'lease_lost', 0));
      }, Math.max(0, this.validUntil - Date.now()));
      const renew = setTimeout(async () => {
        try {
          await this.renew();
          schedule();
        } catch (e) {
          if (e instanceof LeaseLostError || e instanceof NotFoundError || e instanceof NotOwnerError) {
            this._lose(e);
          } else {
            // Unreachable or unavailable: try again soon; the expiry timer still stands.
            this._timers = this._timers.filter((t) => t !== renew);
            this._timers.push(setTimeout(() => { if (!this.lost && !this._released) schedule(); }, Math.min(1000, this.ttl / 10)));
          }
        }
      }, Math.max(10, this.ttl / 3));
      // Timers never keep a process alive on their own.
      expire.unref?.();
      renew.unref?.();
      this._timers.push(expire, renew);
    };
    schedule();
    return this;
  }

  /** Renews for `ttl` ms (default: its own ttl). */
  async renew(ttl) {
    const sent = Date.now();
    const data = await this._renewRequest(ttl);
    this._apply(data, sent);
    return this;
  }

  _renewRequest(ttl) {
    return this._warden.renew(this.lockId, ttl, this._clientId);
  }

  _releaseRequest() {
    return this._warden.release(this.lockId, this._clientId);
  }

  /** Gives up a leadership at once (the next candidate leads within milliseconds): the same as release(). */
  async resign() {
    return this.release();
  }

  /** Releases the lease (the signal aborts, as it is no longer held). */
  async release() {
    if (this._released) return;
    this._released = true;
    this._stop();
    try {
      await this._releaseRequest();
    } finally {
      this._lose(new LeaseLostError(`the lease on ${this.resource} was released`, 'released', 0));
    }
  }
}

/**
 * A held group: one lease per member (`locks`, in the global order, each with its own fencingToken), renewed,
 * lost and released together. `autoRenew()`, `signal`, `lost` and `release()` work as on a Lease.
 */
class Group extends Lease {
  _apply(data, sentAt) {
    this.groupId = data.groupId;
    this.locks = data.locks;
    this.resource = data.locks.map((l) => l.resource).join(', ');
    this.ttl = Math.min(...data.locks.map((l) => l.ttl));
    this.expiresAt = new Date(Math.min(...data.locks.map((l) => Date.parse(l.expiresAt))));
    this.validUntil = sentAt + this.ttl - (this.ttl * 0.01 + 2);
  }

  /** The fencing token of a member's lease (undefined for a resource not in the group). */
  fencingToken(resource) {
    return this.locks.find((l) => l.resource === resource)?.fencingToken;
  }

  _renewRequest(ttl) {
    const body = { groupId: this.groupId, clientId: this._clientId };
    if (ttl !== undefined) body.ttl = positive('ttl', ttl, 10, 86400000);
    return this._warden._call('POST', '/api/groups/renew', body).then((r) => r.data);
  }

  _releaseRequest() {
    return this._warden._call('POST', '/api/groups/release', { groupId: this.groupId, clientId: this._clientId });
  }
}

class Election {
  constructor(warden, name) {
    this._warden = warden;
    this.name = name;
    this.resource = `election:${name}`;
  }

  /**
   * Waits to lead (FIFO among candidates), then renews; `leadership.signal` aborts if leadership is lost.
   * @returns {Promise<Lease>}
   */
  async campaign(candidateId, opts = {}) {
    const lease = await this._warden.acquire(this.resource, { ttl: opts.ttl ?? 10000, wait: opts.wait ?? Infinity, clientId: candidateId });
    return lease.autoRenew();
  }

  /** Who leads now: `{candidateId, fencingToken, since, expiresAt}`, or null. */
  async leader() {
    const q = await this._warden.queue(this.resource);
    const h = q.holders && q.holders[0];
    return h ? { candidateId: h.clientId, fencingToken: h.fencingToken, since: h.acquiredAt, expiresAt: h.expiresAt } : null;
  }

  /** Yields the leader now, then every change of leader (a new term counts), looking every `intervalMs`. */
  async *observe({ intervalMs = 100, signal } = {}) {
    let last;
    while (!signal?.aborted) {
      const now = await this.leader();
      const key = now ? `${now.candidateId}/${now.fencingToken}` : '';
      if (key !== last) {
        last = key;
        yield now;
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}

module.exports = {
  Warden, Lease, Group, Election, ENDPOINTS, ERROR_CLASSES: BY_CODE,
  WardenError, InvalidRequestError, UnauthorizedError, ForbiddenError, NotFoundError, RequestTimeoutError,
  LockTimeoutError, NotOwnerError, LeaseLostError, RenewalCappedError, TooManyWaitersError, RateLimitedError,
  BackendUnavailableError, ShuttingDownError, InternalError, UnreachableError, ConflictError, ConditionFailedError,
};
