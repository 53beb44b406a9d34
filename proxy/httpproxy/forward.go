package httpproxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
	"go.uber.org/zap"
)

// Forwarding one HTTP request, in the order it goes: ServeHTTP routes it
// (a WebSocket upgrade to websocket.go, every other request on here),
// leases an endpoint through Upstream.Try (the connection's pin first,
// with affinity), sends it (roundTrip), and copies the response back.

// roundTrip sends out to the endpoint at addr of b: over HTTP/2 through
// the relay's endpoint connections with UpstreamH2 or to an H2 backend,
// else over HTTP/1.1 keep-alive connections. done is called once the
// response is copied.
func (l *Listener) roundTrip(out *http.Request, b *Backend, addr string) (resp *http.Response, done func(), err error) {
	if l.cfg.UpstreamH2 || b.H2 {
		resp, err = l.relay.RoundTrip(out)
		return resp, func() {}, err
	}
	p := l.h1Pool(addr)
	p.begin()
	if resp, err = p.roundTrip(out); err != nil {
		p.end()
		return nil, nil, err
	}
	return resp, p.end, nil
}

// hopHeaders are removed when a request or response crosses the proxy
// (RFC 9110 section 7.6.1), with the names listed in Connection.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		delete(h, name)
	}
}

func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return r.ProtoMajor == 2 && strings.HasPrefix(ct, "application/grpc")
}

func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	client := clientAddr(r)
	grpc := isGRPC(r)
	var aw *accessWriter // nil unless the request is sampled into the access log
	body := &trackedBody{ReadCloser: r.Body}
	if l.access.Sample() {
		aw = l.beginAccess(w, r, start, grpc)
		w = aw
		defer l.endAccess(aw, body)
	}
	if r.ProtoMajor == 1 && requestHadBoth(r) {
		// Request smuggling, or a client one would take for it: refuse it
		// and close, so that nothing after it on the connection is read.
		w.Header().Set("Connection", "close")
		http.Error(w, "longhaul: both Content-Length and Transfer-Encoding", http.StatusBadRequest)
		return
	}
	rt, ok := l.route(w, r, grpc)
	if !ok {
		return // answered by the route (redirect, 404, 500)
	}
	aw.routed(rt)
	if isWebSocketUpgrade(r) {
		l.serveWebSocket(w, r, client, rt, aw)
		return
	}
	// The endpoint's response headers are awaited for at most
	// ResponseHeaderTimeout, retries included; a gRPC call to h2c
	// endpoints waits, there and for its request stream, as long as a
	// relayed stream may be idle (see Config.StreamIdleTimeout).
	headerWait, bodyWait := l.cfg.ResponseHeaderTimeout, l.cfg.RequestBodyTimeout
	if grpc && rt.b.H2 {
		headerWait, bodyWait = l.cfg.StreamIdleTimeout, l.cfg.StreamIdleTimeout
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	headerTimer := time.AfterFunc(headerWait, func() { cancel(errResponseHeaderTimeout) })
	out := l.outRequest(r, client).WithContext(ctx)
	key := rt.b.Key.Hash(r, client)
	var mc *mirrorCopy
	if len(rt.mirrors) > 0 && !grpc {
		mc = l.newMirrorCopy(out, r, rt.mirrors, client)
	}
	if r.Body != nil && r.Body != http.NoBody {
		if mc != nil {
			body.ReadCloser = mc.tee(r.Body)
			defer mc.finish()
		}
		body.bound(http.NewResponseController(w), bodyWait)
		defer body.finish()
		out.Body = body
	} else if mc != nil {
		mc.sendNow()
	}

	var resp *http.Response
	var done func()
	pin := pinOf(r) // nil without affinity
	prefer, leave := "", false
	if pin != nil {
		prefer = pin.addr()
	}
	lease, err := rt.b.Up.Try(upstream.Attempt{Key: key, Prefer: prefer, Max: l.cfg.MaxAttempts}, func(ls *upstream.Lease) (err error) {
		if pin != nil {
			// The pinned connection counts as load, and so does each
			// request in flight on it.
			leave = pin.follow(key, ls.Addr()) || leave
		}
		out.URL.Host = ls.Addr()
		resp, done, err = l.roundTrip(out, rt.b, ls.Addr())
		return err
	}, func(err error) bool { return retryable(err, body, r) && r.Context().Err() == nil })
	aw.leased(lease)
	if !headerTimer.Stop() {
		// Timed out, or the headers came as it fired: the request's context
		// is cancelled either way, so the body could not be relayed.
		if resp != nil {
			resp.Body.Close()
			done()
			lease.Release()
		}
		l.fail(w, r, grpc, http.StatusGatewayTimeout, "no response headers from the endpoint within "+headerWait.String())
		return
	}
	if berr := body.readErr(); berr != nil && resp == nil {
		// The client's body failed, not the endpoint: too slow (408) or
		// malformed, such as a bad chunk size (400). The connection
		// closes: the rest of the body cannot be framed.
		w.Header().Set("Connection", "close")
		if errors.Is(berr, os.ErrDeadlineExceeded) {
			l.fail(w, r, grpc, http.StatusRequestTimeout, "request body: no data within "+bodyWait.String())
		} else {
			l.fail(w, r, grpc, http.StatusBadRequest, "request body malformed")
		}
		return
	}
	if err != nil {
		if r.Context().Err() != nil {
			// The client went away (or half-closed): abort rather than
			// let the server send an empty 200 in our name.
			panic(http.ErrAbortHandler)
		}
		if errors.Is(err, upstream.ErrNoEndpoint) {
			l.fail(w, r, grpc, http.StatusServiceUnavailable, "no endpoint available")
			return
		}
		if ue := (*h2relay.UpstreamError)(nil); grpc && errors.As(err, &ue) && ue.Drained {
			// Ended by its endpoint's drain before the response began.
			w.Header().Set("Grpc-Retry-Pushback-Ms", strconv.FormatInt(ue.Pushback.Milliseconds(), 10))
			l.fail(w, r, grpc, http.StatusBadGateway, "endpoint drained")
			return
		}
		// What failed stays in the log: it names endpoints.
		l.log.Debug("request failed", zap.Error(err))
		l.fail(w, r, grpc, http.StatusBadGateway, "upstream request failed")
		return
	}
	defer lease.Release()
	defer done()
	if leave || pin != nil && pin.moving.Load() {
		// Moved, or asked to move: HTTP/1.1 closes after this response,
		// HTTP/2 sends GOAWAY and closes once its streams are done.
		w.Header()["Connection"] = []string{"close"}
	}
	rt.resp.Apply(resp.Header)
	var deadline time.Time
	if grpc {
		deadline = grpcDeadline(r.Header, start)
	}
	l.copyResponse(w, resp, grpc, deadline)
	l.observe(start, resp, grpc)
}

