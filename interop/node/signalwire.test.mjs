// @signalwire/js v3 (npm), unchanged, against the real tollgate binary: PubSub.Client and
// Chat.Client connect with tokens Tollgate mints (no `host` option: the token's `ch` header
// names the gateway), subscribe, publish, see members, history and state; a read-only
// member is refused on publish; a message crosses between the SignalWire and Centrifugo
// protocols both ways.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(join(process.env.TOLLGATE_NODE_MODULES, 'noop.js'));
const WebSocket = require('ws');
globalThis.WebSocket = WebSocket; // the SDK reads it when a client is built
const { PubSub, Chat } = require('@signalwire/js');
const { Centrifuge } = require('centrifuge');

const BIN = process.env.TOLLGATE_BIN;
const API_KEY = 'signalwire-interop-api-key';
let dir, server, base, project;

function env(extra = {}) {
  const e = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOLLGATE_')));
  return { ...e, TOLLGATE_DATABASE_URL: `sqlite://${dir}/tollgate.db`, TOLLGATE_LOG: 'info', ...extra };
}

const freePort = () => new Promise((resolve) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-sw-'));
  project = JSON.parse(execFileSync(BIN, ['project', 'create', '--name', 'sw', '--json'], { env: env() }));
  // The public address goes into every token's `ch` header, so it must be known up front.
  const port = await freePort();
  server = spawn(BIN, ['serve'], {
    env: env({
      TOLLGATE_LISTEN: `127.0.0.1:${port}`,
      TOLLGATE_GATEWAY__PUBLIC_URL: `ws://127.0.0.1:${port}`,
      TOLLGATE_CENTRIFUGO__API_KEY: API_KEY,
    }),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await new Promise((resolve, reject) => {
    let log = '';
    server.stderr.on('data', (chunk) => { log += chunk; if (/addr=/.test(log)) resolve(); });
    server.on('exit', () => reject(new Error(`tollgate exited: ${log}`)));
  });
  base = `http://127.0.0.1:${port}`;
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
const mint = async (kind, channels, member_id, state) =>
  (await post(`/api/${kind}/tokens`, { ttl: 10, channels, member_id, state }, basic())).body.token;
const next = (emitter, event, pred = () => true) =>
  new Promise((resolve) => emitter.on(event, (x) => { if (pred(x)) resolve(x); }));

test('PubSub.Client: subscribe, publish, and a read-only member refused on publish', async () => {
  const writer = new PubSub.Client({ token: await mint('pubsub', { news: { read: true, write: true } }, 'writer'), logLevel: 'silent' });
  const reader = new PubSub.Client({ token: await mint('pubsub', { news: { read: true } }, 'reader'), logLevel: 'silent' });
  const got = next(reader, 'message');
  await reader.subscribe(['news']);
  await writer.subscribe(['news']);
  assert.deepEqual(await reader.getAllowedChannels(), { news: { read: true, write: false } });
  await writer.publish({ channel: 'news', content: { headline: 'hello' }, meta: { source: 'wire' } });
  const message = await got;
  assert.equal(message.channel, 'news');
  assert.deepEqual(message.content, { headline: 'hello' });
  assert.deepEqual(message.meta, { source: 'wire' });
  await assert.rejects(reader.publish({ channel: 'news', content: 'nope' }), (e) => e.code === -32003);
  await assert.rejects(reader.subscribe(['elsewhere']), (e) => e.code === -32003);
  await writer.disconnect(); await reader.disconnect();
});

test('PubSub.Client: a forged token is refused with an AuthError', async () => {
  const token = await mint('pubsub', { news: { read: true } }, 'mallory');
  const [h, p] = token.split('.');
  const forged = new PubSub.Client({ token: `${h}.${p}.AAAA`, host: base.replace('http', 'ws'), logLevel: 'silent' });
  await assert.rejects(forged.subscribe(['news']), (e) => e.code === -32002);
});

test('Chat.Client: members, state, history and member events', async () => {
  const room = { room: { read: true, write: true } };
  const alice = new Chat.Client({ token: await mint('chat', room, 'alice', { mood: 'calm' }), logLevel: 'silent' });
  const bob = new Chat.Client({ token: await mint('chat', room, 'bob', { mood: 'busy' }), logLevel: 'silent' });
  const joined = next(alice, 'member.joined', (m) => m.id === 'bob');
  const message = next(alice, 'message', (m) => m.member?.id === 'bob');
  alice.on('member.updated', () => {}); alice.on('member.left', () => {});
  await alice.subscribe(['room']);
  bob.on('message', () => {});
  await bob.subscribe(['room']);
  assert.equal((await joined).state.mood, 'busy', 'the token state is the initial member state');

  await bob.publish({ channel: 'room', content: 'first' });
  await bob.publish({ channel: 'room', content: 'second' });
  const m = await message;
  assert.equal(m.content, 'first');
  assert.ok(m.publishedAt instanceof Date);

  const { members } = await alice.getMembers({ channel: 'room' });
  assert.deepEqual(members.map((x) => x.id).sort(), ['alice', 'bob']);
  const { messages } = await alice.getMessages({ channel: 'room' });
  assert.deepEqual(messages.map((x) => x.content), ['second', 'first'], 'newest first');

  const updated = next(alice, 'member.updated', (x) => x.id === 'bob');
  await bob.setMemberState({ channels: ['room'], state: { mood: 'typing' } });
  assert.equal((await updated).state.mood, 'typing');
  const state = await alice.getMemberState({ memberId: 'bob', channels: ['room'] });
  assert.deepEqual(state.channels.room.state, { mood: 'typing' });

  const left = next(alice, 'member.left', (x) => x.id === 'bob');
  await bob.unsubscribe(['room']);
  assert.equal((await left).id, 'bob');
  await alice.disconnect(); await bob.disconnect();
});

test('one broker, two protocols: messages cross both ways', async () => {
  const grant = { lobby: { read: true, write: true } };
  const chat = new Chat.Client({ token: await mint('chat', grant, 'sw-member'), logLevel: 'silent' });
  const fromCentrifugo = next(chat, 'message', (m) => m.content?.from === 'centrifugo');
  await chat.subscribe(['lobby']);

  const centrifuge = new Centrifuge(`${base.replace('http', 'ws')}/connection/websocket`, {
    websocket: WebSocket, token: await mint('pubsub', grant, 'cf-member'),
  });
  const sub = centrifuge.newSubscription('lobby');
  const fromSignalWire = next(sub, 'publication', (ctx) => ctx.data === 'from signalwire');
  const ready = next(sub, 'subscribed');
  sub.subscribe(); centrifuge.connect();
  await ready;

  await chat.publish({ channel: 'lobby', content: 'from signalwire', meta: { lang: 'en' } });
  const ctx = await fromSignalWire;
  assert.equal(ctx.info.user, 'sw-member', 'the SignalWire member is the Centrifugo user');
  assert.deepEqual(ctx.tags, { lang: 'en' }, 'string-valued meta arrives as tags');

  await sub.publish({ from: 'centrifugo' });
  const msg = await fromCentrifugo;
  assert.equal(msg.member.id, 'cf-member');

  // And from the Centrifugo server API.
  const viaApi = next(chat, 'message', (m) => m.content?.from === 'server');
  await post('/api/publish', { channel: 'lobby', data: { from: 'server' }, tags: { k: 'v' } }, { 'X-API-Key': API_KEY });
  assert.deepEqual((await viaApi).meta, { k: 'v' });
  centrifuge.disconnect(); await chat.disconnect();
});
