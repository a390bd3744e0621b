#!/usr/bin/env node
// The example's web server, on its own origin (http://localhost:8081), playing the part of
// "your app's backend": it serves the pages and holds the Tollgate credentials. The browser
// never sees them; it gets only short-lived tokens minted for the signed-in user.
//
//   POST /session          a subscriber access token (SAT) for a demo user, minted with the
//                          project's API token (POST /api/fabric/subscribers/tokens). The page
//                          then asks Tollgate itself, cross-origin, for its Centrifugo tokens.
//   POST /chat-token       a SignalWire Chat token for one member (POST /api/chat/tokens).
//   POST /publish          publishes to the user's channel with the Centrifugo server API
//                          (POST /api/publish with the project's server API key), as your
//                          backend would when something happens for that user.
//
// No dependencies beyond Node itself. Settings (environment):
//   PROJECT_ID, API_TOKEN  from `tollgate project create --json` (or the file project.json
//                          beside this script, which the README's command writes)
//   SERVER_KEY             from `tollgate server-key create --json` (or server-key.json)
//   TOLLGATE               Tollgate's base URL (default http://127.0.0.1:8080)
//   PORT, HOST             where this server listens (default 8081 on 127.0.0.1)
//   NODE_MODULES           where centrifuge and @signalwire/js are installed
//                          (default ./node_modules beside this script)
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, extname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function fromJsonFile(name, field) {
  const path = join(here, name);
  if (!existsSync(path)) return undefined;
  return JSON.parse(readFileSync(path, 'utf8'))[field];
}

const TOLLGATE = (process.env.TOLLGATE ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
const PROJECT_ID = process.env.PROJECT_ID ?? fromJsonFile('project.json', 'project_id');
const API_TOKEN = process.env.API_TOKEN ?? fromJsonFile('project.json', 'api_token');
const SERVER_KEY = process.env.SERVER_KEY ?? fromJsonFile('server-key.json', 'key');
const PORT = Number(process.env.PORT ?? 8081);
const HOST = process.env.HOST ?? '127.0.0.1';
const NODE_MODULES = process.env.NODE_MODULES ?? join(here, 'node_modules');

if (!PROJECT_ID || !API_TOKEN || !SERVER_KEY) {
  console.error('server.mjs: no credentials. Set PROJECT_ID, API_TOKEN and SERVER_KEY, or write\n'
    + '  project.json (tollgate project create --json) and server-key.json\n'
    + '  (tollgate server-key create --json) beside this script: see README.md.');
  process.exit(2);
}

const basic = 'Basic ' + Buffer.from(`${PROJECT_ID}:${API_TOKEN}`).toString('base64');

/** POSTs JSON to Tollgate; returns the parsed answer or throws with Tollgate's status. */
async function tollgate(path, body, headers) {
  const res = await fetch(TOLLGATE + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (!res.ok) throw Object.assign(new Error(`Tollgate ${path}: ${res.status} ${text}`), { status: res.status });
  return JSON.parse(text);
}

// The static files: the pages, and the two client libraries straight from node_modules
// (the ES module build of centrifuge, the browser bundle of @signalwire/js).
const files = {
  '/': join(here, 'public', 'index.html'),
  '/index.html': join(here, 'public', 'index.html'),
  '/app.js': join(here, 'public', 'app.js'),
  '/chat.html': join(here, 'public', 'chat.html'),
  '/chat.js': join(here, 'public', 'chat.js'),
  '/style.css': join(here, 'public', 'style.css'),
  '/vendor/centrifuge.mjs': join(NODE_MODULES, 'centrifuge', 'build', 'index.mjs'),
  '/vendor/signalwire.js': join(NODE_MODULES, '@signalwire', 'js', 'dist', 'index.umd.js'),
};
for (const path of [files['/vendor/centrifuge.mjs'], files['/vendor/signalwire.js']]) {
  if (!existsSync(path)) {
    console.error(`server.mjs: ${path} is missing: run \`npm ci --prefix examples/browser\` first (or set NODE_MODULES)`);
    process.exit(2);
  }
}
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css' };

async function readJson(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10_000) throw Object.assign(new Error('body too large'), { status: 413 });
  }
  return body ? JSON.parse(body) : {};
}

const memberName = (s) => (typeof s === 'string' && /^[A-Za-z0-9_.-]{1,40}$/.test(s) ? s : null);
const userId = (s) => (typeof s === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(s) ? s : null);

const routes = {
  // "Sign in": a real backend would check a password or a session cookie first. The user id
  // is the `reference` of the SAT, so the user may subscribe to `user:<id>` and to no other
  // user's channel (seed 000's `owner` rule).
  async 'POST /session'(req) {
    const asked = await readJson(req);
    const user = userId(asked.user) ?? randomUUID();
    const { token } = await tollgate('/api/fabric/subscribers/tokens', { reference: user }, { Authorization: basic });
    return { tollgate: TOLLGATE, user, channel: `user:${user}`, token };
  },
  // A Chat token for one member of the room "lobby": read and write, ten minutes.
  async 'POST /chat-token'(req) {
    const member = memberName((await readJson(req)).member);
    if (!member) return [422, { error: 'member: 1-40 characters of A-Z a-z 0-9 _ . -' }];
    const { token } = await tollgate('/api/chat/tokens', {
      ttl: 10, member_id: member, state: { display_name: member },
      channels: { lobby: { read: true, write: true } },
    }, { Authorization: basic });
    return { token, channel: 'lobby' };
  },
  // What your backend does when something happens for a user: publish with the server API.
  // (A demo button drives it here; a real backend publishes on its own events, and would
  // never publish to a channel a page names without checking who is asking.)
  async 'POST /publish'(req) {
    const { user, data } = await readJson(req);
    if (!userId(user)) return [422, { error: 'user: a UUID' }];
    const answer = await tollgate('/api/publish', { channel: `user:${user}`, data: data ?? { event: 'notification.created' } },
      { 'X-API-Key': SERVER_KEY });
    return answer.error ? [502, answer] : answer.result ?? {};
  },
};

const server = createServer(async (req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  try {
    const route = routes[`${req.method} ${path}`];
    if (route) {
      const out = await route(req);
      const [status, body] = Array.isArray(out) ? out : [200, out];
      res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      res.end(JSON.stringify(body));
      return;
    }
    if (path === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    const file = req.method === 'GET' ? files[path] : undefined;
    if (!file) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    const text = await readFile(file);
    res.writeHead(200, { 'Content-Type': types[extname(file)] ?? 'application/octet-stream', 'Cache-Control': 'no-cache' });
    res.end(text);
  } catch (e) {
    console.error(`${req.method} ${path}: ${e.message}`);
    if (!res.headersSent) res.writeHead(e.status === 413 ? 413 : 502, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: e.message }));
  }
});

server.listen(PORT, HOST, () => {
  const { port } = server.address();
  // One line the interop test waits for; people open the URL.
  console.log(`example app on http://localhost:${port}/ (Tollgate at ${TOLLGATE})`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)).closeAllConnections());