// observe records a proxied request's duration by its outcome class.
func (l *Listener) observe(start time.Time, resp *http.Response, grpc bool) {
	took := time.Since(start).Seconds()
	if grpc {
		st := resp.Trailer.Get("Grpc-Status")
		if st == "" {
			st = resp.Header.Get("Grpc-Status") // trailers-only
		}
		if st == "0" {
			l.grpcOK.Observe(took)
		} else {
			l.reqTime[0].Observe(took)
		}
		return
	}
	if c := resp.StatusCode / 100; c >= 1 && c <= 5 {
		l.reqTime[c].Observe(took)
	}
}

// retryable reports whether a failed attempt may go to another endpoint:
// the connection could not be made, or the request was refused before the
// endpoint processed it, and no byte of its body was consumed.
func retryable(err error, body *trackedBody, r *http.Request) bool {
	if body.read.Load() {
		return false
	}
	var de *upstream.DialError
	if errors.As(err, &de) {
		return true
	}
	if h2relay.IsRetryable(err) {
		return true // not processed: dialling failed, refused, or the endpoint is leaving
	}
	// An idempotent HTTP/1 request whose body was not sent.
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return r.ProtoMajor == 1
	}
	return false
}

var errResponseHeaderTimeout = errors.New("response header timeout")

// trackedBody is a request body on its way to an endpoint. It records
// whether any byte was read, which makes a retry unsafe, and the first read
// error. Once bound, each read waits at most timeout for data, through the
// server's read deadline on the connection (HTTP/1) or stream (HTTP/2).
//
// No deadline outlives the body: the end of the body clears it, for
// net/http then reads the connection in the background, and a deadline
// left there would cancel the request while the endpoint answers. A body
// that did not end keeps its last deadline, which bounds net/http's
// discarding of the rest and is replaced by the next request's. After
// finish (the handler returned) the deadline is no longer touched.
type trackedBody struct {
	io.ReadCloser
	read atomic.Bool
	n    atomic.Int64 // bytes read, for the access log

	rc      *http.ResponseController // nil: reads are not bounded
	timeout time.Duration
	mu      sync.Mutex
	done    bool
	err     error
}

// bound makes each read wait at most timeout, through rc.
func (b *trackedBody) bound(rc *http.ResponseController, timeout time.Duration) {
	b.rc, b.timeout = rc, timeout
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	b.setDeadline(time.Now().Add(b.timeout))
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err == io.EOF {
		b.setDeadline(time.Time{})
	} else if err != nil {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *trackedBody) setDeadline(t time.Time) {
	if b.rc == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.rc.SetReadDeadline(t)
	}
}

// finish gives the deadline back to the server: the handler returns.
func (b *trackedBody) finish() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
}

// readErr returns the first error reading the body gave, other than EOF.
func (b *trackedBody) readErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func clientAddr(r *http.Request) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	return ap
}

