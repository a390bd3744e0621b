// The SignalWire Chat page: the app's backend (server.mjs) mints a Chat token for the member
// with POST /api/chat/tokens; the page connects with @signalwire/js's Chat.Client to
// Tollgate's gateway on another origin. The token's `ch` header names the gateway
// (`gateway.public_url` in tollgate.toml), so the client needs no `host` option; Tollgate
// accepts the WebSocket because this page's origin is in `gateway.allowed_origins`.
const { Chat } = window.SignalWire;

const $ = (id) => document.getElementById(id);
const shown = { state: 'not joined', messages: [], errors: [] };
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
// A promise that gives up after `ms`: the SDK keeps retrying a refused WebSocket quietly.
const within = (promise, ms, what) => Promise.race([
  promise,
  new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms)),
]);

$('origin').textContent = location.origin;
const params = new URLSearchParams(location.search);
$('member').value = params.get('member') ?? `guest-${Math.random().toString(36).slice(2, 6)}`;

async function join(member) {
  $('join').hidden = true;
  $('me').textContent = member;
  shown.member = member;
  setState('joining');
  try {
    const res = await fetch('/chat-token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ member }),
    });
    if (!res.ok) throw new Error(`chat token: ${res.status} ${await res.text()}`);
    const { token, channel } = await res.json();
    const ch = JSON.parse(atob(token.split('.')[0].replace(/-/g, '+').replace(/_/g, '/'))).ch;
    $('gateway').textContent = ch ?? '(no gateway.public_url)';
    log(`got a Chat token for ${member} from the app's backend`);

    const chat = new Chat.Client({ token, logLevel: 'warn' });
    chat.on('message', (m) => {
      shown.messages.push({ member: m.member.id, content: m.content });
      const li = document.createElement('li');
      const who = document.createElement('strong');
      who.textContent = m.member.id === member ? `${m.member.id} (you)` : m.member.id;
      li.append(who, `: ${typeof m.content === 'string' ? m.content : JSON.stringify(m.content)}`);
      $('messages').append(li);
    });
    chat.on('member.joined', (m) => log(`${m.id} joined`));
    chat.on('member.left', (m) => log(`${m.id} left`));
    await within(chat.subscribe([channel]), 10_000, `connecting to ${ch}`);
    setState('subscribed');
    log(`subscribed to #${channel} on ${ch}`);

    $('text').disabled = $('send-button').disabled = false;
    $('send').addEventListener('submit', async (e) => {
      e.preventDefault();
      const content = $('text').value.trim();
      if (!content) return;
      $('text').value = '';
      try {
        await chat.publish({ channel, content });
      } catch (err) {
        log(`publish refused: ${err.message ?? JSON.stringify(err)}`, 'error');
      }
    });
  } catch (e) {
    setState('failed');
    log(`${e.message ?? JSON.stringify(e)} (a refused WebSocket: is ${location.origin} in gateway.allowed_origins?)`, 'error');
  }
}

$('join').addEventListener('submit', (e) => { e.preventDefault(); join($('member').value); });
if (params.has('member')) join(params.get('member'));
