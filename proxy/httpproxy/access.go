package httpproxy

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/longhaul-proxy/longhaul/proxy/accesslog"
	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// The access log on the net/http path: a request sampled in (see
// accesslog.Logger.Sample) has its ResponseWriter wrapped by an
// accessWriter, which records the status and the body bytes written, and
// its line is written as ServeHTTP returns, whatever answered it (the
// endpoint, a route, a failure). An upgraded WebSocket's line is its
// session's instead, written when the session ends (websocket.go); HTTP/2
// streams of the relay get theirs from relayObserver.

// accessWriter is the ResponseWriter of a request sampled into the access
// log. Unwrap gives http.ResponseController the server's writer, so
// deadlines and Hijack work through it.
type accessWriter struct {
	http.ResponseWriter
	status  int
	written int64
	e       accesslog.Entry
	// handed: a WebSocket session took the entry over; ServeHTTP writes
	// no line.
	handed bool
}

func (w *accessWriter) WriteHeader(code int) {
	if w.status == 0 || w.status < 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *accessWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	return n, err
}

func (w *accessWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *accessWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// beginAccess starts the access log entry of r, sampled in.
func (l *Listener) beginAccess(w http.ResponseWriter, r *http.Request, start time.Time, grpc bool) *accessWriter {
	aw := &accessWriter{ResponseWriter: w}
	aw.e = accesslog.Entry{Kind: accesslog.KindHTTP, Start: start, Client: clientAddr(r),
		Method: r.Method, Host: r.Host, Path: r.URL.Path, Proto: r.Proto, Rule: -1, GRPCStatus: -1}
	if grpc {
		aw.e.Kind = accesslog.KindGRPC
	}
	return aw
}

// routedAccess records where r was routed.
func (aw *accessWriter) routed(rt routed) {
	if aw == nil {
		return
	}
	if rt.b != nil && rt.b.Up != nil {
		aw.e.Backend = rt.b.Up.Name()
	}
	if rt.meta != nil {
		aw.e.RouteNamespace, aw.e.RouteName = rt.meta.Namespace, rt.meta.Name
		aw.e.Rule, aw.e.RuleName = rt.rule, rt.ruleName
	}
}

// leased records the endpoint of the request's lease.
func (aw *accessWriter) leased(ls *upstream.Lease) {
	if aw != nil && ls != nil {
		aw.e.Endpoint = ls.Addr()
	}
}

// endAccess writes the line of a request that ServeHTTP is done with.
func (l *Listener) endAccess(aw *accessWriter, body *trackedBody) {
	if aw.handed {
		return
	}
	e := &aw.e
	e.Duration = time.Since(e.Start)
	e.Status = aw.status
	e.BytesOut = aw.written
	if body != nil {
		e.BytesIn = body.n.Load()
	}
	if e.Kind == accesslog.KindGRPC {
		e.GRPCStatus = grpcStatusOf(aw.Header())
	}
	l.access.Log(e)
}

// grpcStatusOf reads the grpc-status a response's header (trailers-only)
// or trailers gave; -1 for none.
func grpcStatusOf(h http.Header) int {
	v := h.Get("Grpc-Status")
	if tv := h[http.TrailerPrefix+"Grpc-Status"]; v == "" && len(tv) > 0 {
		v = tv[0]
	}
	if n, err := strconv.Atoi(v); err == nil {
		return n
	}
	return -1
}

// relayAccess writes the access log line of a stream the HTTP/2 relay
// finished.
func (l *Listener) relayAccess(x h2relay.Outcome) {
	if !l.access.Sample() {
		return
	}
	e := accesslog.Entry{Kind: accesslog.KindHTTP, Start: x.Start, Duration: x.Duration,
		Endpoint: x.Endpoint, Status: x.Status, GRPCStatus: x.GRPCStatus, Proto: "HTTP/2.0", Rule: -1}
	if x.GRPC {
		e.Kind = accesslog.KindGRPC
	}
	if h := x.Head; h != nil {
		path, _, _ := strings.Cut(h.Path, "?") // a query may hold secrets
		e.Client, e.Method, e.Host, e.Path = h.Client, h.Method, h.Authority, path
	}
	l.access.Log(&e)
}
