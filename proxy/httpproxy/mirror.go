package httpproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"sync"

	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
	"github.com/longhaul-proxy/longhaul/proxy/metrics"
	"github.com/longhaul-proxy/longhaul/proxy/route"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Mirroring, the Gateway API's RequestMirror filter: a request its rule
// mirrors is also sent, as a copy, to each mirror backend drawn for it
// (route.Mirror.Take), and the copy's answer is read and dropped. The
// copy is the request as the rule's filters left it, as forwarded: same
// method, URL, Host and headers (X-Forwarded-* included), and body.
//
// A copy never delays or fails its request. The body is teed as the
// request's own round trip reads it, into a buffer of at most
// mirrorBodyMax bytes: the copies leave once the body has been read
// whole (a request without a body: at once), and a larger body, or one
// not read whole (an endpoint that answered early, a client that broke
// off), is not mirrored. Copies run in goroutines the listener owns,
// at most mirrorsInFlight at once (beyond, they are dropped), each for at
// most the listener's ResponseHeaderTimeout from start to its answer's
// end; Shutdown waits for them until its context ends, and then cancels
// them. A copy leases an endpoint of its backend as a request does
// (Upstream.Try: counted as load, released when it ends) and goes over
// the same endpoint connections.
//
// Not mirrored: WebSocket upgrades (a copy cannot share the session),
// gRPC calls (streams of unbounded length; GRPCRoute mirrors are
// ignored), and HTTP/2 clients that the relay serves frame by frame (with
// UpstreamH2; the configuration refuses filters there).

const (
	// mirrorBodyMax bounds the body kept for a request's mirrors.
	mirrorBodyMax = 1 << 20
	// mirrorsInFlight bounds the copies in flight on one listener.
	mirrorsInFlight = 256
	// mirrorDiscardMax bounds what is read of a copy's answer, so that its
	// connection may be reused; the rest is cut.
	mirrorDiscardMax = 1 << 20
)

// mirrorOutcome indexes mirrorSet.count, as metrics.Metrics.Mirrors
// labels them.
type mirrorOutcome int

const (
	mirrorSent mirrorOutcome = iota
	mirrorError
	mirrorDroppedInflight
	mirrorDroppedBody
)

var mirrorOutcomes = [...]string{"sent", "error", "dropped_inflight", "dropped_body"}

// mirrorSet is a listener's copies in flight. mu orders wg's Adds before
// shutdown's Wait: once closed is set, no copy starts.
type mirrorSet struct {
	ctx    context.Context // of every copy; cancelled by stop
	stop   context.CancelFunc
	slots  chan struct{} // one per copy in flight
	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup
	count  [len(mirrorOutcomes)]prometheus.Counter
}

func newMirrorSet(m *metrics.Metrics, listener string) *mirrorSet {
	ms := &mirrorSet{slots: make(chan struct{}, mirrorsInFlight)}
	ms.ctx, ms.stop = context.WithCancel(context.Background())
	for i, o := range mirrorOutcomes {
		ms.count[i] = m.Mirrors.WithLabelValues(listener, o)
	}
	return ms
}

// start runs fn in a goroutine of the set, if a slot is free and the set
// open; it reports whether it did.
func (ms *mirrorSet) start(fn func(ctx context.Context)) bool {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	if ms.closed {
		return false
	}
	select {
	case ms.slots <- struct{}{}:
	default:
		return false
	}
	ms.wg.Add(1)
	go func() {
		defer func() { <-ms.slots; ms.wg.Done() }()
		fn(ms.ctx)
	}()
	return true
}

