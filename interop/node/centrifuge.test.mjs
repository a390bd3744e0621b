// centrifuge-js (npm `centrifuge`), unchanged, against the real tollgate binary: the client
// code of seed 000 — fetch a token, newSubscription, on('publication') — end to end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(join(process.env.TOLLGATE_NODE_MODULES, 'noop.js'));
const { Centrifuge } = require('centrifuge');
const WebSocket = require('ws');

const BIN = process.env.TOLLGATE_BIN;
const API_KEY = 'interop-server-api-key';
const USER = '123e4567-e89b-12d3-a456-426614174000';
let dir, server, base, project;

function env(extra = {}) {
  const e = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOLLGATE_')));
  return { ...e, TOLLGATE_DATABASE_URL: `sqlite://${dir}/tollgate.db`, TOLLGATE_LOG: 'info', ...extra };
}

// A namespace with presence, join/leave, history and recovery (Centrifugo's option names).
const CONFIG = `
[gateway.namespaces.chat]
presence = true
join_leave = true
history_size = 20
history_ttl = "5m"
allow_recovery = true
`;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-js-'));
  writeFileSync(join(dir, 'tollgate.toml'), CONFIG);
  project = JSON.parse(execFileSync(BIN, ['project', 'create', '--name', 'js', '--json'], { env: env() }));
  server = spawn(BIN, ['serve'], {
    env: env({ TOLLGATE_LISTEN: '127.0.0.1:0', TOLLGATE_CENTRIFUGO__API_KEY: API_KEY, TOLLGATE_CONFIG: join(dir, 'tollgate.toml') }),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const addr = await new Promise((resolve, reject) => {
    let log = '';
    server.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.match(/addr=(\S+)/);
      if (m) resolve(m[1]);
    });
    server.on('exit', () => reject(new Error(`tollgate exited: ${log}`)));
  });
  base = `http://${addr}`;
});

