// Package rollout holds load tests of longhaul's promise that a rolling
// update of the backends costs clients nothing. It has no non-test code.
//
// TestRollingReplacement runs one longhaul (tcp, http and grpc listeners on
// watched endpoints files) in front of three local "pods", each serving raw
// TCP echo, HTTP/1.1 plus WebSocket echo and gRPC (the health service), and
// replaces every pod in turn as a Deployment does (a new pod of the new
// revision joins and is ready; an old one turns terminating, is drained and
// removed) while gRPC unary calls, long-lived gRPC server streams, a
// thousand WebSocket clients carrying sequence numbers, HTTP/1.1 keep-alive
// requests and TCP echo sessions run at once. It asserts zero failed
// requests, no WebSocket or TCP message lost or duplicated, every session
// off a pod before its deadline and none on it when it is removed, no new
// connection to a pod after longhaul saw it terminating, at most 1.05
// WebSocket moves per client (each session moves once, onto a pod of the
// new revision), and, with endpoints files, no more of a pod's gRPC streams
// ended within 100 ms than its drain's pacing allows. It logs a summary
// line of these figures. TestRollingReplacementKubernetes is the same
// rollout through EndpointSlices in a real API server, with a Pod object per
// pod labelled with its revision (pod-template-hash);
// TestRollingReplacementUnpaced starts every migration at once, for the
// contrast.
//
// Its size and revisions come from the environment:
// LONGHAUL_ROLLOUT_WEBSOCKETS and LONGHAUL_ROLLOUT_STREAMS set the number of
// WebSocket clients and gRPC streams (1000 and 16 by default, what CI runs;
// for example 2000 and 200), and LONGHAUL_ROLLOUT_REVISIONS=off leaves the
// revisions out of the endpoints files: sessions then also move from one
// old pod to another, and the moves-per-client assertion fails, which shows
// that it can.
//
// TestSIGTERMOneOfTwo runs two longhaul instances over the same pods, with
// clients that choose an instance whose /readyz answers 200 (as a Service
// would), stops one of them through its SIGTERM path and asserts that the
// clients move to the other with no failure.
//
// TestRollingReplicasLaggingBalancer rolls two longhaul replicas (default
// shutdown delay) behind an L4 balancer that plays the Service: clients dial
// only the balancer, which removes a replica from its list 2 s after the
// replica's SIGTERM, as a lagging endpoints update would. Under gRPC unary,
// gRPC stream and WebSocket load it asserts no failed connect or call, no
// WebSocket message lost or duplicated, every WebSocket moved on close 1012
// and reconnected, each stopping replica's gRPC streams ended UNAVAILABLE and
// spread over its drain window, and each replica's exit in time with no
// session left.
//
// TestScaleUpRebalances runs one longhaul with an http listener in front of
// three pods carrying 300 long-lived WebSocket sessions (sequence numbers,
// a loopback address per client), adds a fourth pod and counts the sessions
// per pod as the pods see them, for least-connections (rebalancing on by
// default) and for Maglev on client-ip with bounded loads and
// drain.rebalance.factor set, in parallel. It logs the spread (busiest over
// mean) at +10, +30 and +60 s, the sessions moved and how many of them to
// the new pod, and the reconnect peak; it asserts no failed reconnect, no
// message lost or duplicated, at most twice the budget's rate of reconnects
// in a second and no more moves than the budget, a spread of at most 1.1 by
// +60 s for least-connections and, for Maglev (where a client's key leads
// it back, so only sessions whose key now names another pod move), the
// busiest pod by +60 s at most at the larger of the target's load and the
// most keys one pod's slots hold, and no pod above its bounded-load cap.
// LONGHAUL_SCALEUP_FULL=1 runs it to +120 s.
package rollout
