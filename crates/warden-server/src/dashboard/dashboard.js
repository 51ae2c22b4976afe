// warden's live dashboard: reads the server's own API once a second (stats, health, metrics, the queue view of
// each resource in sight) and follows its event stream, so a grant shows as soon as the event arrives.
// Everything a caller controls (resource names, client ids) is put into the page as text, never as markup.
'use strict';

const $ = (id) => document.getElementById(id);
const POINTS = 60;
const MAX_TRACKED = 200;
const FORGET_AFTER_MS = 30000;

let key = sessionStorage.getItem('warden-key') || '';
let skewMs = 0; // server clock minus this browser's, when they differ by more than a second
let prev = null; // the previous tick's counters
const tracked = new Map(); // resource -> { view, busyAt }
const series = { grants: [], releases: [], expiries: [], p50: [], p99: [] };
const events = [];
let loginWaiters = [];

class AuthNeeded extends Error {}

function headers() {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, asText = false) {
  const res = await fetch(path, { headers: headers(), cache: 'no-store' });
  if (res.status === 401 || res.status === 403) throw new AuthNeeded();
  const date = Date.parse(res.headers.get('date') || '');
  if (!Number.isNaN(date)) {
    const d = date - Date.now();
    skewMs = Math.abs(d) > 1500 ? d : 0;
  }
  if (asText) return res.text();
  const body = await res.json();
  if (!body.success && body.data === undefined) throw new Error(body.error || `HTTP ${res.status}`);
  return body.data;
}

function needLogin() {
  $('login').hidden = false;
  $('login-error').textContent = key ? 'That key was refused.' : '';
  return new Promise((resolve) => loginWaiters.push(resolve));
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  key = $('key').value.trim();
  sessionStorage.setItem('warden-key', key);
  $('login').hidden = true;
  const waiting = loginWaiters;
  loginWaiters = [];
  waiting.forEach((resolve) => resolve());
});

// ---- what to show --------------------------------------------------------------------------------------------

function track(resource) {
  if (!resource) return;
  if (!tracked.has(resource)) {
    if (tracked.size >= MAX_TRACKED) {
      const idle = [...tracked].find(([, t]) => !busy(t.view));
      if (!idle) return;
      tracked.delete(idle[0]);
    }
    tracked.set(resource, { view: null, busyAt: Date.now() });
  }
}

const busy = (view) => view && (view.holders.length > 0 || view.waitingClients > 0);

async function refreshResource(resource) {
  const t = tracked.get(resource);
  if (!t) return;
  try {
    t.view = await api(`/api/locks/queue?resource=${encodeURIComponent(resource)}&limit=100`);
    if (busy(t.view)) t.busyAt = Date.now();
    else if (Date.now() - t.busyAt > FORGET_AFTER_MS) tracked.delete(resource);
  } catch (e) {
    if (e instanceof AuthNeeded) throw e;
  }
}

let soon = null;
function refreshSoon() {
  if (soon) return;
  soon = setTimeout(async () => {
    soon = null;
    await Promise.allSettled([...tracked.keys()].map(refreshResource));
    renderLocks();
  }, 30);
}

// ---- numbers ---------------------------------------------------------------------------------------------------

function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

const total = (ms, name) => ms.filter((m) => m.name === name).reduce((a, m) => a + m.value, 0);

// Cumulative acquire-wait buckets summed over lock types: upper bound (s) -> count.
function buckets(ms) {
  const b = new Map();
  for (const m of ms) {
    if (m.name !== 'warden_acquire_wait_seconds_bucket') continue;
    const le = m.labels.le === '+Inf' ? Infinity : Number(m.labels.le);
    b.set(le, (b.get(le) || 0) + m.value);
  }
  return b;
}

// The bucket bound under which fraction q of the acquires between two readings fell, in ms (null: none).
function quantile(now, before, q) {
  const bounds = [...now.keys()].sort((a, b) => a - b);
  const count = (now.get(Infinity) || 0) - ((before && before.get(Infinity)) || 0);
  if (count <= 0) return null;
  for (const le of bounds) {
    const n = now.get(le) - ((before && before.get(le)) || 0);
    if (n >= q * count) return le === Infinity ? null : le * 1000;
  }
  return null;
}

function push(name, v) {
  series[name].push(v);
  if (series[name].length > POINTS) series[name].shift();
}

const fmtMs = (ms) => (ms == null ? '–' : ms < 1 ? `${Math.round(ms * 1000)} µs` : ms < 1000 ? `${+ms.toFixed(1)} ms`
  : `${+(ms / 1000).toFixed(1)} s`);

