package h2relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// Round trips: requests that do not come from an HTTP/2 client connection
// of the relay (an HTTP/1 client's, say) sent over the same pooled endpoint
// connections as the relayed streams, with the same flow control, GOAWAY,
// drain, health and write-timeout handling. A round trip is a stream with
// a roundTrip as its downstream side (see stream).

// errBodyClosed is what a response body read returns after Close.
var errBodyClosed = errors.New("h2relay: read on closed response body")

// bodyChunk is the most one read of a request body takes; bodyBufs keeps
// the buffers of finished round trips' body goroutines.
const bodyChunk = 32 << 10

var bodyBufs = sync.Pool{New: func() any { return new([bodyChunk]byte) }}

// maxBindRounds bounds the connections RoundTrip takes a slot on that
// then turn out to take no new stream (GOAWAY or idle close in between).
const maxBindRounds = 4

// roundTrip is the caller's side of a round trip's stream. req, body and
// the channels are set before the stream is published; the fields from
// readyClosed on are protected by the stream's mu.
type roundTrip struct {
	req *http.Request
	// body is req.Body, nil when there is none; the round trip closes it
	// (once, closeOnce) as a RoundTripper must.
	body      io.ReadCloser
	closeOnce sync.Once

	ready chan struct{} // closed once resp or err is set
	done  chan struct{} // closed when the stream finished
	data  chan struct{} // notified: response data, its end, or upGone
	room  chan struct{} // notified: the request buffer has room

	readyClosed bool
	resp        *http.Response
	err         error // why the stream failed; Body.Read returns it
	// noBody: a response to HEAD, or 204 or 304: DATA with payload is a
	// protocol error.
	noBody bool
	eof    bool // the response body reached its end and Read said so
	closed bool // the response body was closed
	// sending: the request body goroutine runs; it owns reads of body.
	sending bool
	stop    func() bool // undoes the context.AfterFunc of req's context
}

var _ http.RoundTripper = (*Server)(nil)

// notify wakes the one waiter of ch, if any, without blocking.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// RoundTrip implements http.RoundTripper over the relay's endpoint pool:
// it sends req to the endpoint req.URL.Host names, on a pooled h2c
// connection shared with the relayed HTTP/2 streams (dialling one within
// Config.ConnectTimeout if none has room), and returns the response once
// its header arrives. It does not consult the Router and does not retry:
// the caller picks endpoints, and asks IsRetryable whether a failed
// request may go to another one. A dial failure is a *DialError (and
// Observer.DialFailed is told); a failure at the endpoint an
// *UpstreamError; the cancellation of req's context its error.
//
// The request: :scheme http, :authority req.Host (or URL.Host), :path
// URL.RequestURI(); header field names lower-cased, connection-specific
// fields (and TE other than trailers, and Host) dropped, no forwarding
// field added. The body (ContentLength, or unknown when 0 or -1 with a
// body) is read by a goroutine of the round trip only once the request has
// a stream, never more than Config.StreamWindow ahead of what the
// endpoint's flow control let out; req.Trailer is sent after it. req.Body
// is closed once, when its reads are done or the round trip is over,
// which may be after RoundTrip returned; that Close may come while a Read
// is under way (to end it), and at most one Read may follow it. A caller
// whose body must not be read past some point (a handler returning) waits
// for that Close.
//
// The response: 1xx responses are skipped; Body streams the DATA, giving
// the endpoint window back as it is read; Trailer holds the trailers after
// Body returned io.EOF. Closing Body before its end resets the stream
// (CANCEL). The cancellation of req's context, at any stage, resets the
// stream and fails what waits (Body.Read included) with the context's
// error. A response header list over Config.MaxHeaderListSize is an error.
func (srv *Server) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := &roundTrip{req: req, ready: make(chan struct{}), done: make(chan struct{}),
		data: make(chan struct{}, 1), room: make(chan struct{}, 1)}
	if req.Body != nil && req.Body != http.NoBody {
		rt.body = req.Body
	}
	srv.roundTripStarted()
	fail := func(err error) (*http.Response, error) {
		srv.roundTripEnded()
		rt.closeBody()
		return nil, err
	}
	if req.URL == nil || req.URL.Host == "" {
		return fail(errors.New("h2relay: round trip without an endpoint address (URL.Host)"))
	}
	addr := req.URL.Host
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	cl := int64(0)
	if rt.body != nil {
		cl = req.ContentLength
		if cl == 0 {
			cl = -1 // a body of unknown length
		}
	}
	s := &stream{srv: srv, rt: rt, addr: addr, start: time.Now(), grpcStatus: -1, contentLength: cl}
	if err := roundTripHead(&s.head, req, cl); err != nil {
		return fail(err)
	}
	rt.noBody = s.head.Method == http.MethodHead
	s.req.end = rt.body == nil
	for round := 1; ; round++ {
		up, err := srv.pool.get(ctx, addr)
		if err != nil {
			var de *DialError
			if o := srv.cfg.Observer; o != nil && errors.As(err, &de) {
				o.DialFailed(addr, err)
			}
			return fail(err)
		}
		s.mu.Lock()
		bound := s.bind(up)
		s.mu.Unlock()
		if bound {
			break
		}
		if round == maxBindRounds {
			return fail(notProcessed(addr, "its connections take no new stream"))
		}
	}
	s.mu.Lock()
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.failRoundTrip(ctx.Err())
	})
	over := s.finished
	if over {
		stop()
	} else {
		rt.stop = stop
		if !s.req.end {
			rt.sending = true
			go s.sendBody()
		}
	}
	s.mu.Unlock()
	if over {
		rt.closeBody()
	}
	<-rt.ready
	s.mu.Lock()
	resp, err := rt.resp, rt.err
	s.mu.Unlock()
	if resp != nil {
		return resp, nil
	}
	return nil, err
}

