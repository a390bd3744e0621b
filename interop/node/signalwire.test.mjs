// @signalwire/js v3 (npm), unchanged, against the real tollgate binary: PubSub.Client and
// Chat.Client connect with tokens Tollgate mints (no `host` option: the token's `ch` header
// names the gateway), subscribe, publish, see members, history and state; a read-only
// member is refused on publish; a message crosses between the SignalWire and Centrifugo
// protocols both ways.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { require, startTollgate, post as postTo, basic, next, within } from './support.mjs';

const WebSocket = require('ws');
globalThis.WebSocket = WebSocket; // the SDK reads it when a client is built
const { PubSub, Chat } = require('@signalwire/js');
const { Centrifuge } = require('centrifuge');

const API_KEY = 'signalwire-interop-api-key-0123456789abcdef';
const TIMEOUT = { timeout: 30_000 };
let server, base, project;

before(async () => {
  // The public address goes into every token's `ch` header, so it must be known up front.
  server = await startTollgate({ publicUrl: true, settings: { TOLLGATE_CENTRIFUGO__API_KEY: API_KEY } });
  base = server.base;
  project = server.cli('project', 'create', '--name', 'sw');
}, TIMEOUT);

after(async () => {
  if (server) assert.equal(await server.stop(), 0, 'tollgate exits cleanly on SIGTERM');
}, { timeout: 70_000 });

const post = (path, body, headers) => postTo(base, path, body, headers);
async function mint(kind, channels, member_id, state) {
  const r = await post(`/api/${kind}/tokens`, { ttl: 10, channels, member_id, state }, basic(project));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.token;
}

test('PubSub.Client: subscribe, publish, and a read-only member refused on publish', TIMEOUT, async () => {
  const writer = new PubSub.Client({ token: await mint('pubsub', { news: { read: true, write: true } }, 'writer'), logLevel: 'silent' });
  const reader = new PubSub.Client({ token: await mint('pubsub', { news: { read: true } }, 'reader'), logLevel: 'silent' });
  try {
    const got = next(reader, 'message', undefined, "the writer's message at the reader");
    await within(reader.subscribe(['news']), 'the reader to subscribe');
    await within(writer.subscribe(['news']), 'the writer to subscribe');
    assert.deepEqual(await within(reader.getAllowedChannels(), 'allowed channels'), { news: { read: true, write: false } });
    await within(writer.publish({ channel: 'news', content: { headline: 'hello' }, meta: { source: 'wire' } }), "the writer's publish");
    const message = await got;
    assert.equal(message.channel, 'news');
    assert.deepEqual(message.content, { headline: 'hello' });
    assert.deepEqual(message.meta, { source: 'wire' });
    await assert.rejects(within(reader.publish({ channel: 'news', content: 'nope' }), "the reader's refused publish"), (e) => e.code === -32003);
    await assert.rejects(within(reader.subscribe(['elsewhere']), "the reader's refused subscribe"), (e) => e.code === -32003);
  } finally {
    await within(Promise.all([writer.disconnect(), reader.disconnect()]), 'the clients to disconnect');
  }
});

test('PubSub.Client: a forged token is refused with an AuthError', TIMEOUT, async () => {
  const token = await mint('pubsub', { news: { read: true } }, 'mallory');
  const [h, p] = token.split('.');
  const forged = new PubSub.Client({ token: `${h}.${p}.AAAA`, host: server.ws, logLevel: 'silent' });
  await assert.rejects(within(forged.subscribe(['news']), 'the forged token to be refused'), (e) => e.code === -32002);
});

