// examples/browser in a real browser: Debian's chromium, headless, driven by playwright-core.
// Tollgate (the real binary, started with the example's tollgate.toml by interop/start-tollgate)
// and the example's server.mjs run on two different origins, as in the example's README:
//
//   http://127.0.0.1:<A>   Tollgate; gateway.allowed_origins = the page's origin
//   http://localhost:<B>   server.mjs: the pages and "the app's backend"
//
// and the pages must work across them: CORS on the token endpoints, the WebSocket origin check,
// a server API publication reaching the Centrifugo page, a chat message from another member
// reaching the SignalWire Chat page. The same pages served as http://127.0.0.1:<B> (another
// origin, not allowed) must be refused, and the test asserts what the page sees then.
//
// Environment (scripts/test sets them): TOLLGATE_BIN, TOLLGATE_NODE_MODULES (playwright-core),
// TOLLGATE_EXAMPLE_MODULES (the example's node_modules); optional CHROMIUM (default
// /usr/bin/chromium) and TOLLGATE_SCREENSHOTS (a directory: the pages are saved there as
// browser-example.png and browser-example-chat.png once they have received messages).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { require, startTollgate, within } from '../node/support.mjs';

const { chromium } = require('playwright-core');

const EXAMPLE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'browser');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
if (!process.env.TOLLGATE_EXAMPLE_MODULES) throw new Error('TOLLGATE_EXAMPLE_MODULES must name the node_modules of examples/browser (scripts/test sets it)');
const SHOTS = process.env.TOLLGATE_SCREENSHOTS;

/** How long a page may take to reach a state, or a message to show up in it. */
const PAGE_MS = 15_000;
const TIMEOUT = { timeout: 60_000 };

let tollgate, app, browser, project, serverKey;
let allowed, refused; // http://localhost:B and http://127.0.0.1:B: the same pages, two origins

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    }).on('error', reject);
  });
}

/** Starts examples/browser/server.mjs; resolves once it listens. */
async function startApp(env) {
  const child = spawn(process.execPath, [join(EXAMPLE, 'server.mjs')], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.setEncoding('utf8').on('data', (c) => { log += c; });
  child.stderr.setEncoding('utf8').on('data', (c) => { log += c; });
  const exited = once(child, 'exit');
  await within(new Promise((resolve, reject) => {
    child.stdout.on('data', () => { if (log.includes('example app on')) resolve(); });
    exited.then(([code]) => reject(new Error(`server.mjs exited with ${code}:\n${log}`)));
  }), 'server.mjs to listen', 10_000).catch((e) => { child.kill('SIGKILL'); throw e; });
  return {
    logs: () => log,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return within(exited, 'server.mjs to exit', 10_000);
    },
  };
}

before(async () => {
  const port = await freePort();
  allowed = `http://localhost:${port}`;
  refused = `http://127.0.0.1:${port}`;
  // The example's own config file; the launcher's settings override its listen address,
  // database, public URL (the address it listens on) and the allowed origin (this port).
  tollgate = await startTollgate({
    config: readFileSync(join(EXAMPLE, 'tollgate.toml'), 'utf8'),
    publicUrl: true,
    settings: { TOLLGATE_GATEWAY__ALLOWED_ORIGINS: allowed },
  });
  // The README's bootstrap: the CLI, after `serve` made the database.
  project = tollgate.cli('project', 'create', '--name', 'browser-example');
  serverKey = tollgate.cli('server-key', 'create', '--project', project.project_id, '--name', 'example backend');
  app = await startApp({
    PROJECT_ID: project.project_id, API_TOKEN: project.api_token, SERVER_KEY: serverKey.key,
    TOLLGATE: tollgate.base, PORT: String(port), HOST: '127.0.0.1',
    NODE_MODULES: process.env.TOLLGATE_EXAMPLE_MODULES,
  });
  browser = await within(chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Chromium refuses to run as root with its sandbox (CI runs as root).
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  }), `${CHROMIUM} to start`, 30_000);
}, TIMEOUT);

after(async () => {
  await browser?.close().catch(() => {});
  await app?.stop();
  if (tollgate) assert.equal(await tollgate.stop(), 0, 'tollgate exits cleanly on SIGTERM');
}, { timeout: 70_000 });

