// An independent WebSocket peer (the Node "ws" package) that checks an echo
// server reached through longhaul: text, binary, large, fragmented, ping/pong
// and the close handshake. Usage: node wspeer.cjs ws://host:port/path
// Exits 0 when every case passed; prints one line per case.
'use strict';
const WebSocket = require('ws');
const crypto = require('crypto');
const url = process.argv[2];
const timer = setTimeout(() => { console.log('FAIL timeout'); process.exit(1); }, 60000);

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 << 20 });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}
function next(ws) {
  return new Promise((resolve, reject) => {
    ws.once('message', (data, isBinary) => resolve({ data, isBinary }));
    ws.once('error', reject);
  });
}
function check(name, ok, detail) {
  console.log((ok ? 'ok   ' : 'FAIL ') + name + (detail ? ' ' + detail : ''));
  if (!ok) process.exitCode = 1;
}

(async () => {
  const ws = await open();
  ws.send('hello through longhaul');
  let m = await next(ws);
  check('text', !m.isBinary && m.data.toString() === 'hello through longhaul');

  const bin = crypto.randomBytes(65536);
  ws.send(bin);
  m = await next(ws);
  check('binary', m.isBinary && Buffer.compare(m.data, bin) === 0);

  const large = crypto.randomBytes(8 << 20);
  ws.send(large);
  m = await next(ws);
  check('large 8 MiB', m.isBinary && Buffer.compare(m.data, large) === 0, 'got ' + m.data.length);

  const parts = ['frag-one ', 'frag-two ', 'frag-three'];
  ws.send(parts[0], { fin: false, binary: false });
  ws.send(parts[1], { fin: false, binary: false });
  ws.send(parts[2], { fin: true, binary: false });
  m = await next(ws);
  check('fragmented', m.data.toString() === parts.join(''), JSON.stringify(m.data.toString()));

  const pong = new Promise((resolve) => ws.once('pong', (d) => resolve(d)));
  ws.ping('are-you-there');
  const pd = await pong;
  check('ping/pong', pd.toString() === 'are-you-there');

  const closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.close(4000, 'bye');
  const c = await closed;
  check('close handshake', c.code === 4000, 'code ' + c.code + ' reason ' + JSON.stringify(c.reason));
  clearTimeout(timer);
})().catch((e) => { console.log('FAIL ' + e); process.exit(1); });
