// gRPC through a longhaul grpc listener, two scenarios at once:
//
//   unary   HEALTH_RPS calls a second of grpc.health.v1.Health/Check over
//           one connection per VU; longhaul balances each call on its own.
//           Every call must succeed, rollouts included: a leaving backend
//           gets no new calls and its connection a GOAWAY.
//   streams STREAM_VUS long-lived Health/Watch streams, one per VU. When
//           longhaul drains the backend under a stream it ends it with
//           UNAVAILABLE, paced over the drain window; the VU counts that
//           as a drain end, not an error, and opens a new stream (which
//           goes to a ready backend). Any other end fails the run.
//
//   k6 run -e GRPC_ADDR=longhaul.shop:8080 benchmarks/k6/grpc.js
//
// The backends must register the standard health service (grpc-go's
// google.golang.org/grpc/health; k6 encodes the calls with
// proto/health.proto). Options (environment, -e NAME=VALUE): GRPC_ADDR,
// GRPC_TLS (1: TLS instead of plaintext h2c), HEALTH_SERVICE (the service
// name asked about; "" is the server as a whole), HEALTH_RPS (500),
// UNARY_VUS (20), STREAM_VUS (100), DURATION (5m).
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { envInt, envStr } from './lib.js';

const addr = envStr('GRPC_ADDR', '127.0.0.1:8080');
const plaintext = envStr('GRPC_TLS', '0') !== '1';
const service = envStr('HEALTH_SERVICE', '');
const duration = envStr('DURATION', '5m');

// Streams ended with UNAVAILABLE by a drain: expected during a rollout.
const drainEnds = new Counter('grpc_stream_drain_ends');
// Streams ended any other way (another status, or the server finishing).
const abnormalEnds = new Counter('grpc_stream_abnormal_ends');
// Watch updates received.
const updates = new Counter('grpc_stream_updates');

// Encoding needs the .proto: load it once, in the init context.
const client = new grpc.Client();
client.load(['proto'], 'health.proto');

export const options = {
  scenarios: {
    unary: {
      executor: 'constant-arrival-rate',
      exec: 'unary',
      rate: envInt('HEALTH_RPS', 500),
      timeUnit: '1s',
      duration: duration,
      preAllocatedVUs: envInt('UNARY_VUS', 20),
    },
    streams: {
      executor: 'constant-vus',
      exec: 'streams',
      vus: envInt('STREAM_VUS', 100),
      duration: duration,
      gracefulStop: '10s',
    },
  },
  thresholds: {
    'checks{scenario:unary}': ['rate==1'],
    grpc_req_duration: ['p(99)<500'],
    grpc_stream_abnormal_ends: ['count==0'],
  },
};

// connectOnce connects this VU's client on its first iteration; later
// iterations reuse the connection, as a real client would.
function connectOnce() {
  if (__ITER === 0) {
    client.connect(addr, { plaintext: plaintext, timeout: '5s' });
  }
}

export function unary() {
  connectOnce();
  const res = client.invoke('grpc.health.v1.Health/Check', { service: service });
  check(res, {
    'status OK': (r) => r && r.status === grpc.StatusOK,
    SERVING: (r) => r && r.message && r.message.status === 'SERVING',
  });
}

export function streams() {
  connectOnce();
  const stream = new grpc.Stream(client, 'grpc.health.v1.Health/Watch');
  stream.on('data', () => {
    updates.add(1);
  });
  stream.on('error', (e) => {
    if (e && e.code === grpc.StatusUnavailable) {
      drainEnds.add(1);
    } else {
      abnormalEnds.add(1, { code: String(e && e.code) });
    }
  });
  stream.on('end', () => {
    // Watch never finishes by itself: an end without an error is the
    // server (or k6 at the end of the run) closing it.
  });
  // Watch is server streaming: one request, then the client half-closes
  // and the server keeps sending until the stream is ended.
  stream.write({ service: service });
  stream.end();
}