// ---- the loop --------------------------------------------------------------------------------------------------

async function tick() {
  const [stats, health, metrics] = await Promise.allSettled([
    api('/api/locks/stats'), api('/api/locks/health'), api('/metrics', true)]);
  for (const r of [stats, health, metrics]) if (r.status === 'rejected' && r.reason instanceof AuthNeeded) throw r.reason;

  renderHealth(health.status === 'fulfilled' ? health.value : null);
  if (stats.status === 'fulfilled') {
    const s = stats.value;
    $('t-active').textContent = s.activeLocks;
    $('t-grants').textContent = s.totalLocks;
    $('t-expired').textContent = s.expiredLocks;
    $('t-hold').textContent = s.averageHoldTime ? fmtMs(s.averageHoldTime) : '–';
    for (const r of s.topResources || []) track(r.resource);
  }
  if (health.status === 'fulfilled') $('t-waiting').textContent = health.value.waiters ?? '–';

  if (stats.status === 'fulfilled' && metrics.status === 'fulfilled') {
    const ms = parseMetrics(metrics.value);
    const now = { t: performance.now(), grants: stats.value.totalLocks, expiries: stats.value.expiredLocks,
      releases: total(ms, 'warden_releases_total'), buckets: buckets(ms) };
    if (prev) {
      const dt = (now.t - prev.t) / 1000;
      push('grants', Math.max(0, (now.grants - prev.grants) / dt));
      push('releases', Math.max(0, (now.releases - prev.releases) / dt));
      push('expiries', Math.max(0, (now.expiries - prev.expiries) / dt));
      const p50 = quantile(now.buckets, prev.buckets, 0.5);
      const p99 = quantile(now.buckets, prev.buckets, 0.99);
      push('p50', p50 ?? 0);
      push('p99', p99 ?? 0);
      $('lat-now').textContent = p50 == null ? '' : `last second: p50 ≤ ${fmtMs(p50)}, p99 ≤ ${fmtMs(p99)}`;
    }
    prev = now;
    drawCharts();
  }

  await Promise.allSettled([...tracked.keys()].map(refreshResource));
  renderLocks();
  await refreshAnalytics();
}

// ---- the ranking -------------------------------------------------------------------------------------------------

async function refreshAnalytics() {
  let a;
  try {
    a = await api(`/api/locks/analytics?top=10&by=${encodeURIComponent($('rank').value)}`);
  } catch (e) {
    if (e instanceof AuthNeeded) throw e;
    return;
  }
  const pair = (p) => (p ? `${fmtMs(p.p50)} / ${fmtMs(p.p99)}` : '–');
  const rows = a.resources.map((r) => {
    const tr = el('tr');
    tr.dataset.resource = r.resource;
    const waited = el('td', `${r.waited} (${Math.round(r.contention * 100)}%)`, 'num waited');
    tr.append(el('td', r.resource), el('td', r.grants, 'num grants'), waited, el('td', pair(r.waitMs), 'num'),
      el('td', pair(r.holdMs), 'num'), el('td', r.timeouts, 'num'), el('td', r.expiries, 'num expiries'));
    return tr;
  });
  $('analytics').tBodies[0].replaceChildren(...rows);
  $('analytics-empty').hidden = rows.length > 0;
}

