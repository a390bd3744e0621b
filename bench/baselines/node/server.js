// The baseline for BENCHMARKS.md: POST /api/v1/centrifugo/subscription-token written the
// way an app backend writes it in Node — node:http, jsonwebtoken, keys built once. It
// verifies the bearer user JWT (HS256, issuer and audience pinned), applies the same
// channel rules (user:{uuid} own user only; company:{uuid} members only, from memory),
// and signs an ES256 subscription token.
const http = require('node:http');
const crypto = require('node:crypto');
const jwt = require('jsonwebtoken');

const port = Number(process.argv[2] || 8092);
const userSecret = process.env.USER_JWT_SECRET;
const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const members = new Set((process.env.MEMBERS || '').split(',')); // "company:<id>/<user>"
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const send = (status, obj) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(obj));
    };
    let user;
    try {
      const auth = req.headers.authorization || '';
      const claims = jwt.verify(auth.replace(/^Bearer /, ''), userSecret, {
        algorithms: ['HS256'], issuer: 'bench-app', audience: 'tollgate',
      });
      user = claims.sub;
    } catch { return send(401, { error: 'Unauthorized' }); }
    let channel;
    try { ({ channel } = JSON.parse(body)); } catch { return send(400, { error: 'Bad Request' }); }
    const [ns, id] = String(channel).split(':');
    if (!UUID.test(id || '')) return send(422, { errors: [{ attribute: 'channel' }] });
    const ok = ns === 'user' ? id === user : ns === 'company' ? members.has(`company:${id}/${user}`) : false;
    if (!ok) return send(403, { error: 'Forbidden' });
    const now = Math.floor(Date.now() / 1000);
    const token = jwt.sign({ sub: user, channel, iat: now, exp: now + 3600, jti: crypto.randomUUID() },
      privateKey, { algorithm: 'ES256', issuer: 'tollgate', audience: 'project', keyid: 'k1' });
    send(200, { token });
  });
}).listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
