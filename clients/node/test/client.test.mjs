// The Node client against a real `warden serve`: exclusion under `using`, the abort signal on revoke and on
// expiry, typed errors for the API's codes, elections, and every endpoint it calls present in /openapi.json.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as w from '../index.mjs';
import { serve, keygen, authFile } from './server.mjs';

const main = await serve(['--backend', 'memory://']);
after(() => main.stop());
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const expectCode = async (p, Cls, code) => {
  await assert.rejects(p, (e) => e instanceof Cls && e instanceof w.WardenError && e.code === code, `${code}`);
};

test('ten concurrent using calls keep a counter exact, fences increasing in turn', async () => {
  let counter = 0;
  let inside = false;
  const fences = [];
  await Promise.all(Array.from({ length: 10 }, (_, i) => (async () => {
    const client = new w.Warden({ url: main.url, clientId: `worker-${i}` });
    for (let n = 0; n < 5; n++) {
      await client.using('counter', { ttl: 5000, wait: 30000 }, async (signal, lease) => {
        assert.equal(inside, false, 'two holders inside the critical section');
        inside = true;
        fences.push(lease.fencingToken);
        const v = counter;
        await sleep(1);
        counter = v + 1;
        assert.equal(signal.aborted, false);
        inside = false;
      });
    }
  })()));
  assert.equal(counter, 50);
  assert.deepEqual(fences, [...fences].sort((a, b) => a - b), 'fences did not increase in grant order');
  const [top] = (await new w.Warden({ url: main.url }).analytics({ by: 'contention', top: 1 })).resources;
  assert.equal(top.resource, 'counter');
  assert.equal(top.grants, 50);
  assert.equal(top.holdMs.count, 50);
  assert.ok(top.waited > 0 && top.waitMs.count === top.waited, JSON.stringify(top));
});

test('the signal aborts when the server revokes the lease', async () => {
  const admin = keygen('root', 'admin');
  const app = keygen('app', 'client', ['jobs:*']);
  const s = await serve(['--backend', 'memory://', '--auth-file', authFile([admin.entry, app.entry])]);
  try {
    const client = new w.Warden({ url: s.url, token: app.key });
    const started = Date.now();
    const reason = await client.using('jobs:1', { ttl: 600 }, async (signal) => {
      const res = await fetch(`${s.url}/api/locks/force-release`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ resource: 'jobs:1', reason: 'test' }),
      });
      assert.equal(res.status, 200, await res.text());
      await once(signal, 'abort');
      return signal.reason;
    });
    assert.ok(reason instanceof w.LeaseLostError || reason instanceof w.NotFoundError, `${reason}`);
    assert.ok(Date.now() - started < 600, 'aborted only after the ttl');
  } finally {
    await s.stop();
  }
});

test('the signal aborts by the end of the validity when the server is gone', async () => {
  const s = await serve(['--backend', 'memory://']);
  const client = new w.Warden({ url: s.url, timeoutMs: 200 });
  const lease = (await client.acquire('gone', { ttl: 500 })).autoRenew();
  await s.stop();
  const killed = Date.now();
  await once(lease.signal, 'abort');
  assert.ok(lease.signal.reason instanceof w.LeaseLostError, `${lease.signal.reason}`);
  // By the end of its validity (plus this process's timer delay), not at the next failed renewal's leisure.
  assert.ok(Date.now() <= lease.validUntil + 250, `aborted ${Date.now() - lease.validUntil} ms after the validity ended`);
  assert.ok(Date.now() - killed <= lease.ttl + 250, `aborted ${Date.now() - killed} ms after the kill`);
});

