// WebSocket sessions through a longhaul http listener, held open while the
// backends (or longhaul itself) roll: each VU keeps one WebSocket to an echo
// endpoint, sends a numbered message every WS_INTERVAL_MS and checks that
// each comes back. When longhaul drains the backend under a session it
// closes the socket with 1012 (service restart) or 1001 (going away) at a
// frame boundary; the VU counts that as a drain close, not an error, and
// its next iteration reconnects (to another backend). Any other close
// before the hold time is up is abnormal and fails the run.
//
//   k6 run -e WS_URL=ws://longhaul.shop:8080/ws benchmarks/k6/websocket.js
//
// Options (environment, -e NAME=VALUE): WS_URL, VUS (200), DURATION (5m),
// WS_HOLD_S (how long a VU holds a socket before closing it itself, 600),
// WS_INTERVAL_MS (1000).
import ws from 'k6/ws';
import { check, fail } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { envInt, envStr } from './lib.js';

const url = envStr('WS_URL', 'ws://127.0.0.1:8080/ws');
const holdMs = envInt('WS_HOLD_S', 600) * 1000;
const intervalMs = envInt('WS_INTERVAL_MS', 1000);

// Closes by longhaul's drain (1012, 1001): expected during a rollout.
const drainCloses = new Counter('ws_drain_closes');
// Closes with any other code before the hold time: lost sessions.
const abnormalCloses = new Counter('ws_abnormal_closes');
// Messages whose echo had not come back when the socket closed.
const unanswered = new Counter('ws_unanswered_messages');
// Echoes that came back with a sequence number not sent, or out of order.
const misordered = new Counter('ws_misordered_echoes');
// Round trip of a message and its echo.
const echoRTT = new Trend('ws_echo_rtt', true);

// Close codes of longhaul's drain (http.webSocket.closeCode).
const DRAIN_CODES = [1012, 1001];

export const options = {
  scenarios: {
    sessions: {
      executor: 'constant-vus',
      vus: envInt('VUS', 200),
      duration: envStr('DURATION', '5m'),
      // A VU's socket still open at the end is closed by k6, not by
      // longhaul: give it a moment.
      gracefulStop: '10s',
    },
  },
  thresholds: {
    ws_abnormal_closes: ['count==0'],
    ws_misordered_echoes: ['count==0'],
    checks: ['rate==1'],
  },
};

export default function () {
  let seq = 0; // last sent
  let acked = 0; // last echoed
  const sentAt = new Map();
  let closedByUs = false;

  const res = ws.connect(url, {}, (socket) => {
    socket.on('open', () => {
      socket.setInterval(() => {
        seq++;
        sentAt.set(seq, Date.now());
        socket.send(JSON.stringify({ seq: seq }));
      }, intervalMs);
      socket.setTimeout(() => {
        closedByUs = true;
        socket.close(1000);
      }, holdMs);
    });

    socket.on('message', (data) => {
      let m;
      try {
        m = JSON.parse(data);
      } catch (e) {
        misordered.add(1);
        return;
      }
      if (m.seq !== acked + 1 || !sentAt.has(m.seq)) {
        misordered.add(1);
      } else {
        echoRTT.add(Date.now() - sentAt.get(m.seq));
      }
      sentAt.delete(m.seq);
      acked = m.seq;
    });

    socket.on('close', (code) => {
      unanswered.add(sentAt.size);
      if (closedByUs) {
        return;
      }
      if (DRAIN_CODES.includes(code)) {
        drainCloses.add(1);
      } else {
        abnormalCloses.add(1, { code: String(code) });
      }
    });

    // k6 also reports a close with a code other than 1000 or 1001 as an
    // error event; the close handler above classifies every close, so
    // errors are not counted twice.
  });

  if (!check(res, { 'upgraded (101)': (r) => r && r.status === 101 })) {
    fail(`WebSocket upgrade to ${url} failed: status ${res && res.status}`);
  }
}
