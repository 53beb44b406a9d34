// Package accesslog writes a listener's access log: one structured line
// per HTTP request, gRPC call, WebSocket session and TCP session, on a zap
// logger named "access".
//
// Logging never holds traffic back. A request or session is sampled when
// it starts (Logger.Sample, a cheap random draw), before anything of its
// line is built; a line is then written only if the listener's rate cap
// (a token bucket of MaxPerSecond tokens a second, with a burst of as
// many) has a token left. Lines left out either way are counted in
// longhaul_access_log_dropped_total{listener, reason="sampled"|"rate"}.
//
// A nil *Logger is a disabled access log: every method is a nil check and
// returns, so the proxies keep one field and no branch of their own.
package accesslog
