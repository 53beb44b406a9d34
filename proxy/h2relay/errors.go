package h2relay

import (
	"errors"
	"time"

	"golang.org/x/net/http2"
)

// DialError is a failure to open a connection to an endpoint: the dial
// itself, the HTTP/2 handshake (the endpoint's first SETTINGS within
// Config.ConnectTimeout), or an endpoint that accepts no stream. Nothing of
// the request was sent, so it may go to another endpoint.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// UpstreamError is a round trip that failed on its endpoint's side: its
// stream was reset (by the endpoint, or by the relay for a GOAWAY that
// excluded it), its connection was lost or drained, the endpoint sent a
// malformed response, or the endpoint takes no new stream (draining).
type UpstreamError struct {
	Addr string
	// Reset: the stream ended with RST_STREAM Code (REFUSED_STREAM also
	// for a stream a GOAWAY excluded).
	Reset bool
	Code  http2.ErrCode
	// NotProcessed: the endpoint did not process the request (RFC 9113
	// section 8.7), so sending it to another endpoint is safe, if its body
	// can be sent again.
	NotProcessed bool
	// Drained: a drain of the endpoint ended the round trip at its turn
	// (see Server.DrainEndpoint); for a gRPC call, Pushback is the retry
	// pushback (grpc-retry-pushback-ms) the drain's plan gives its client.
	Drained  bool
	Pushback time.Duration
	Reason   string
}

func (e *UpstreamError) Error() string {
	msg := "h2relay: " + e.Addr + ": " + e.Reason
	if e.Reset {
		msg += " (" + e.Code.String() + ")"
	}
	return msg
}

// Unwrap gives an http2.StreamError for a reset, so that callers that look
// for one (REFUSED_STREAM) find it.
func (e *UpstreamError) Unwrap() error {
	if e.Reset {
		return http2.StreamError{Code: e.Code}
	}
	return nil
}

// IsRetryable reports whether err, from RoundTrip, means the endpoint did
// not process the request: a DialError, or an UpstreamError with
// NotProcessed (REFUSED_STREAM, a stream a GOAWAY excluded, an endpoint
// being drained). The request may then go to another endpoint, provided
// its body was not consumed (the caller knows).
func IsRetryable(err error) bool {
	var de *DialError
	if errors.As(err, &de) {
		return true
	}
	var ue *UpstreamError
	return errors.As(err, &ue) && ue.NotProcessed
}

// notProcessed returns an UpstreamError for a request that no endpoint
// stream took.
func notProcessed(addr, reason string) *UpstreamError {
	return &UpstreamError{Addr: addr, NotProcessed: true, Reason: reason}
}