/** A fresh page (own context: own sessionStorage) that remembers what the server answered. */
async function open(url) {
  const context = await browser.newContext({ viewport: { width: 900, height: 760 } });
  const page = await context.newPage();
  page.responses = [];
  page.socketErrors = [];
  page.bodies = []; // the texts of the app backend's JSON answers
  page.on('response', (r) => page.responses.push({ url: r.url(), method: r.request().method(), status: r.status(), headers: r.headers() }));
  page.on('requestfinished', (req) => {
    if (req.url().startsWith(new URL(url).origin) && req.method() === 'POST') {
      page.bodies.push(within(req.response().then((r) => r.text()), `the body of POST ${req.url()}`));
    }
  });
  page.on('websocket', (ws) => ws.on('socketerror', (e) => page.socketErrors.push(e)));
  await within(page.goto(url), `GET ${url}`, PAGE_MS);
  return page;
}

/** Waits until `window.example` satisfies `pred`; on timeout, fails with the page's log. */
async function until(page, pred, what, arg) {
  try {
    await page.waitForFunction(pred, arg, { timeout: PAGE_MS });
  } catch {
    const log = await page.locator('#log').innerText().catch(() => '(no log)');
    throw new Error(`timed out after ${PAGE_MS} ms waiting for ${what}; the page shows:\n${log}\n` +
      `page state: ${JSON.stringify(await page.evaluate(() => window.example).catch(() => null))}\n` +
      `server.mjs:\n${app.logs()}`);
  }
}

