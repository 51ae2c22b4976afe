// The dashboard in a real browser: headless Chromium (Debian's `chromium`, or $CHROMIUM) driven by
// playwright-core, against a real `warden serve` over a real redis-server that the test starts on a free port
// and kills. Screenshots (desktop and phone widths) go to target/dashboard/ for a person to look at.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer, connect } from 'node:net';
import { createInterface } from 'node:readline';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const root = resolve(import.meta.dirname, '../../..');
const bin = process.env.WARDEN_BIN
  || [join(root, 'target/debug/warden'), join(root, 'target/release/warden')].find(existsSync);
if (!bin) throw new Error('no warden binary: run `cargo build -p warden-cli` first, or set WARDEN_BIN');
const browserPath = process.env.CHROMIUM || ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find(existsSync);
if (!browserPath) throw new Error('no Chromium: install Debian\'s `chromium` package, or set CHROMIUM');
const shots = join(root, 'target/dashboard');
mkdirSync(shots, { recursive: true });

const children = new Set();
const killAll = () => { for (const c of children) c.kill('SIGKILL'); children.clear(); };
process.on('exit', killAll);

async function freePort() {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  s.close();
  await once(s, 'close');
  return port;
}

async function listening(port) {
  for (;;) {
    const ok = await new Promise((res) => {
      const c = connect(port, '127.0.0.1', () => { c.end(); res(true); });
      c.on('error', () => res(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A throwaway redis-server on a free port in a temp dir. */
async function redis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'warden-dash-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  children.add(child);
  await listening(port);
  return { url: `redis://127.0.0.1:${port}`, kill: () => { child.kill('SIGKILL'); children.delete(child); } };
}

async function serve(args) {
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: 'error', WARDEN_BACKEND: '', WARDEN_LISTEN: '' },
  });
  children.add(child);
  const [line] = await once(createInterface({ input: child.stdout }), 'line');
  const m = /listening on (\S+)/.exec(line);
  if (!m) throw new Error(`unexpected banner: ${line}`);
  return m[1];
}

async function call(url, path, body, key) {
  const res = await fetch(url + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  assert.ok(json.success, `${path}: ${JSON.stringify(json)}`);
  return json.data;
}

const browser = await chromium.launch({ executablePath: browserPath, args: ['--no-sandbox'] });
// The servers' piped output keeps the process alive: end them with the tests.
after(async () => {
  await browser.close();
  killAll();
});

/** Whether the held-locks table has a row for `handle` (and, if given, showing `token`). */
const rowShown = (page, handle, token) => page.evaluate(([h, t]) => {
  const tr = [...document.querySelectorAll('#held tbody tr')].find((r) => r.dataset.handle === h);
  return Boolean(tr && (t === null || tr.querySelector('.fence').textContent === t));
}, [handle, token ?? null]);

async function within(ms, what, check) {
  const start = Date.now();
  while (Date.now() - start < ms) {
    if (await check()) return Date.now() - start;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`${what}: not within ${ms} ms`);
}

test('a grant, a waiter, a handoff and a backend failure show live, without a reload', async () => {
  const store = await redis();
  const url = await serve(['--backend', store.url]);
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`${url}/`);
  await within(3000, 'health shown as healthy',
    () => page.evaluate(() => document.getElementById('health').dataset.status === 'healthy'));

  // Some traffic on another resource for the charts (and the screenshots) while the rest goes on.
  let busy = true;
  const traffic = (async () => {
    while (busy) {
      const l = await call(url, '/api/locks/acquire', { resource: 'jobs/nightly', clientId: 'cron', ttl: 5000 });
      await call(url, '/api/locks/release', { lockId: l.lockId, clientId: 'cron' });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  // A grant shows within 1 s, with its fencing token.
  const alice = await call(url, '/api/locks/acquire', { resource: 'orders/42', clientId: 'alice', ttl: 60000 });
  const shownIn = await within(1000, 'the granted lock\'s row', () => rowShown(page, alice.leaseHandle,
    String(alice.fencingToken)));
  console.log(`row shown ${shownIn} ms after the grant`);

  // A waiter shows in the queue, in order.
  const bobP = call(url, '/api/locks/acquire', { resource: 'orders/42', clientId: 'bob', ttl: 60000,
    waitTimeout: 30000 });
  await within(2500, 'bob in the queue', () => page.evaluate(() => [...document.querySelectorAll(
    '#queues .queue li')].map((li) => li.dataset.client).join(',') === 'bob'));
  await within(5000, 'grants charted', () => page.evaluate(() => Number(document.getElementById('t-grants')
    .textContent) > 20));
  await page.screenshot({ path: join(shots, 'desktop.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(shots, 'phone.png'), fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone's screen`);
  await page.setViewportSize({ width: 1280, height: 800 });

  // Release: alice's row goes, bob's appears (with a higher fence), the queue empties.
  await call(url, '/api/locks/release', { lockId: alice.lockId, clientId: 'alice' });
  const bob = await bobP;
  assert.ok(bob.fencingToken > alice.fencingToken);
  await within(1000, 'the handoff shown', async () => !(await rowShown(page, alice.leaseHandle))
    && rowShown(page, bob.leaseHandle, String(bob.fencingToken)));
  await within(2500, 'the queue emptied', () => page.evaluate(() => !document.querySelector('#queues .queue')));

  busy = false;
  await traffic;

  // The ranking: the traffic's resource is the hottest; ranked by contention, orders/42 (bob waited) leads.
  const firstRow = () => page.evaluate(() => {
    const tr = document.querySelector('#analytics tbody tr');
    return tr ? [tr.dataset.resource, tr.querySelector('.waited').textContent] : null;
  });
  await within(2500, 'jobs/nightly ranked hottest', async () => (await firstRow())?.[0] === 'jobs/nightly');
  await page.selectOption('#rank', 'contention');
  await within(1500, 'orders/42 ranked most contended', async () => {
    const row = await firstRow();
    return row?.[0] === 'orders/42' && row[1] === '1 (50%)';
  });

  // Owners' secrets never reach the page.
  const html = await page.content();
  assert.ok(!html.includes(alice.lockId) && !html.includes(bob.lockId), 'a lock id is on the page');

  assert.deepEqual(errors, []);

  // The backend stops: health turns red (the page's own requests now get 503s, which the browser logs).
  store.kill();
  await within(5000, 'health shown as unhealthy',
    () => page.evaluate(() => document.getElementById('health').dataset.status === 'unhealthy'));
  await page.screenshot({ path: join(shots, 'backend-down.png'), fullPage: true });
  await page.close();
});

test('with auth on, the page asks for a key and shows everything to an observer', async () => {
  const keygen = (principal, role) => {
    const r = spawnSync(bin, ['keygen', '--principal', principal, '--role', role, '--namespace', '*'],
      { encoding: 'utf8' });
    const key = /(wdn_[0-9a-f]+)/.exec(r.stderr);
    assert.ok(r.status === 0 && key, `warden keygen failed: ${r.stderr}`);
    return { key: key[1], entry: r.stdout };
  };
  const watcher = keygen('ops', 'observer');
  const worker = keygen('billing', 'client');
  const dir = mkdtempSync(join(tmpdir(), 'warden-dash-auth-'));
  writeFileSync(join(dir, 'auth.toml'), [watcher.entry, worker.entry].join('\n'));
  const url = await serve(['--backend', 'memory://', '--auth-file', join(dir, 'auth.toml')]);

  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(`${url}/`);
  await page.waitForSelector('#login:not([hidden])', { timeout: 3000 });
  await page.fill('#key', 'wdn_not_a_key');
  await page.click('#login button');
  await page.waitForSelector('#login:not([hidden])', { timeout: 3000 });
  assert.match(await page.textContent('#login-error'), /refused/);

  await page.fill('#key', watcher.key);
  await page.click('#login button');
  await within(3000, 'health shown', () => page.evaluate(() => document.getElementById('health').dataset.status
    === 'healthy'));
  const lock = await call(url, '/api/locks/acquire', { resource: 'invoices/7', clientId: 'w1', ttl: 60000 },
    worker.key);
  await within(1000, 'the row of a lock taken with another key',
    () => rowShown(page, lock.leaseHandle, String(lock.fencingToken)));
  assert.ok(!(await page.content()).includes(lock.lockId), 'a lock id is on the page');
  await page.close();
});
