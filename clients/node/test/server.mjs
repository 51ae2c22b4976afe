// Starts real `warden serve` processes for the tests (the binary built by cargo: $WARDEN_BIN, else
// target/debug/warden), each on a free port, killed when the test process ends.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '../../..');
export const bin = process.env.WARDEN_BIN
  || [join(root, 'target/debug/warden'), join(root, 'target/release/warden')].find(existsSync);
if (!bin) throw new Error('no warden binary: run `cargo build -p warden-cli` first, or set WARDEN_BIN');

const children = new Set();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

/** A `warden serve` with `args`; resolves to {url, child, stop()} once it listens. */
export async function serve(args = []) {
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: 'error', WARDEN_BACKEND: '', WARDEN_LISTEN: '' },
  });
  children.add(child);
  const lines = createInterface({ input: child.stdout });
  const [line] = await once(lines, 'line');
  const m = /listening on (\S+)/.exec(line);
  if (!m) throw new Error(`unexpected banner: ${line}`);
  const stop = async (signal = 'SIGKILL') => {
    if (child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
    children.delete(child);
  };
  return { url: m[1], child, stop };
}

/** A new API key: {key, entry} (the entry for the auth file; `warden keygen` prints the key on stderr). */
export function keygen(principal, role, namespaces = ['*']) {
  const args = ['keygen', '--principal', principal, '--role', role, ...namespaces.flatMap((n) => ['--namespace', n])];
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  const key = /(wdn_[0-9a-f]+)/.exec(r.stderr);
  if (r.status !== 0 || !key) throw new Error(`warden keygen failed: ${r.stderr}`);
  return { key: key[1], entry: r.stdout };
}

/** An auth file with these entries; returns its path. */
export function authFile(entries) {
  const dir = mkdtempSync(join(tmpdir(), 'warden-node-'));
  const path = join(dir, 'auth.toml');
  writeFileSync(path, entries.join('\n'));
  return path;
}