async function serverApi(body) {
  const res = await within(fetch(`${tollgate.base}/api`, {
    method: 'POST', headers: { 'X-API-Key': serverKey.key, 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  }), 'POST /api');
  assert.equal(res.status, 200);
  return res.json();
}

test('Centrifugo page on another origin: tokens over CORS, then a server API publication arrives', TIMEOUT, async () => {
  // What the browser sends before the page's token requests: a preflight for POST with
  // Authorization and Content-Type. Allowed for the page's origin, not for another.
  const preflight = (origin) => fetch(`${tollgate.base}/api/v1/centrifugo/subscription-token`, {
    method: 'OPTIONS',
    headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type' },
  });
  const ok = await preflight(allowed);
  assert.ok(ok.status >= 200 && ok.status < 300, `preflight status ${ok.status}`);
  assert.equal(ok.headers.get('access-control-allow-origin'), allowed);
  assert.match(ok.headers.get('access-control-allow-headers') ?? '', /authorization/i);
  assert.equal((await preflight(refused)).headers.get('access-control-allow-origin'), null);

  const page = await open(`${allowed}/`);
  try {
    await until(page, () => window.example?.state === 'subscribed', 'the Centrifugo page to subscribe');
    const { user, channel } = await page.evaluate(() => window.example);
    assert.equal(channel, `user:${user}`);
    assert.equal(await page.locator('#channel').innerText(), channel);

    // The page fetched both tokens from Tollgate's origin, and the browser let it read them.
    for (const path of ['/api/v1/centrifugo/connection-token', '/api/v1/centrifugo/subscription-token']) {
      const seen = page.responses.find((r) => r.url === tollgate.base + path && r.method === 'POST');
      assert.ok(seen, `the page called POST ${path}`);
      assert.equal(seen.status, 200, path);
      assert.equal(seen.headers['access-control-allow-origin'], allowed, path);
    }
    assert.equal(page.socketErrors.length, 0, `WebSocket errors: ${page.socketErrors}`);

    // The backend publishes with the server API, as seed 000's events come: once through
    // the legacy `POST /api` form from here, once from the page's button, which makes
    // server.mjs call `POST /api/publish` with the project's server API key.
    const data = { event: 'invoice.updated', invoice: 'INV-0042', status: 'paid' };
    const answer = await serverApi({ id: 1, method: 'publish', params: { channel, data } });
    assert.equal(answer.error, undefined, JSON.stringify(answer));
    await until(page, (n) => window.example.publications.length >= n, 'the server API publication', 1);
    const publishAnswered = page.waitForEvent('requestfinished', (req) => req.url() === `${allowed}/publish`);
    await page.click('#publish');
    await within(publishAnswered, "the backend's answer to POST /publish", PAGE_MS);
    await until(page, (n) => window.example.publications.length >= n, "the backend's publication", 2);
    const got = await page.evaluate(() => window.example.publications);
    assert.deepEqual(got, [data, { event: 'notification.created', text: 'hello #1 from the backend' }]);
    assert.deepEqual(await page.locator('#publications li').allInnerTexts(), got.map((d) => JSON.stringify(d)));
    assert.deepEqual(await page.evaluate(() => window.example.errors), []);
    // The backend handed the page a SAT, never the project's credentials.
    const bodies = await Promise.all(page.bodies);
    assert.equal(bodies.length, 2, 'the page saw the sign-in and publish answers');
    for (const secret of [project.api_token, serverKey.key]) assert.ok(!bodies.some((b) => b.includes(secret)), 'a secret reached the page');
    if (SHOTS) await page.screenshot({ path: join(SHOTS, 'browser-example.png'), fullPage: true });
  } finally {
    await page.context().close();
  }
});

test('SignalWire Chat page on another origin: a message from another member arrives', TIMEOUT, async () => {
  const alice = await open(`${allowed}/chat.html?member=alice`);
  const bob = await open(`${allowed}/chat.html?member=bob`);
  try {
    await until(alice, () => window.example?.state === 'subscribed', "alice's chat page to subscribe");
    await until(bob, () => window.example?.state === 'subscribed', "bob's chat page to subscribe");
    const gateway = await alice.locator('#gateway').innerText();
    assert.equal(gateway, tollgate.ws, "the token's ch header names Tollgate's gateway");

    await bob.fill('#text', 'hello from bob');
    await bob.press('#text', 'Enter');
    await until(alice, () => window.example.messages.some((m) => m.member === 'bob'), "bob's message on alice's page");
    await alice.fill('#text', 'hi bob');
    await alice.press('#text', 'Enter');
    await until(bob, () => window.example.messages.some((m) => m.member === 'alice'), "alice's message on bob's page");
    await until(alice, (n) => window.example.messages.length >= n, "alice's own message echoed", 2);

    assert.deepEqual(await alice.evaluate(() => window.example.messages), [
      { member: 'bob', content: 'hello from bob' },
      { member: 'alice', content: 'hi bob' },
    ]);
    assert.deepEqual(await alice.locator('#messages li').allInnerTexts(), ['bob: hello from bob', 'alice (you): hi bob']);
    for (const page of [alice, bob]) {
      assert.deepEqual(await page.evaluate(() => window.example.errors), []);
      assert.equal(page.socketErrors.length, 0, `WebSocket errors: ${page.socketErrors}`);
    }
    if (SHOTS) await alice.screenshot({ path: join(SHOTS, 'browser-example-chat.png'), fullPage: true });
  } finally {
    await Promise.all([alice.context().close(), bob.context().close()]);
  }
});

test('the same pages from an origin that is not allowed are refused, and the page says so', TIMEOUT, async () => {
  // Centrifugo page: the backend (same origin) signs in fine, but the browser blocks the
  // cross-origin token request: Tollgate answers the preflight without CORS headers.
  const page = await open(`${refused}/`);
  try {
    await until(page, () => window.example?.state === 'failed', 'the Centrifugo page to fail');
    const [error] = await page.evaluate(() => window.example.errors);
    assert.match(error, /^\/api\/v1\/centrifugo\/subscription-token: Failed to fetch/);
    assert.equal(page.responses.some((r) => r.url.startsWith(tollgate.base) && r.method === 'POST'), false,
      'the browser never sent the POST');
    // A WebSocket from this page is refused during the handshake: the page only sees it
    // close (1006) without opening; the browser saw Tollgate's 403.
    const close = await within(page.evaluate((url) => new Promise((resolve) => {
      const ws = new WebSocket(url);
      let opened = false;
      ws.onopen = () => { opened = true; };
      ws.onclose = (e) => resolve({ opened, code: e.code });
    }), `${tollgate.ws}/connection/websocket`), 'the refused WebSocket to close', PAGE_MS);
    assert.deepEqual(close, { opened: false, code: 1006 });
    assert.match(page.socketErrors.join('\n'), /403/);
  } finally {
    await page.context().close();
  }

  // Chat page: its token comes from its own backend, but Tollgate refuses its WebSocket.
  const chat = await open(`${refused}/chat.html?member=mallory`);
  try {
    await until(chat, () => window.example?.state === 'failed', 'the chat page to fail');
    assert.match(chat.socketErrors.join('\n'), /403/);
    assert.match((await chat.evaluate(() => window.example.errors))[0], /gateway\.allowed_origins/);
  } finally {
    await chat.context().close();
  }

  // And Tollgate's log names the origin and the setting to change, for both refusals.
  const lines = tollgate.logs().split('\n').filter((l) => l.includes(`"${refused}"`) && l.includes('gateway.allowed_origins'));
  assert.ok(lines.some((l) => /CORS/.test(l)), `a log line for the CORS refusal, in:\n${tollgate.logs()}`);
  assert.ok(lines.some((l) => /WebSocket/.test(l)), `a log line for the WebSocket refusal, in:\n${tollgate.logs()}`);
});
