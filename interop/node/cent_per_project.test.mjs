// Per-project server API keys from Node: cent.js (npm), the community Node client of the
// Centrifugo server API, publishes with one project's own key (`tollgate server-key create
// --project ID --json`); a centrifuge-js subscriber of that project receives it, and a
// subscriber of another project on the same channel name receives nothing (projects are
// isolated: the same name in two projects is two channels). No deployment-wide
// centrifugo.api_key is configured: every call is authorized by a project's own key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { require, startTollgate, post, basic, next, collect, within } from './support.mjs';

const { CentClient } = require('cent.js');
const { Centrifuge } = require('centrifuge');
const WebSocket = require('ws');

const TIMEOUT = { timeout: 30_000 };
// How long a publication that should not arrive is given to arrive anyway.
const SILENCE_MS = 1_000;
let server;

before(async () => {
  server = await startTollgate();
}, TIMEOUT);

after(async () => {
  if (server) assert.equal(await server.stop(), 0, 'tollgate exits cleanly on SIGTERM');
}, { timeout: 70_000 });

function project(name) {
  const p = server.cli('project', 'create', '--name', name);
  const key = server.cli('server-key', 'create', '--project', p.project_id, '--name', `${name}-backend`);
  assert.deepEqual(Object.keys(key).sort(), ['id', 'key']);
  return { ...p, key, cent: new CentClient({ url: `${server.base}/api`, apiKey: key.key }) };
}

/** A centrifuge-js client of `p` (a PubSub token) subscribed to `channel`. */
async function subscriber(p, member, channel) {
  const r = await post(server.base, '/api/pubsub/tokens', { ttl: 5, member_id: member, channels: { [channel]: { read: true } } }, basic(p));
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const client = new Centrifuge(`${server.ws}/connection/websocket`, { websocket: WebSocket, token: r.body.token });
  const sub = client.newSubscription(channel);
  const ready = within(new Promise((resolve, reject) => {
    sub.once('subscribed', resolve);
    sub.once('error', (ctx) => reject(new Error(`${member}: ${JSON.stringify(ctx.error)}`)));
  }), `${member} to be subscribed to ${channel}`);
  sub.subscribe(); client.connect();
  try {
    await ready;
  } catch (e) {
    client.disconnect();
    throw e;
  }
  return { client, sub };
}

test("a project's key publishes to its own subscribers and not to another project's", TIMEOUT, async () => {
  const p1 = project('js-p1');
  const p2 = project('js-p2');
  const s1 = await subscriber(p1, 'p1-member', 'news');
  let s2;
  try {
    s2 = await subscriber(p2, 'p2-member', 'news');
    const atP1 = next(s1.sub, 'publication', undefined, "P1's publication at P1's subscriber");
    const atP2 = collect(s2.sub, 'publication', SILENCE_MS);
    await within(p1.cent.publish({ channel: 'news', data: { for: 'p1' } }), "cent.js publish with P1's key");
    assert.deepEqual((await atP1).data, { for: 'p1' });
    assert.deepEqual((await atP2).map((ctx) => ctx.data), [], "P1's publish reached P2's subscriber of 'news'");

    // And the other way round.
    const backAtP2 = next(s2.sub, 'publication', undefined, "P2's publication at P2's subscriber");
    const backAtP1 = collect(s1.sub, 'publication', SILENCE_MS);
    await within(p2.cent.publish({ channel: 'news', data: { for: 'p2' } }), "cent.js publish with P2's key");
    assert.deepEqual((await backAtP2).data, { for: 'p2' });
    assert.deepEqual((await backAtP1).map((ctx) => ctx.data), [], "P2's publish reached P1's subscriber of 'news'");

    // Each key sees its own project's channel and only its own subscriber in it.
    const channels = await within(p1.cent.getChannels(), "cent.js channels with P1's key");
    assert.deepEqual(Object.keys(channels.channels ?? {}), ['news']);
    assert.equal(channels.channels.news.num_clients, 1);
  } finally {
    s1.client.disconnect();
    s2?.client.disconnect();
  }
});

test('a wrong key is refused', TIMEOUT, async () => {
  const p = project('js-wrong');
  const wrong = new CentClient({ url: `${server.base}/api`, apiKey: `${p.key.key}x` });
  await assert.rejects(within(wrong.publish({ channel: 'news', data: {} }), 'cent.js publish with a wrong key'));
  const raw = await post(server.base, '/api/publish', { channel: 'news', data: {} }, { 'X-API-Key': `${p.key.key}x` });
  assert.equal(raw.status, 401);
  await within(p.cent.publish({ channel: 'news', data: {} }), 'cent.js publish with the right key');
});