test('every API error is a typed error carrying its code', async () => {
  const client = new w.Warden({ url: main.url, clientId: 'errors' });
  await expectCode(client.acquire('', { wait: 0 }), w.InvalidRequestError, 'invalid_request');
  await expectCode(client.release('0123456789abcdef0123456789abcdef'), w.NotFoundError, 'not_found');
  const held = await client.acquire('busy', { ttl: 30000 });
  await expectCode(client.acquire('busy', { wait: 0 }), w.LockTimeoutError, 'lock_timeout');
  await expectCode(client.release(held.lockId, 'someone-else'), w.NotOwnerError, 'not_owner');
  await held.release();
  const capped = await client.acquire('capped', { ttl: 30000, maxRenewals: 0 });
  await expectCode(capped.renew(), w.RenewalCappedError, 'renewal_capped');
  await capped.release();
  // A semaphore: two of two permits, then a third waits; other permits, or a lock, on it conflict.
  const permits = [await client.acquire('pool', { permits: 2 }), await client.acquire('pool', { permits: 2 })];
  assert.equal(permits[0].type, 'semaphore');
  assert.ok(permits[1].fencingToken > permits[0].fencingToken);
  await expectCode(client.acquire('pool', { permits: 2, wait: 0 }), w.LockTimeoutError, 'lock_timeout');
  await expectCode(client.acquire('pool', { permits: 3, wait: 0 }), w.ConflictError, 'conflict');
  await expectCode(client.acquire('pool', { wait: 0 }), w.ConflictError, 'conflict');
  await expectCode(client.acquire('pool', { permits: 0 }), w.InvalidRequestError, 'invalid_request');
  for (const p of permits) await p.release();
  // Conditions: a resumed run only if nobody held the resource since its token; a run at most once a minute.
  const first = await client.acquire('job', { ifNotGrantedWithin: 60000 });
  await first.release();
  await expectCode(client.acquire('job', { ifNotGrantedWithin: 60000 }), w.ConditionFailedError, 'condition_failed');
  await (await client.acquire('job', { ifFencingToken: first.fencingToken })).release();
  await expectCode(client.acquire('job', { ifFencingToken: first.fencingToken }), w.ConditionFailedError, 'condition_failed');
  await expectCode(client.acquire('job', { ifFencingToken: 0 }), w.InvalidRequestError, 'invalid_request');
  // Priorities: a later, higher-priority waiter is granted first.
  const queued = async (n) => {
    for (let i = 0; i < 250 && (await client.queue('prio')).waitingClients !== n; i++) await sleep(20);
    assert.equal((await client.queue('prio')).waitingClients, n);
  };
  const prioHolder = await client.acquire('prio');
  const plainP = client.acquire('prio', { wait: 10000, clientId: 'plain' });
  await queued(1);
  const urgentP = client.acquire('prio', { wait: 10000, clientId: 'urgent', priority: 20 });
  await queued(2);
  assert.equal((await client.queue('prio')).queue[0].clientId, 'urgent');
  await prioHolder.release();
  const urgent = await urgentP;
  await urgent.release();
  const plain = await plainP;
  await plain.release();
  assert.ok(urgent.fencingToken < plain.fencingToken);
  await expectCode(client.acquire('prio', { priority: 101 }), w.InvalidRequestError, 'invalid_request');
  const short = await client.acquire('short', { ttl: 20 });
  await sleep(60);
  await assert.rejects(short.renew(), (e) => e instanceof w.LeaseLostError || e instanceof w.NotFoundError);

  const app = keygen('app', 'client', ['a:*']);
  const s = await serve(['--backend', 'memory://', '--auth-file', authFile([app.entry]), '--rate-limit', '1', '--rate-burst', '1', '--max-waiters-per-resource', '1']);
  try {
    await expectCode(new w.Warden({ url: s.url }).stats(), w.UnauthorizedError, 'unauthorized');
    const authed = new w.Warden({ url: s.url, token: app.key });
    await expectCode(authed.acquire('b:1', { wait: 0 }), w.ForbiddenError, 'forbidden');
    let limited;
    for (let i = 0; i < 20 && !limited; i++) {
      try { await authed.queue('a:1'); } catch (e) { limited = e; }
    }
    assert.ok(limited instanceof w.RateLimitedError && limited.code === 'rate_limited', `${limited}`);
  } finally {
    await s.stop();
  }

  const few = await serve(['--backend', 'memory://', '--max-waiters-per-resource', '1']);
  const front = await serve(['--backend', few.url]);
  try {
    const c = new w.Warden({ url: few.url });
    const h = await c.acquire('full', { ttl: 30000 });
    const parked = c.acquire('full', { wait: 20000 }).catch((e) => e);
    await waitFor(async () => (await c.queue('full')).waitingClients === 1);
    await expectCode(c.acquire('full', { wait: 20000 }), w.TooManyWaitersError, 'too_many_waiters');
    // A front server over this one: its backend gone is a 503 backend_unavailable.
    const viaFront = new w.Warden({ url: front.url });
    await h.release();
    assert.ok(!((await parked) instanceof Error));
    await few.stop('SIGTERM');
    await expectCode(viaFront.acquire('x', { wait: 0 }), w.BackendUnavailableError, 'backend_unavailable');
  } finally {
    await few.stop();
    await front.stop();
  }

  const closing = await serve(['--backend', 'memory://']);
  const c = new w.Warden({ url: closing.url });
  await c.acquire('closing', { ttl: 30000 });
  const parked = c.acquire('closing', { wait: 20000 }).catch((e) => e);
  await waitFor(async () => (await c.queue('closing')).waitingClients === 1);
  closing.child.kill('SIGTERM');
  const e = await parked;
  assert.ok(e instanceof w.ShuttingDownError && e.code === 'shutting_down', `${e}`);
  await closing.stop();

  await expectCode(new w.Warden({ url: 'http://127.0.0.1:1' }).stats(), w.UnreachableError, 'unreachable');
});