// outRequest turns the server's request into the upstream request, in
// place: the server hands the handler its own request, which nothing else
// reads after us.
func (l *Listener) outRequest(r *http.Request, client netip.AddrPort) *http.Request {
	out := r.WithContext(r.Context()) // shallow copy; headers shared
	out.RequestURI = ""
	out.Close = false
	u := *r.URL
	u.Scheme = "http"
	out.URL = &u
	h := r.Header
	te := h["Te"]
	removeHopHeaders(h)
	for _, v := range te {
		if strings.EqualFold(strings.TrimSpace(v), "trailers") {
			h["Te"] = []string{"trailers"} // gRPC needs it end to end
		}
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	ip := client.Addr().Unmap().String()
	if prior := h["X-Forwarded-For"]; len(prior) > 0 {
		h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
	} else {
		h["X-Forwarded-For"] = []string{ip}
	}
	h["X-Forwarded-Proto"] = []string{proto}
	fwd := "for=" + ip
	if client.Addr().Unmap().Is6() {
		fwd = `for="[` + ip + `]"`
	}
	fwd += ";proto=" + proto
	if r.Host != "" {
		fwd += `;host="` + r.Host + `"`
	}
	h["Forwarded"] = append(h["Forwarded"], fwd)
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // do not let the transport add Go's
	}
	return out
}

// copyBufPool holds relay buffers for response bodies.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyResponse copies resp to w. deadline is a gRPC call's, by its
// grpc-timeout (zero for none): a call whose endpoint stream breaks at or
// after it ends DEADLINE_EXCEEDED, as the client's own timer would, and
// not UNAVAILABLE, which invites a retry.
func (l *Listener) copyResponse(w http.ResponseWriter, resp *http.Response, grpc bool, deadline time.Time) {
	defer resp.Body.Close()
	removeHopHeaders(resp.Header)
	wh := w.Header()
	for k, v := range resp.Header {
		wh[k] = v
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		wh["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	if grpc && resp.Header.Get("Grpc-Status") != "" {
		// A trailers-only response (RFC: gRPC over HTTP/2): the status is in
		// the only HEADERS frame, which must carry END_STREAM. Writing the
		// header without a flush and returning sends exactly that.
		w.WriteHeader(resp.StatusCode)
		return
	}
	w.WriteHeader(resp.StatusCode)
	var copyErr error
	flusher, _ := w.(http.Flusher)
	if (resp.ContentLength < 0 || grpc) && flusher != nil {
		// A stream, or a body of unknown length: pass data on as it comes,
		// without a write per part when parts come together.
		rerr, werr := streamBody(w, flusher.Flush, resp.Body)
		copyErr = cmp.Or(rerr, werr)
	} else {
		bp := copyBufPool.Get().(*[]byte)
		_, copyErr = io.CopyBuffer(writerOnly{w}, resp.Body, *bp)
		copyBufPool.Put(bp)
	}
	if copyErr != nil {
		if grpc {
			// The endpoint went away mid-call (drained or failed): end the
			// call with UNAVAILABLE so that the client retries elsewhere,
			// after the pushback a drain's plan gave it, as the relay does.
			wh[http.TrailerPrefix+"Grpc-Status"] = []string{"14"}
			var ue *h2relay.UpstreamError
			if errors.As(copyErr, &ue) && ue.Drained {
				wh[http.TrailerPrefix+"Grpc-Message"] = []string{"endpoint drained"}
				wh[http.TrailerPrefix+"Grpc-Retry-Pushback-Ms"] = []string{strconv.FormatInt(ue.Pushback.Milliseconds(), 10)}
				return
			}
			// The endpoint's timer may fire a moment before the client's.
			if !deadline.IsZero() && !time.Now().Before(deadline.Add(-deadlineSlack)) {
				wh[http.TrailerPrefix+"Grpc-Status"] = []string{"4"}
				wh[http.TrailerPrefix+"Grpc-Message"] = []string{"deadline exceeded"}
				return
			}
			wh[http.TrailerPrefix+"Grpc-Message"] = []string{"upstream connection lost"}
			return
		}
		panic(http.ErrAbortHandler) // reset the stream (or close the HTTP/1 connection)
	}
	for k, v := range resp.Trailer {
		if announced > 0 {
			wh[k] = v
		} else {
			wh[http.TrailerPrefix+k] = v
		}
	}
}

// fail answers a request that could not be proxied. gRPC clients get a
// trailers-only UNAVAILABLE response, which they may retry.
func (l *Listener) fail(w http.ResponseWriter, r *http.Request, grpc bool, code int, msg string) {
	if grpc {
		h := w.Header()
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", "14")
		h.Set("Grpc-Message", msg)
		w.WriteHeader(http.StatusOK)
		return
	}
	http.Error(w, fmt.Sprintf("longhaul: %s", msg), code)
}

// writerOnly hides every method but Write, so that io.CopyBuffer uses the
// given buffer rather than a ReaderFrom of the ResponseWriter.
type writerOnly struct{ io.Writer }