// closeBody closes the request body, once.
func (rt *roundTrip) closeBody() {
	rt.closeOnce.Do(func() {
		if rt.body != nil {
			rt.body.Close()
		}
	})
}

// setReady lets RoundTrip return. Called with s.mu held.
func (rt *roundTrip) setReady() {
	if !rt.readyClosed {
		rt.readyClosed = true
		close(rt.ready)
	}
}

// failRoundTrip ends a round trip's stream with err (the first error
// stays), resetting its upstream stream if open. Called with s.mu held.
func (s *stream) failRoundTrip(err error) {
	if s.finished {
		return
	}
	if s.rt.err == nil {
		s.rt.err = err
	}
	s.finish()
}

// over runs when the round trip's stream finished (finish), with s.mu
// held: it wakes every waiter and lets go of req's context and body.
func (rt *roundTrip) over(srv *Server) {
	if rt.err == nil && rt.resp == nil {
		rt.err = errors.New("h2relay: stream ended without a response")
	}
	srv.roundTripEnded()
	close(rt.done)
	rt.setReady()
	if rt.stop != nil {
		rt.stop()
	}
	if rt.sending {
		// The body goroutine may wait in a Read that only Close ends.
		go rt.closeBody()
	}
}

// respond makes the response of the final header fields. Called with s.mu
// held, s.status set.
func (rt *roundTrip) respond(s *stream, fields []hpack.HeaderField, end bool) {
	h := make(http.Header, len(fields))
	resp := &http.Response{
		Status:     itoa(s.status) + " " + http.StatusText(s.status),
		StatusCode: s.status, Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: h, ContentLength: -1, Request: rt.req,
		Body: &roundTripBody{s: s},
	}
	for _, f := range fields {
		if strings.HasPrefix(f.Name, ":") {
			continue
		}
		k := http.CanonicalHeaderKey(f.Name)
		h[k] = append(h[k], f.Value)
		switch f.Name {
		case "content-length":
			if n, ok := parseUint(f.Value); ok {
				resp.ContentLength = n
			}
		case "trailer":
			for name := range strings.SplitSeq(f.Value, ",") {
				if name = strings.TrimSpace(name); name != "" {
					if resp.Trailer == nil {
						resp.Trailer = make(http.Header)
					}
					resp.Trailer[http.CanonicalHeaderKey(name)] = nil
				}
			}
		}
	}
	if s.status == http.StatusNoContent || s.status == http.StatusNotModified {
		rt.noBody = true
	}
	if end && resp.ContentLength < 0 && !(s.head.Method == http.MethodHead) {
		resp.ContentLength = 0
	}
	rt.resp = resp
	rt.setReady()
}

// deliver keeps response data for Body.Read (never more than the stream
// window the endpoint was given) and wakes it. A response that ended when
// the request had too frees its upstream stream now, however late the
// caller reads the rest. Called from forward, with s.mu held.
func (rt *roundTrip) deliver(s *stream, data []byte) {
	if len(data) > 0 {
		if rt.noBody {
			s.upstreamProtocolError("DATA in a response that has no body")
			return
		}
		s.resp.buf = append(s.resp.buf, data...)
		s.moved++
	}
	rt.ended(s)
	notify(rt.data)
	if s.upGone {
		notify(rt.room) // the body goroutine stops
	}
}

// ended runs when a direction of the round trip's stream reached its end
// (the request's left, the response's arrived or was read): the upstream
// stream is released once both ends passed it, the stream finishes once
// the caller read the response's end and the request is over. Called with
// s.mu held.
func (rt *roundTrip) ended(s *stream) {
	if s.finished {
		return
	}
	if s.req.endSent && s.resp.end && s.up != nil {
		s.upClosed = true
		s.detach()
	}
	if rt.eof && (s.req.endSent || s.upGone) {
		s.finish()
	}
}

