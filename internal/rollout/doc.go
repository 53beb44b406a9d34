// Package rollout holds load tests of longhaul's promise that a rolling
// update of the backends costs clients nothing. It has no non-test code.
//
// TestRollingReplacement runs one longhaul (tcp, http and grpc listeners on
// watched endpoints files) in front of three local "pods", each serving raw
// TCP echo, HTTP/1.1 plus WebSocket echo and gRPC (the health service), and
// replaces every pod in turn (terminating, drained, removed, a new one added)
// while gRPC unary calls, long-lived gRPC server streams, a thousand
// WebSocket clients carrying sequence numbers, HTTP/1.1 keep-alive requests
// and TCP echo sessions run at once. It asserts zero failed requests, no
// WebSocket or TCP message lost or duplicated, every session off a pod before
// its deadline and no new connection to a pod after longhaul saw it
// terminating.
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
package rollout