// shutdown starts no more copies and waits for those in flight until ctx
// ends, then cancels them and waits for them to return (at once: each
// ends with its context).
func (ms *mirrorSet) shutdown(ctx context.Context) error {
	ms.mu.Lock()
	ms.closed = true
	ms.mu.Unlock()
	done := make(chan struct{})
	go func() { ms.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	ms.stop()
	<-done
	return err
}

// mirrorCopy is one request's copies, from routing until they leave or
// are dropped: the copies' request (what they share) and, as the body is
// read, the body. Its state changes under mu, once: pending, then sent or
// dropped.
type mirrorCopy struct {
	l       *Listener
	targets []mirrorTarget
	method  string
	url     url.URL // as routed; its host is the endpoint's
	host    string
	header  http.Header

	mu   sync.Mutex
	buf  []byte
	over bool // the body went past mirrorBodyMax
	done bool // sent or dropped
}

// mirrorTarget is a mirror backend drawn for a request, and the key its
// picker hashes the request to.
type mirrorTarget struct {
	b   *Backend
	key uint64
}

// newMirrorCopy draws out's mirrors among ms and prepares their copy of
// out (the request as routed and forwarded; its body not yet read).
// It returns nil when none is drawn. A body announced larger than
// mirrorBodyMax drops the copies now.
func (l *Listener) newMirrorCopy(out, r *http.Request, ms []route.Mirror[*Backend], client netip.AddrPort) *mirrorCopy {
	var targets []mirrorTarget
	for i := range ms {
		if m := &ms[i]; m.Backend != nil && m.Take(rand.Uint64()) {
			targets = append(targets, mirrorTarget{b: m.Backend, key: m.Backend.Key.Hash(r, client)})
		}
	}
	if len(targets) == 0 {
		return nil
	}
	if out.ContentLength > mirrorBodyMax {
		l.mir.count[mirrorDroppedBody].Add(float64(len(targets)))
		return nil
	}
	return &mirrorCopy{l: l, targets: targets, method: out.Method, url: *out.URL, host: out.Host, header: out.Header.Clone()}
}

// tee returns body, whose reads are kept for the copies; they leave at
// its end.
func (mc *mirrorCopy) tee(body io.ReadCloser) io.ReadCloser {
	return &mirrorTee{ReadCloser: body, mc: mc}
}

// mirrorTee is a request body whose reads a mirrorCopy keeps.
type mirrorTee struct {
	io.ReadCloser
	mc *mirrorCopy
}

func (t *mirrorTee) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	t.mc.read(p[:n], err)
	return n, err
}

// read keeps p, what the body gave, and sends the copies at its end (EOF);
// a body past the bound, or failing, drops them.
func (mc *mirrorCopy) read(p []byte, err error) {
	mc.mu.Lock()
	if mc.done {
		mc.mu.Unlock()
		return
	}
	if !mc.over && len(mc.buf)+len(p) <= mirrorBodyMax {
		mc.buf = append(mc.buf, p...)
	} else {
		mc.over, mc.buf = true, nil
	}
	if mc.over || (err != nil && err != io.EOF) {
		mc.done = true
		mc.mu.Unlock()
		mc.l.mir.count[mirrorDroppedBody].Add(float64(len(mc.targets)))
		return
	}
	if err == nil {
		mc.mu.Unlock()
		return
	}
	mc.done = true
	body := mc.buf
	mc.mu.Unlock()
	mc.send(body)
}

// finish ends the copies' wait for the body, when the request's handler
// returns: a body not read whole by then is not mirrored.
func (mc *mirrorCopy) finish() {
	mc.mu.Lock()
	pending := !mc.done
	mc.done, mc.buf = true, nil
	mc.mu.Unlock()
	if pending {
		mc.l.mir.count[mirrorDroppedBody].Add(float64(len(mc.targets)))
	}
}

// sendNow sends the copies of a request without a body.
func (mc *mirrorCopy) sendNow() {
	mc.mu.Lock()
	mc.done = true
	mc.mu.Unlock()
	mc.send(nil)
}

// send starts a copy to each target, as slots allow; it does not wait.
func (mc *mirrorCopy) send(body []byte) {
	ms := mc.l.mir
	for _, t := range mc.targets {
		if !ms.start(func(ctx context.Context) { ms.count[mc.l.sendMirror(ctx, mc, t, body)].Inc() }) {
			ms.count[mirrorDroppedInflight].Inc()
		}
	}
}

// sendMirror sends one copy to t and reads its answer, within the
// listener's ResponseHeaderTimeout, and returns its outcome.
func (l *Listener) sendMirror(ctx context.Context, mc *mirrorCopy, t mirrorTarget, body []byte) mirrorOutcome {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.ResponseHeaderTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, mc.method, "http://mirror/", bytes.NewReader(body))
	if err != nil {
		return mirrorError // a method net/http refuses
	}
	u := mc.url
	req.URL = &u
	if len(body) == 0 {
		req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
	}
	req.Host = mc.host
	req.Header = mc.header.Clone()
	var resp *http.Response
	var done func()
	lease, err := t.b.Up.Try(upstream.Attempt{Key: t.key, Max: l.cfg.MaxAttempts}, func(ls *upstream.Lease) (err error) {
		req.URL.Host = ls.Addr()
		if req.GetBody != nil {
			req.Body, _ = req.GetBody()
		}
		resp, done, err = l.roundTrip(req, t.b, ls.Addr())
		return err
	}, func(err error) bool {
		var de *upstream.DialError
		return ctx.Err() == nil && (errors.As(err, &de) || h2relay.IsRetryable(err))
	})
	if err != nil {
		return mirrorError
	}
	defer lease.Release()
	defer done()
	_, err = io.CopyN(io.Discard, resp.Body, mirrorDiscardMax)
	resp.Body.Close()
	if err != nil && err != io.EOF && ctx.Err() != nil {
		return mirrorError // answered, but not in time
	}
	return mirrorSent
}
