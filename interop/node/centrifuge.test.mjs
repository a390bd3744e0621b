// centrifuge-js (npm `centrifuge`), unchanged, against the real tollgate binary: the client
// code of seed 000 — fetch a token, newSubscription, on('publication') — end to end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { require, startTollgate, post as postTo, basic as basicOf, next, within } from './support.mjs';

const { Centrifuge } = require('centrifuge');
const WebSocket = require('ws');

const API_KEY = 'interop-server-api-key-0123456789abcdef';
const USER = '123e4567-e89b-12d3-a456-426614174000';
const TIMEOUT = { timeout: 30_000 };
let server, base, project;

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
  server = await startTollgate({ config: CONFIG, settings: { TOLLGATE_CENTRIFUGO__API_KEY: API_KEY } });
  base = server.base;
  project = server.cli('project', 'create', '--name', 'js');
}, TIMEOUT);

after(async () => {
  if (server) assert.equal(await server.stop(), 0, 'tollgate exits cleanly on SIGTERM');
}, { timeout: 70_000 });

const post = (path, body, headers) => postTo(base, path, body, headers);
const basic = () => basicOf(project);

const WS_URL = () => `${server.ws}/connection/websocket`;

/** Resolves on the subscription's 'subscribed' event; rejects on its 'error' event. */
function subscribed(sub, what) {
  return within(new Promise((resolve, reject) => {
    sub.once('subscribed', resolve);
    sub.once('error', (ctx) => reject(new Error(`${what}: ${JSON.stringify(ctx.error)}`)));
  }), `${what} to be subscribed`);
}

test('seed 000: a subscription token opens the user channel and publications arrive', TIMEOUT, async () => {
  const login = await post('/api/fabric/subscribers/tokens', { reference: USER }, basic());
  assert.equal(login.status, 200, JSON.stringify(login.body));
  const bearer = { Authorization: `Bearer ${login.body.token}` };
  const channel = `user:${USER}`;

  const centrifuge = new Centrifuge(WS_URL(), {
    websocket: WebSocket,
    getToken: async () => (await post('/api/v1/centrifugo/connection-token', {}, bearer)).body.token,
  });
  try {
    const sub = centrifuge.newSubscription(channel, {
      getToken: async () => (await post('/api/v1/centrifugo/subscription-token', { channel }, bearer)).body.token,
    });
    const received = next(sub, 'publication', undefined, 'the publication on the user channel');
    const ready = subscribed(sub, channel);
    sub.subscribe();
    centrifuge.connect();
    await ready;

    const published = await post('/api/publish', { channel, data: { event: 'invoice.updated' } }, { 'X-API-Key': API_KEY });
    assert.deepEqual(published, { status: 200, body: { result: {} } });
    assert.deepEqual((await received).data, { event: 'invoice.updated' });

    // Someone else's channel is refused with 103 and the client reports it.
    const other = centrifuge.newSubscription('user:00000000-0000-4000-8000-000000000000');
    const refused = within(new Promise((resolve) => {
      other.on('unsubscribed', (ctx) => resolve(ctx.code));
      other.on('error', (ctx) => resolve(ctx.error.code));
    }), "the refusal of someone else's user channel");
    other.subscribe();
    assert.equal(await refused, 103);
  } finally {
    centrifuge.disconnect();
  }
});

test('a PubSub token connects with per-channel capabilities', TIMEOUT, async () => {
  const mint = async (channels, member) =>
    (await post('/api/pubsub/tokens', { ttl: 5, channels, member_id: member }, basic())).body.token;
  const writer = new Centrifuge(WS_URL(), { websocket: WebSocket, token: await mint({ room: { read: true, write: true } }, 'alice') });
  const reader = new Centrifuge(WS_URL(), { websocket: WebSocket, token: await mint({ room: { read: true } }, 'bob') });
  try {
    const wsub = writer.newSubscription('room');
    const rsub = reader.newSubscription('room');
    const got = next(rsub, 'publication', undefined, "the writer's publication at the reader");
    const ready = Promise.all([subscribed(wsub, 'the writer'), subscribed(rsub, 'the reader')]);
    wsub.subscribe(); rsub.subscribe(); writer.connect(); reader.connect();
    await ready;
    await assert.rejects(within(rsub.publish({ text: 'read-only' }), "the read-only member's publish"), (e) => e.code === 103);
    await within(wsub.publish({ text: 'hi' }), "the writer's publish");
    const ctx = await got;
    assert.deepEqual(ctx.data, { text: 'hi' });
    assert.equal(ctx.info.user, 'alice');
  } finally {
    writer.disconnect(); reader.disconnect();
  }
});

test('presence, join/leave, history and recovery through the js client', TIMEOUT, async () => {
  const mint = async (member) =>
    (await post('/api/pubsub/tokens', { ttl: 5, channels: { 'chat:js': { read: true, write: true } }, member_id: member }, basic())).body.token;
  const a = new Centrifuge(WS_URL(), { websocket: WebSocket, token: await mint('ann') });
  const b = new Centrifuge(WS_URL(), { websocket: WebSocket, token: await mint('ben') });
  try {
    const asub = a.newSubscription('chat:js', { joinLeave: true, recoverable: true, positioned: true });
    const joined = next(asub, 'join', (ctx) => ctx.info.user === 'ben');
    const aReady = subscribed(asub, 'ann');
    asub.subscribe(); a.connect();
    const first = await aReady;
    assert.equal(first.recoverable, true);
    assert.equal(typeof first.streamPosition.epoch, 'string');

    const bsub = b.newSubscription('chat:js');
    const bReady = subscribed(bsub, 'ben');
    bsub.subscribe(); b.connect();
    await bReady;
    assert.equal((await joined).info.user, 'ben');

    const got = next(asub, 'publication', undefined, "ben's publication at ann");
    await within(bsub.publish({ text: 'one' }), "ben's publish");
    const pub = await got;
    assert.equal(pub.offset, 1);
    assert.equal(pub.info.user, 'ben');

    const presence = await within(asub.presence(), 'presence');
    assert.deepEqual(Object.values(presence.clients).map((c) => c.user).sort(), ['ann', 'ben']);
    assert.deepEqual(await within(asub.presenceStats(), 'presence stats'), { numClients: 2, numUsers: 2 });
    const history = await within(asub.history({ limit: 10 }), 'history');
    assert.deepEqual(history.publications.map((p) => p.data), [{ text: 'one' }]);
    assert.equal(history.offset, 1);

    const left = next(asub, 'leave', (ctx) => ctx.info.user === 'ben');
    bsub.unsubscribe();
    assert.equal((await left).info.user, 'ben');

    // Publications missed while away are recovered on resubscribe.
    asub.unsubscribe();
    const missed = await post('/api/publish', { channel: 'chat:js', data: { text: 'missed' } }, { 'X-API-Key': API_KEY });
    assert.equal(missed.status, 200);
    const recovered = next(asub, 'publication', (ctx) => ctx.data.text === 'missed');
    const again = subscribed(asub, 'ann again');
    asub.subscribe();
    const ctx = await again;
    assert.equal(ctx.wasRecovering, true);
    assert.equal(ctx.recovered, true);
    assert.equal((await recovered).offset, 2);
  } finally {
    a.disconnect(); b.disconnect();
  }
});
