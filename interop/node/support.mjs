// Shared by the Node interop suites: the tollgate server (started by interop/start-tollgate,
// the launcher the Python suite uses too), HTTP helpers, and bounded waits so that a lost
// message fails the test with a clear message instead of hanging it.
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

if (!process.env.TOLLGATE_NODE_MODULES) throw new Error('TOLLGATE_NODE_MODULES must name the node_modules of the interop packages (scripts/test sets it)');
if (!process.env.TOLLGATE_BIN) throw new Error('TOLLGATE_BIN must name the tollgate binary (scripts/test sets it)');

/** `require` resolving in the interop packages installed by scripts/test. */
export const require = createRequire(join(process.env.TOLLGATE_NODE_MODULES, 'noop.js'));
export const BIN = process.env.TOLLGATE_BIN;
const LAUNCHER = join(dirname(fileURLToPath(import.meta.url)), '..', 'start-tollgate');

/** How long one awaited event or message may take by default. */
export const WAIT_MS = 5_000;

/**
 * `promise`, or a rejection naming `what` once `ms` have passed. The result is marked
 * handled, so one that a failed test no longer awaits does not turn into an unhandled
 * rejection; awaiting it still throws.
 */
export function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  const result = Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  result.catch(() => {});
  return result;
}

/**
 * The next `event` from `emitter` whose argument satisfies `pred`, within `ms`; `what`
 * names it in the timeout message. Listening starts at the call, so call it before doing
 * what should cause the event.
 */
export function next(emitter, event, pred = () => true, what = undefined, ms = WAIT_MS) {
  let listener;
  const got = new Promise((resolve) => {
    listener = (x) => { if (pred(x)) resolve(x); };
    emitter.on(event, listener);
  });
  const name = what ?? `'${event}'${pred.length ? ` matching ${pred}` : ''}`;
  const result = within(got, name, ms).finally(() => emitter.off?.(event, listener) ?? emitter.removeListener?.(event, listener));
  result.catch(() => {});
  return result;
}

/**
 * Resolves with every `event` argument seen during `ms`; the caller asserts it is empty
 * (or what it should be). Listening starts at the call.
 */
export function collect(emitter, event, ms) {
  const seen = [];
  const listener = (x) => seen.push(x);
  emitter.on(event, listener);
  return new Promise((resolve) => setTimeout(() => {
    emitter.off?.(event, listener) ?? emitter.removeListener?.(event, listener);
    resolve(seen);
  }, ms));
}

/** POSTs JSON; returns `{status, body}` (body null when not JSON). */
export async function post(base, path, body, headers = {}) {
  const res = await within(fetch(base + path, {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body),
  }), `POST ${path}`);
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** HTTP Basic credentials of a project made by `tollgate project create`. */
export const basic = (project) =>
  ({ Authorization: 'Basic ' + Buffer.from(`${project.project_id}:${project.api_token}`).toString('base64') });

/**
 * Starts `tollgate serve` on a fresh database. `settings` are TOLLGATE_* variables, `config`
 * the text of a config file, `publicUrl` sets gateway.public_url to the listen address.
 * Resolves to `{addr, base, ws, logs(), cli(...args), stop()}`; `stop()` resolves to the
 * server's exit code.
 */
export async function startTollgate({ settings = {}, config, publicUrl = false } = {}) {
  const args = [LAUNCHER, '--bin', BIN];
  for (const [k, v] of Object.entries(settings)) args.push('--set', `${k}=${v}`);
  if (config !== undefined) args.push('--config', config);
  if (publicUrl) args.push('--public-url');
  // stdin stays an open pipe: if this process dies, the launcher sees EOF and stops the server.
  const child = spawn('python3', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let log = '';
  child.stderr.setEncoding('utf8').on('data', (chunk) => { log += chunk; });
  const exited = once(child, 'exit').then(([code, signal]) => code ?? 128 + constants.signals[signal]);
  const info = await within(new Promise((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      out += chunk;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)));
    });
    exited.then((code) => reject(new Error(`tollgate did not start (launcher exited ${code}):\n${log}`)));
  }), 'tollgate to start', 40_000).catch((e) => { child.kill('SIGKILL'); throw e; });
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOLLGATE_'))),
    ...info.env,
  };
  return {
    addr: info.addr,
    base: info.base,
    ws: info.ws,
    dataDir: info.data_dir,
    /** The TOLLGATE_* settings it runs with (less the listen address). */
    env: info.env,
    logs: () => log,
    /** Runs a CLI command with `--json` on the server's database; returns its JSON. */
    cli: (...cmd) => JSON.parse(execFileSync(BIN, [...cmd, '--json'], { env, encoding: 'utf8', timeout: 60_000 })),
    /** Runs a CLI command as given; throws when it exits non-zero. */
    run: (...cmd) => execFileSync(BIN, cmd, { env, encoding: 'utf8', timeout: 60_000 }),
    stop: async () => {
      child.kill('SIGTERM');
      return within(exited, 'tollgate to exit after SIGTERM', 60_000);
    },
  };
}

/** A free loopback TCP port. */
async function freePort() {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/**
 * A private `redis-server` on a free port, persisting nothing (the machine's Redis is never
 * touched), or null when there is none (the caller skips; scripts/test installs it).
 * Resolves to `{url, stop()}` once it accepts connections.
 */
export async function startRedis() {
  const { existsSync } = await import('node:fs');
  const { connect } = await import('node:net');
  const binary = process.env.TOLLGATE_TEST_REDIS_SERVER ?? '/usr/bin/redis-server';
  if (!existsSync(binary)) return null;
  const port = await freePort();
  const run = async () => {
    const child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' });
    const exited = once(child, 'exit');
    const deadline = Date.now() + 10_000;
    for (;;) {
      const up = await new Promise((resolve) => {
        const s = connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
        s.on('error', () => resolve(false));
      });
      if (up) break;
      if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error('redis-server did not listen'); }
      await new Promise((r) => setTimeout(r, 20));
    }
    return { child, exited };
  };
  let current = await run();
  const stop = async () => { current.child.kill('SIGKILL'); await within(current.exited, 'redis-server to exit'); };
  return {
    url: `redis://127.0.0.1:${port}`,
    stop,
    /** Kills it, as a crash would, and starts it again, empty, on the same port. */
    restart: async () => { await stop(); current = await run(); },
  };
}

/**
 * Two nodes of one installation: `tollgate serve` twice through interop/start-tollgate, on
 * one database (the first node's SQLite file), one master key and `redis` as the broker.
 * Options as for startTollgate. Resolves to `[a, b]`; stop b before a (a's launcher
 * removes the database when it stops).
 */
export async function startCluster(redis, { settings = {}, config, publicUrl = false } = {}) {
  const { readFileSync } = await import('node:fs');
  const common = { ...settings, TOLLGATE_BROKER_URL: redis.url };
  const a = await startTollgate({ settings: common, config, publicUrl });
  const dbUrl = a.env.TOLLGATE_DATABASE_URL;
  const keyFile = join(a.dataDir, 'tollgate.key');
  const shared = {
    ...common,
    TOLLGATE_DATABASE_URL: dbUrl,
    TOLLGATE_SECRET_KEY: a.env.TOLLGATE_SECRET_KEY ?? readFileSync(keyFile, 'utf8').trim(),
  };
  const b = await startTollgate({ settings: shared, config, publicUrl });
  return [a, b];
}