test('an election hands over on resign, and observe sees it', async () => {
  const client = new w.Warden({ url: main.url });
  const election = client.election('consumer');
  const first = await election.campaign('c1', { ttl: 5000 });
  const second = election.campaign('c2', { ttl: 5000 });
  await waitFor(async () => (await client.queue('election:consumer')).waitingClients === 1);
  const ac = new AbortController();
  const seen = [];
  const observing = (async () => {
    for await (const l of election.observe({ intervalMs: 20, signal: ac.signal })) {
      seen.push(l && l.candidateId);
      if (l && l.candidateId === 'c2') ac.abort();
    }
  })();
  await waitFor(async () => seen.length >= 1);
  const resigned = Date.now();
  await first.resign();
  const lead = await second;
  assert.ok(Date.now() - resigned < 500, 'handover was slow');
  assert.ok(lead.fencingToken > first.fencingToken);
  assert.equal((await election.leader()).candidateId, 'c2');
  await observing;
  assert.equal(seen[0], 'c1');
  assert.equal(seen.at(-1), 'c2');
  await lead.release();
});

test('a group is granted whole or not at all, and released with one call', async () => {
  const a = new w.Warden({ url: main.url, clientId: 'group-a' });
  const b = new w.Warden({ url: main.url, clientId: 'group-b' });
  const group = await a.acquireGroup(['stock', { resource: 'rates', mode: 'shared' }, { resource: 'slots', permits: 2 }]);
  assert.deepEqual(group.locks.map((l) => l.resource), ['rates', 'slots', 'stock']);
  assert.ok(group.fencingToken('stock') > 0);
  assert.equal(group.groupId.split('.').length, 3);
  const refused = b.acquireGroup(['orders', 'stock'], { wait: 0 });
  await expectCode(refused, w.LockTimeoutError, 'lock_timeout');
  const orders = await b.acquire('orders', { wait: 0 });
  await orders.release();
  await group.renew(60000);
  assert.ok(group.locks.every((l) => l.ttl === 60000));
  group.autoRenew();
  await group.release();
  assert.ok(group.lost, 'a released group still looks held');
  const again = await b.acquireGroup(['stock', 'orders'], { wait: 0 });
  assert.ok(again.fencingToken('stock') > group.fencingToken('stock'));
  await again.release();
  await expectCode(a.acquireGroup(['x', 'x']), w.InvalidRequestError, 'invalid_request');
});