// sendBody is the request body goroutine of a round trip: it reads the
// body while the stream buffers less than StreamWindow of it, and pumps
// what it read toward the endpoint. It ends at the body's end, or when the
// stream no longer takes request data; it closes the body then.
func (s *stream) sendBody() {
	rt := s.rt
	defer rt.closeBody()
	defer func() {
		s.mu.Lock()
		rt.sending = false
		s.mu.Unlock()
	}()
	defer guard.Recover("h2relay", func() {
		s.mu.Lock()
		s.failRoundTrip(errors.New("h2relay: panic while sending the request body (recovered)"))
		s.mu.Unlock()
	})
	window := int(s.srv.cfg.StreamWindow)
	bp := bodyBufs.Get().(*[bodyChunk]byte)
	defer bodyBufs.Put(bp)
	buf := bp[:min(window, bodyChunk)]
	var read int64
	for {
		room := s.bodyRoom(window)
		if room == 0 {
			return
		}
		n, err := rt.body.Read(buf[:min(len(buf), room)])
		if !s.bodyRead(buf[:n], err, &read) {
			return
		}
	}
}

// bodyRoom waits until the stream buffers less than window of the request
// body and returns how much more it takes; 0: the stream takes no more.
func (s *stream) bodyRoom(window int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.finished && !s.upGone && len(s.req.buf) >= window {
		s.mu.Unlock()
		select {
		case <-s.rt.room:
		case <-s.rt.done:
		}
		s.mu.Lock()
	}
	if s.finished || s.upGone {
		return 0
	}
	return window - len(s.req.buf)
}

// bodyRead pumps what a read of the request body returned toward the
// endpoint; *read counts the body's bytes. false: the body is over (its
// end sent, or the stream failed or takes no more).
func (s *stream) bodyRead(data []byte, err error, read *int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished || s.upGone {
		return false
	}
	*read += int64(len(data))
	cl := s.contentLength
	switch {
	case cl >= 0 && *read > cl:
		s.failRoundTrip(fmt.Errorf("h2relay: request body longer than its Content-Length %d", cl))
		return false
	case err == io.EOF && cl >= 0 && *read < cl:
		s.failRoundTrip(fmt.Errorf("h2relay: request body of %d bytes, shorter than its Content-Length %d", *read, cl))
		return false
	case err == io.EOF:
		s.req.end = true
		s.req.trailers = trailerFields(s.rt.req.Trailer)
	case err != nil:
		s.failRoundTrip(fmt.Errorf("h2relay: read request body: %w", err))
		return false
	}
	s.pump(&s.req, data)
	return !s.req.end
}

// roundTripBody is a round trip's response body.
type roundTripBody struct{ s *stream }

// Read returns response data as it arrives, credits the endpoint for what
// it returns, and fills Response.Trailer before it returns io.EOF.
func (b *roundTripBody) Read(p []byte) (int, error) {
	s := b.s
	rt := s.rt
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		switch {
		case rt.closed:
			return 0, errBodyClosed
		case len(s.resp.buf) > 0:
			n := copy(p, s.resp.buf)
			s.resp.buf = s.resp.buf[n:]
			if len(s.resp.buf) == 0 {
				s.resp.buf = nil
			}
			if s.up != nil && n > 0 {
				s.credit(&s.resp, &s.up.frameConn, s.upID, n)
			}
			return n, nil
		case rt.eof:
			return 0, io.EOF
		case rt.err != nil:
			return 0, rt.err
		case s.resp.end:
			rt.eof = true
			s.resp.endSent = true
			rt.fillTrailer(s.resp.trailers)
			rt.ended(s)
			return 0, io.EOF
		case len(p) == 0:
			return 0, nil
		}
		s.mu.Unlock()
		select {
		case <-rt.data:
		case <-rt.done:
		}
		s.mu.Lock()
	}
}

// Close ends the round trip: before the response's end, its stream is
// reset (CANCEL); after it, a request body still going is stopped.
func (b *roundTripBody) Close() error {
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rt.closed = true
	s.failRoundTrip(errBodyClosed)
	return nil
}

// fillTrailer puts the response trailers into Response.Trailer. Called
// with s.mu held, on the goroutine reading the body.
func (rt *roundTrip) fillTrailer(fields []hpack.HeaderField) {
	if len(fields) == 0 {
		return
	}
	t := rt.resp.Trailer
	if t == nil {
		t = make(http.Header, len(fields))
		rt.resp.Trailer = t
	}
	for _, f := range fields {
		k := http.CanonicalHeaderKey(f.Name)
		t[k] = append(t[k], f.Value)
	}
}