test('Chat.Client: members, state, history and member events', TIMEOUT, async () => {
  const room = { room: { read: true, write: true } };
  const alice = new Chat.Client({ token: await mint('chat', room, 'alice', { mood: 'calm' }), logLevel: 'silent' });
  const bob = new Chat.Client({ token: await mint('chat', room, 'bob', { mood: 'busy' }), logLevel: 'silent' });
  try {
    const joined = next(alice, 'member.joined', (m) => m.id === 'bob');
    const message = next(alice, 'message', (m) => m.member?.id === 'bob');
    // The SDK subscribes to the event kinds that have listeners when subscribe() is called.
    alice.on('member.updated', () => {}); alice.on('member.left', () => {});
    await within(alice.subscribe(['room']), 'alice to subscribe');
    bob.on('message', () => {});
    await within(bob.subscribe(['room']), 'bob to subscribe');
    assert.equal((await joined).state.mood, 'busy', 'the token state is the initial member state');

    await within(bob.publish({ channel: 'room', content: 'first' }), "bob's first publish");
    await within(bob.publish({ channel: 'room', content: 'second' }), "bob's second publish");
    const m = await message;
    assert.equal(m.content, 'first');
    assert.ok(m.publishedAt instanceof Date);

    const { members } = await within(alice.getMembers({ channel: 'room' }), 'the member list');
    assert.deepEqual(members.map((x) => x.id).sort(), ['alice', 'bob']);
    const { messages } = await within(alice.getMessages({ channel: 'room' }), 'the message history');
    assert.deepEqual(messages.map((x) => x.content), ['second', 'first'], 'newest first');

    const updated = next(alice, 'member.updated', (x) => x.id === 'bob');
    await within(bob.setMemberState({ channels: ['room'], state: { mood: 'typing' } }), "bob's state update");
    assert.equal((await updated).state.mood, 'typing');
    const state = await within(alice.getMemberState({ memberId: 'bob', channels: ['room'] }), "bob's member state");
    assert.deepEqual(state.channels.room.state, { mood: 'typing' });

    const left = next(alice, 'member.left', (x) => x.id === 'bob');
    await within(bob.unsubscribe(['room']), 'bob to unsubscribe');
    assert.equal((await left).id, 'bob');
  } finally {
    await within(Promise.all([alice.disconnect(), bob.disconnect()]), 'the clients to disconnect');
  }
});

test('one broker, two protocols: messages cross both ways', TIMEOUT, async () => {
  const grant = { lobby: { read: true, write: true } };
  const chat = new Chat.Client({ token: await mint('chat', grant, 'sw-member'), logLevel: 'silent' });
  const centrifuge = new Centrifuge(`${server.ws}/connection/websocket`, {
    websocket: WebSocket, token: await mint('pubsub', grant, 'cf-member'),
  });
  try {
    const fromCentrifugo = next(chat, 'message', (m) => m.content?.from === 'centrifugo');
    await within(chat.subscribe(['lobby']), 'the chat client to subscribe');

    const sub = centrifuge.newSubscription('lobby');
    const fromSignalWire = next(sub, 'publication', (ctx) => ctx.data === 'from signalwire');
    const ready = next(sub, 'subscribed', undefined, 'the centrifuge subscription');
    sub.subscribe(); centrifuge.connect();
    await ready;

    await within(chat.publish({ channel: 'lobby', content: 'from signalwire', meta: { lang: 'en' } }), "the chat client's publish");
    const ctx = await fromSignalWire;
    assert.equal(ctx.info.user, 'sw-member', 'the SignalWire member is the Centrifugo user');
    assert.deepEqual(ctx.tags, { lang: 'en' }, 'string-valued meta arrives as tags');

    await within(sub.publish({ from: 'centrifugo' }), "the centrifuge client's publish");
    const msg = await fromCentrifugo;
    assert.equal(msg.member.id, 'cf-member');

    // And from the Centrifugo server API.
    const viaApi = next(chat, 'message', (m) => m.content?.from === 'server');
    const published = await post('/api/publish', { channel: 'lobby', data: { from: 'server' }, tags: { k: 'v' } }, { 'X-API-Key': API_KEY });
    assert.equal(published.status, 200);
    assert.deepEqual((await viaApi).meta, { k: 'v' });
  } finally {
    centrifuge.disconnect();
    await within(chat.disconnect(), 'the chat client to disconnect');
  }
});
