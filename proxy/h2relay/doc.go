// Package h2relay is a frame-level HTTP/2 reverse proxy core: it reads and
// writes HTTP/2 frames itself on both sides, the client connections it
// serves and pooled h2c (prior knowledge) connections to endpoints, and
// relays each request stream to an endpoint that a Router picks.
//
// # Structure
//
// Every connection, client or upstream, is a frameConn: one reader goroutine
// (ServeConn's caller for a client connection) that parses frames with an
// http2.Framer and dispatches them, and one writer goroutine that sends the
// connection's output buffer. Frames are appended to that buffer by whoever
// produces them (either side's reader goroutine, a dialing goroutine, a
// drain or shutdown) under the connection's lock; the writer swaps the
// buffer out and writes it in one system call, so frames of many streams
// produced while a write is under way leave together in the next one. A
// stream costs no goroutine, except while its endpoint connection is being
// dialled.
//
// # Locks
//
// A stream's mutex protects its state (both directions' buffers and
// windows, the upstream it is bound to). A frameConn's mutex protects that
// connection's output buffer, HPACK encoder, connection-level windows and
// stream table. The order is stream, then connection; no code holds two
// connections' locks at once, and none takes a stream's lock while holding a
// connection's. The pool's lock comes before an upstream connection's.
//
// # Round trips
//
// Server.RoundTrip sends requests that come from elsewhere (HTTP/1
// clients) over the same pooled endpoint connections, so that an endpoint
// has one HTTP/2 client and one pool, drained as one. A round trip is a
// stream whose downstream side is the caller instead of a client
// connection: a goroutine of the round trip reads the request body into
// the stream's request buffer (never more than StreamWindow ahead), and
// the response body's Read takes from its response buffer and credits the
// endpoint. Binding, flow control, resets, GOAWAY, drain and lost
// connections are the stream's code; the few places that reach the
// client side branch on stream.rt. Round trips are not routed, retried,
// swept or counted in Config.Budget: the caller picks, retries (see
// IsRetryable) and bounds them with the request's context. Shutdown waits
// for those in flight (within its context) before it closes the pool.
//
// # Dials and drains
//
// A dial runs on its own goroutine (the server's), shared by whoever
// waits for a connection to that endpoint. DrainEndpoint marks the
// endpoint for as long as it runs: it takes no new stream and starts no
// dial, and a dial already under way is doomed: its connection joins no
// pool, gets GOAWAY and closes, and its waiters get a retryable error
// (relayed streams go to another endpoint). The streams a drain finds open
// end at the pace of the caller's StreamPlan (the drain controller
// decides when; the drain's goroutine ends them, one per turn, with one
// timer of its own, see paced.go), those left at its context's end at
// once.
//
// # Per-connection handles
//
// Config.OnConn gives the consumer a Conn for each client connection, and
// may give the connection a Router of its own (to pin its streams). A
// Conn's GoAway is Shutdown's two-step GOAWAY on that one connection, with
// a deadline that the Conn's timer enforces by ending the streams left as
// an endpoint's drain deadline does.
//
// # Flow control
//
// The relay is a receiver on each side with its own windows: it advertises
// Config.StreamWindow per stream and Config.ConnWindow per connection to
// both clients and endpoints, keeps what arrives and cannot be forwarded yet
// in the stream (never more than the window it advertised), and credits the
// sender with WINDOW_UPDATE only once the bytes were appended to the other
// connection's output. The other connection's output takes DATA only while
// it holds less than a bound (outDataLimit), so a peer that does not read
// back-pressures the sender end to end.
package h2relay
