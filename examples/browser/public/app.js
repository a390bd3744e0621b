// The Centrifugo page: seed 000's snippet, run from a page on another origin than Tollgate.
//
// 1. The app's backend (server.mjs, same origin as this page) signs the user in and hands the
//    page a subscriber access token (SAT) for them; the page never sees a Tollgate secret.
// 2. With that SAT as Bearer, the page asks Tollgate (cross-origin: CORS, allowed by
//    `gateway.allowed_origins` in tollgate.toml) for a connection token and a subscription
//    token, and subscribes to the user's own channel `user:<id>` over Tollgate's WebSocket.
// 3. Whatever the backend publishes there with the server API shows up below.
import { Centrifuge } from 'centrifuge';

const $ = (id) => document.getElementById(id);
const shown = { state: 'starting', publications: [], errors: [] };
window.example = shown; // read by the interop test (interop/browser/)

function log(text, kind = 'info') {
  const li = document.createElement('li');
  li.className = kind;
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $('log').append(li);
  if (kind === 'error') shown.errors.push(text);
}
function setState(state) {
  shown.state = state;
  $('state').textContent = state;
  $('state').dataset.state = state;
}

$('origin').textContent = location.origin;

try {
  // Sign in with the app's backend (a real app: a login form or a session cookie).
  const session = await fetch('/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user: sessionStorage.getItem('user') }),
  }).then((r) => (r.ok ? r.json() : Promise.reject(new Error(`sign-in failed: ${r.status}`))));
  sessionStorage.setItem('user', session.user);
  const authToken = session.token;
  shown.user = session.user;
  shown.channel = session.channel;
  $('tollgate').textContent = session.tollgate;
  $('user').textContent = session.user;
  $('channel').textContent = session.channel;
  log(`signed in with the app's backend as ${session.user}`);

  // Calls a token endpoint of Tollgate, on its own origin; a refusal becomes an error
  // naming the status, a CORS refusal the browser's "Failed to fetch".
  const api = async (path, body) => {
    let res;
    try {
      res = await fetch(`${session.tollgate}${path}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${authToken}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
    } catch (e) {
      throw new Error(`${path}: ${e.message} (blocked by CORS? this origin must be in gateway.allowed_origins)`);
    }
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return res.json();
  };

  const wsUrl = session.tollgate.replace(/^http/, 'ws') + '/connection/websocket';
  const centrifuge = new Centrifuge(wsUrl, {
    getToken: async () => (await api('/api/v1/centrifugo/connection-token', {})).token,
  });
  centrifuge.on('connecting', (ctx) => { setState('connecting'); log(`connecting (${ctx.reason})`); });
  centrifuge.on('connected', (ctx) => log(`connected to ${wsUrl} as client ${ctx.client}`));
  centrifuge.on('disconnected', (ctx) => { setState('disconnected'); log(`disconnected: ${ctx.code} ${ctx.reason}`, 'error'); });
  centrifuge.on('error', (ctx) => log(`connection error: ${ctx.error.message}`, 'error'));

  // Seed 000's snippet, with fetch in place of Nuxt's $fetch.
  const { token } = await api('/api/v1/centrifugo/subscription-token', { channel: session.channel });
  log(`got a subscription token for ${session.channel} from ${session.tollgate} (cross-origin)`);

  const subscription = centrifuge.newSubscription(session.channel, {
    token: token,
    // Subscription tokens expire after an hour: the client asks for a fresh one itself.
    getToken: async () => (await api('/api/v1/centrifugo/subscription-token', { channel: session.channel })).token,
  });
  subscription.on('publication', (ctx) => {
    console.log('Received:', ctx.data);
    shown.publications.push(ctx.data);
    const li = document.createElement('li');
    li.textContent = JSON.stringify(ctx.data);
    $('publications').append(li);
    log(`publication on ${ctx.channel}`);
  });
  subscription.on('subscribed', () => {
    setState('subscribed');
    log(`subscribed to ${session.channel}`);
    $('publish').disabled = false;
  });
  subscription.on('error', (ctx) => log(`subscription error: ${ctx.error.message}`, 'error'));
  subscription.subscribe();
  centrifuge.connect();

  let n = 0;
  $('publish').addEventListener('click', async () => {
    const data = { event: 'notification.created', text: `hello #${++n} from the backend` };
    const res = await fetch('/publish', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: session.user, data }),
    });
    const answer = await res.text();
    if (!res.ok) log(`publish failed: ${res.status} ${answer}`, 'error');
  });
} catch (e) {
  setState('failed');
  log(e.message, 'error');
}