after(() => {
  server?.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

async function post(path, body, headers) {
  const res = await fetch(base + path, {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

const basic = () => ({ Authorization: 'Basic ' + Buffer.from(`${project.project_id}:${project.api_token}`).toString('base64') });

test('seed 000: a subscription token opens the user channel and publications arrive', async () => {
  const login = await post('/api/fabric/subscribers/tokens', { reference: USER }, basic());
  const authToken = login.body.token;
  const bearer = { Authorization: `Bearer ${authToken}` };
  const channel = `user:${USER}`;

  const centrifuge = new Centrifuge(`${base.replace('http', 'ws')}/connection/websocket`, {
    websocket: WebSocket,
    getToken: async () => (await post('/api/v1/centrifugo/connection-token', {}, bearer)).body.token,
  });
  const sub = centrifuge.newSubscription(channel, {
    getToken: async () => (await post('/api/v1/centrifugo/subscription-token', { channel }, bearer)).body.token,
  });
  const received = new Promise((resolve) => sub.on('publication', (ctx) => resolve(ctx.data)));
  const subscribed = new Promise((resolve, reject) => {
    sub.on('subscribed', resolve);
    sub.on('error', (ctx) => reject(new Error(JSON.stringify(ctx.error))));
  });
  sub.subscribe();
  centrifuge.connect();
  await subscribed;

  const published = await post('/api/publish', { channel, data: { event: 'invoice.updated' } }, { 'X-API-Key': API_KEY });
  assert.deepEqual(published, { status: 200, body: { result: {} } });
  assert.deepEqual(await received, { event: 'invoice.updated' });

  // Someone else's channel is refused with 103 and the client reports it.
  const other = centrifuge.newSubscription('user:00000000-0000-4000-8000-000000000000');
  const refused = await new Promise((resolve) => {
    other.on('unsubscribed', (ctx) => resolve(ctx.code));
    other.on('error', (ctx) => resolve(ctx.error.code));
    other.subscribe();
  });
  assert.equal(refused, 103);
  centrifuge.disconnect();
});

test('a PubSub token connects with per-channel capabilities', async () => {
  const mint = async (channels, member) =>
    (await post('/api/pubsub/tokens', { ttl: 5, channels, member_id: member }, basic())).body.token;
  const writer = new Centrifuge(`${base.replace('http', 'ws')}/connection/websocket`, {
    websocket: WebSocket, token: await mint({ room: { read: true, write: true } }, 'alice'),
  });
  const reader = new Centrifuge(`${base.replace('http', 'ws')}/connection/websocket`, {
    websocket: WebSocket, token: await mint({ room: { read: true } }, 'bob'),
  });
  const wsub = writer.newSubscription('room');
  const rsub = reader.newSubscription('room');
  const got = new Promise((resolve) => rsub.on('publication', (ctx) => resolve(ctx)));
  const ready = Promise.all([
    new Promise((r) => wsub.on('subscribed', r)),
    new Promise((r) => rsub.on('subscribed', r)),
  ]);
  wsub.subscribe(); rsub.subscribe(); writer.connect(); reader.connect();
  await ready;
  await assert.rejects(rsub.publish({ text: 'read-only' }), (e) => e.code === 103);
  await wsub.publish({ text: 'hi' });
  const ctx = await got;
  assert.deepEqual(ctx.data, { text: 'hi' });
  assert.equal(ctx.info.user, 'alice');
  writer.disconnect(); reader.disconnect();
});

test('presence, join/leave, history and recovery through the js client', async () => {
  const mint = async (member) =>
    (await post('/api/pubsub/tokens', { ttl: 5, channels: { 'chat:js': { read: true, write: true } }, member_id: member }, basic())).body.token;
  const url = `${base.replace('http', 'ws')}/connection/websocket`;
  const a = new Centrifuge(url, { websocket: WebSocket, token: await mint('ann') });
  const b = new Centrifuge(url, { websocket: WebSocket, token: await mint('ben') });
  const asub = a.newSubscription('chat:js', { joinLeave: true, recoverable: true, positioned: true });
  const joined = new Promise((resolve) => asub.on('join', (ctx) => { if (ctx.info.user === 'ben') resolve(ctx.info); }));
  const left = new Promise((resolve) => asub.on('leave', (ctx) => { if (ctx.info.user === 'ben') resolve(ctx.info); }));
  const aReady = new Promise((r) => asub.on('subscribed', r));
  asub.subscribe(); a.connect();
  const subscribed = await aReady;
  assert.equal(subscribed.recoverable, true);
  assert.equal(typeof subscribed.streamPosition.epoch, 'string');

  const bsub = b.newSubscription('chat:js');
  const bReady = new Promise((r) => bsub.on('subscribed', r));
  bsub.subscribe(); b.connect();
  await bReady;
  assert.equal((await joined).user, 'ben');

  const got = new Promise((resolve) => asub.on('publication', resolve));
  await bsub.publish({ text: 'one' });
  const pub = await got;
  assert.equal(pub.offset, 1);
  assert.equal(pub.info.user, 'ben');

  const presence = await asub.presence();
  assert.deepEqual(Object.values(presence.clients).map((c) => c.user).sort(), ['ann', 'ben']);
  assert.deepEqual(await asub.presenceStats(), { numClients: 2, numUsers: 2 });
  const history = await asub.history({ limit: 10 });
  assert.deepEqual(history.publications.map((p) => p.data), [{ text: 'one' }]);
  assert.equal(history.offset, 1);

  bsub.unsubscribe();
  assert.equal((await left).user, 'ben');

  // Publications missed while away are recovered on resubscribe.
  asub.unsubscribe();
  await post('/api/publish', { channel: 'chat:js', data: { text: 'missed' } }, { 'X-API-Key': API_KEY });
  const recovered = new Promise((resolve) => asub.on('publication', (ctx) => { if (ctx.data.text === 'missed') resolve(ctx); }));
  const again = new Promise((r) => asub.once('subscribed', r));
  asub.subscribe();
  const ctx = await again;
  assert.equal(ctx.wasRecovering, true);
  assert.equal(ctx.recovered, true);
  assert.equal((await recovered).offset, 2);
  a.disconnect(); b.disconnect();
});