test('a path lock excludes below and above, never siblings', async () => {
  const a = new w.Warden({ url: main.url, clientId: 'path-a' });
  const b = new w.Warden({ url: main.url, clientId: 'path-b' });
  const eu = await a.acquirePath('shop/eu');
  assert.deepEqual(eu.locks.map((l) => l.resource), ['shop', 'shop/eu']);
  assert.ok(eu.fencingToken('shop/eu') > 0);
  for (const held of ['shop/eu/42', 'shop']) {
    await expectCode(b.acquirePath(held, { wait: 0 }), w.LockTimeoutError, 'lock_timeout');
  }
  await expectCode(b.acquirePath('shop/eu/42', { wait: 0, shared: true }), w.LockTimeoutError, 'lock_timeout');
  await (await b.acquirePath('shop/us/7', { wait: 0 })).release();
  await eu.release();
  await (await b.acquirePath('shop:eu:42', { wait: 0, separator: ':' })).release();
  await expectCode(a.acquirePath('shop//eu'), w.InvalidRequestError, 'invalid_request');
});

test('every endpoint and acquire field the client uses is in the served OpenAPI document', async () => {
  const doc = await (await fetch(`${main.url}/openapi.json`)).json();
  for (const [method, path] of w.ENDPOINTS) {
    assert.ok(doc.paths[path] && doc.paths[path][method], `${method} ${path} is not in /openapi.json`);
  }
  const props = Object.keys(doc.components.schemas.AcquireBody.properties);
  for (const f of ['resource', 'type', 'mode', 'ttl', 'waitTimeout', 'clientId', 'maxRenewals', 'maxHold']) {
    assert.ok(props.includes(f), `acquire field ${f} is not in /openapi.json`);
  }
  for (const f of ['lockId', 'clientId', 'ttl']) {
    assert.ok(Object.keys(doc.components.schemas.RenewBody.properties).includes(f), `renew field ${f}`);
  }
  for (const f of ['lockId', 'clientId']) {
    assert.ok(Object.keys(doc.components.schemas.ReleaseBody.properties).includes(f), `release field ${f}`);
  }
  // Every error code the server can answer has its class (the tests above trigger all but the two a client
  // cannot cause: a body too slow to arrive, and an internal failure).
  for (const code of doc.components.schemas.ErrorCode.enum.filter((c) => c !== 'unknown')) {
    const Cls = w.ERROR_CLASSES[code];
    assert.ok(Cls && Cls.prototype instanceof w.WardenError, `no error class for ${code}`);
  }
});

test('https with a private CA, trusted through NODE_EXTRA_CA_CERTS', async () => {
  const { execFileSync } = await import('node:child_process');
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'warden-tls-'));
  const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
  { stdio: 'ignore' });
  const s = await serve(['--backend', 'memory://', '--tls-cert', cert, '--tls-key', key]);
  try {
    assert.match(s.url, /^https:/);
    const script = `const { Warden } = require(${JSON.stringify(new URL('../index.cjs', import.meta.url).pathname)});
      new Warden({ url: ${JSON.stringify(s.url)} }).acquire('tls', { ttl: 1000 })
        .then((l) => { console.log('fence', l.fencingToken); return l.release(); })
        .catch((e) => { console.error(e); process.exit(1); });`;
    const out = execFileSync(process.execPath, ['-e', script], { env: { ...process.env, NODE_EXTRA_CA_CERTS: cert }, encoding: 'utf8' });
    assert.match(out, /fence \d+/);
    // Without the CA the server is not trusted: an UnreachableError, not a silent success.
    await assert.rejects(new w.Warden({ url: s.url }).stats(), (e) => e instanceof w.UnreachableError);
  } finally {
    await s.stop();
  }
});

async function waitFor(cond, ms = 5000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(5);
  }
  throw new Error('condition not met in time');
}

test('the README quick start works verbatim', async () => {
  const { readFileSync, writeFileSync, rmSync } = await import('node:fs');
  const { execFileSync } = await import('node:child_process');
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const code = /```js\n([\s\S]*?)```/.exec(readme)[1];
  // Inside the package, so `import 'warden-client'` resolves to it by its own name.
  const file = new URL('../.readme-quickstart.mjs', import.meta.url);
  writeFileSync(file, code);
  try {
    const out = execFileSync(process.execPath, [file.pathname], { env: { ...process.env, WARDEN_URL: main.url }, encoding: 'utf8' });
    assert.match(out, /holding orders:42 with fencing token \d+/);
  } finally {
    rmSync(file);
  }
});