async function loop() {
  for (;;) {
    try {
      await tick();
    } catch (e) {
      if (e instanceof AuthNeeded) await needLogin();
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// The event stream, read with fetch (EventSource cannot send the API key).
async function follow() {
  for (;;) {
    try {
      const res = await fetch('/api/events', { headers: headers(), cache: 'no-store' });
      if (res.status === 401 || res.status === 403) {
        await needLogin();
        continue;
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          onEvent(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
        }
      }
    } catch (e) {
      // Reconnect below.
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function onEvent(block) {
  const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
  if (!data) return;
  let e;
  try {
    e = JSON.parse(data);
  } catch {
    return;
  }
  events.unshift(e);
  if (events.length > 100) events.pop();
  renderEvents();
  if (e.resource) {
    track(e.resource);
    refreshSoon();
  }
}

// ---- drawing ---------------------------------------------------------------------------------------------------

function el(tag, text, cls) {
  const n = document.createElement(tag);
  if (text != null) n.textContent = String(text);
  if (cls) n.className = cls;
  return n;
}

function renderHealth(h) {
  const badge = $('health');
  const status = h ? h.status : 'unreachable';
  badge.className = `badge ${status}`;
  badge.dataset.status = status;
  badge.textContent = h ? status : 'server unreachable';
  $('backend').textContent = h ? h.backend : '';
  const nodes = $('nodes');
  nodes.replaceChildren(...(h ? h.nodes : []).map((n) => {
    const li = el('li', `${n.address}: ${n.reachable ? fmtMs(n.latencyMs) : 'unreachable'}`,
      n.reachable ? 'up' : 'down');
    return li;
  }));
}

function renderLocks() {
  const views = [...tracked].filter(([, t]) => t.view).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const rows = [];
  const queues = [];
  for (const [resource, { view }] of views) {
    for (const h of view.holders) {
      const tr = el('tr');
      tr.dataset.resource = resource;
      tr.dataset.handle = h.leaseHandle;
      tr.append(el('td', resource), el('td', h.clientId), el('td', h.mode ? `${h.type} (${h.mode})` : h.type),
        el('td', h.fencingToken, 'num fence'));
      const left = el('td', null, 'num left');
      left.dataset.expires = Date.parse(h.expiresAt);
      left.dataset.ttl = h.ttl;
      const bar = el('span', null, 'bar');
      bar.append(el('i'));
      left.append(bar, el('span'));
      tr.append(left, el('td', h.renewalCount, 'num'));
      rows.push(tr);
    }
    if (view.foreignHolder) {
      const tr = el('tr');
      tr.dataset.resource = resource;
      tr.append(el('td', resource), el('td', 'another Redis client (not warden)'), el('td', ''), el('td', ''),
        el('td', ''), el('td', ''));
      rows.push(tr);
    }
    if (view.waitingClients > 0) {
      const box = el('div', null, 'queue');
      box.dataset.resource = resource;
      box.append(el('b', resource), el('span', ` — ${view.waitingClients} waiting`, 'muted'));
      const ol = el('ol');
      for (const w of view.queue) {
        const li = el('li', `${w.clientId} · ${w.mode ? `${w.type} (${w.mode})` : w.type} · ttl ${fmtMs(w.ttl)}`);
        li.dataset.client = w.clientId;
        ol.append(li);
      }
      box.append(ol);
      queues.push(box);
    }
  }
  $('held').tBodies[0].replaceChildren(...rows);
  $('held-empty').hidden = rows.length > 0;
  $('queues').replaceChildren(...queues);
  $('queues-empty').hidden = queues.length > 0;
  runDown();
}

// The time-left bars run down between ticks.
function runDown() {
  const now = Date.now() + skewMs;
  for (const td of document.querySelectorAll('#held td.left')) {
    const left = Math.max(0, Number(td.dataset.expires) - now);
    const frac = Math.min(1, left / Math.max(1, Number(td.dataset.ttl)));
    const fill = td.querySelector('.bar i');
    fill.style.width = `${(frac * 100).toFixed(1)}%`;
    fill.classList.toggle('low', frac < 0.2);
    td.lastChild.textContent = fmtMs(left);
  }
}

function renderEvents() {
  const items = events.slice(0, 50).map((e) => {
    const time = (e.time || '').slice(11, 23);
    const what = [e.kind, e.resource, e.clientId, e.fence != null ? `fence ${e.fence}` : null,
      e.outcome && e.outcome !== 'ok' ? e.outcome : null].filter(Boolean).join(' · ');
    return el('li', `${time} ${what}`);
  });
  $('events').replaceChildren(...items);
}

function drawChart(canvas, lines) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth * ratio;
  const h = canvas.clientHeight * ratio;
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...lines.flatMap(([data]) => data));
  const css = getComputedStyle(document.documentElement);
  for (const [data, color] of lines) {
    g.strokeStyle = css.getPropertyValue(color).trim() || '#888';
    g.lineWidth = 2 * ratio;
    g.beginPath();
    data.forEach((v, i) => {
      const x = (w * (i + POINTS - data.length)) / (POINTS - 1);
      const y = h - 4 * ratio - ((h - 20 * ratio) * v) / max;
      if (i === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  }
  g.fillStyle = css.getPropertyValue('--muted').trim();
  g.font = `${11 * ratio}px system-ui, sans-serif`;
  g.fillText(max >= 10 ? Math.round(max) : +max.toFixed(2), 4 * ratio, 12 * ratio);
}

function drawCharts() {
  drawChart($('rates'), [[series.grants, '--grants'], [series.releases, '--releases'], [series.expiries, '--expiries']]);
  drawChart($('latency'), [[series.p50, '--p50'], [series.p99, '--p99']]);
}

setInterval(runDown, 250);
$('rank').addEventListener('change', () => { refreshAnalytics().catch(() => {}); });
loop();
follow();
