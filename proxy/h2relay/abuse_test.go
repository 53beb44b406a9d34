package h2relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/longhaul-proxy/longhaul/internal/membudget"
)

// The adversarial suite: one test per attack, each bounded in count and
// time, each asserting how fast the attacker is closed, what it cost the
// relay, and what a well-behaved client on the same relay saw meanwhile.

// probeP99 bounds the well-behaved client's p99 latency during an attack:
// 100ms, or 300ms under the race detector, which makes every goroutine
// several times slower (the relay's, the attacker's and the probe's, all
// on the same two cores).
func probeP99() time.Duration {
	if raceEnabled {
		return 300 * time.Millisecond
	}
	return 100 * time.Millisecond
}

// probe is a well-behaved gRPC client calling Check in a loop on its own
// connection while an attack runs.
type probe struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	lat    []time.Duration
	fails  int
	first  error
}

func startProbe(t *testing.T, addr string) *probe {
	t.Helper()
	c := healthpb.NewHealthClient(dialGRPC(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	// One call before the attack: the connection is up.
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		cancel()
		t.Fatalf("probe before the attack: %v", err)
	}
	p := &probe{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for range 20000 {
			start := time.Now()
			_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
			took := time.Since(start)
			if ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			if err != nil {
				p.fails++
				if p.first == nil {
					p.first = err
				}
			} else {
				p.lat = append(p.lat, took)
			}
			p.mu.Unlock()
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return p
}

// stop ends the probe and checks its calls: none failed, p99 under
// probeP99. It returns the p99.
func (p *probe) stop(t *testing.T) time.Duration {
	t.Helper()
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fails > 0 {
		t.Errorf("the well-behaved client had %d failed calls during the attack (first: %v)", p.fails, p.first)
	}
	if len(p.lat) < 5 {
		t.Fatalf("the well-behaved client made only %d calls during the attack", len(p.lat))
	}
	slices.Sort(p.lat)
	p99 := p.lat[len(p.lat)*99/100]
	if p99 > probeP99() {
		t.Errorf("the well-behaved client's p99 was %v during the attack (%d calls); want under %v", p99, len(p.lat), probeP99())
	}
	t.Logf("well-behaved client: %d calls, p50 %v, p99 %v", len(p.lat), p.lat[len(p.lat)/2], p99)
	return p99
}

// attacker is a raw HTTP/2 client connection that writes frames as fast
// as the relay takes them and notes what the relay answers.
type attacker struct {
	c      net.Conn
	bw     *bufio.Writer
	fr     *http2.Framer
	start  time.Time
	closed chan struct{} // the relay closed the connection
	// Set before closed is closed.
	goaway   *http2.GoAwayFrame
	closedAt time.Duration // since start
}

// dialAttacker connects and sends the preface and SETTINGS. With read, a
// goroutine reads (and discards) every frame the relay sends; without, the
// attacker never reads its socket, and closed is only learned from
// failing writes.
func dialAttacker(t *testing.T, addr string, read bool, settings ...http2.Setting) *attacker {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	bw := bufio.NewWriterSize(c, 64<<10)
	a := &attacker{c: c, bw: bw, fr: http2.NewFramer(bw, c), start: time.Now(), closed: make(chan struct{})}
	a.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	io.WriteString(bw, http2.ClientPreface)
	if err := a.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if read {
		go a.readAll()
	}
	return a
}

func (a *attacker) readAll() {
	defer close(a.closed)
	for {
		f, err := a.fr.ReadFrame()
		if err != nil {
			a.closedAt = time.Since(a.start)
			return
		}
		if g, ok := f.(*http2.GoAwayFrame); ok && a.goaway == nil {
			a.goaway = &http2.GoAwayFrame{LastStreamID: g.LastStreamID, ErrCode: g.ErrCode}
		}
	}
}

// frameEvent is a stream's RST_STREAM or header block from the relay.
type frameEvent struct {
	id   uint32
	rst  http2.ErrCode
	resp bool // a header block
	at   time.Duration
}

// events reads the relay's frames (the attacker must have been dialled
// without read) and sends the streams' resets and header blocks, until the
// connection ends.
func (a *attacker) events() <-chan frameEvent {
	ch := make(chan frameEvent, 1024)
	go func() {
		defer close(ch)
		for {
			f, err := a.fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				a.send(ch, frameEvent{id: f.StreamID, rst: f.ErrCode, at: time.Since(a.start)})
			case *http2.MetaHeadersFrame:
				a.send(ch, frameEvent{id: f.StreamID, resp: true, at: time.Since(a.start)})
			}
		}
	}()
	return ch
}

// send sends e unless ch is full (a test that stopped listening must not
// keep the reader from ending).
func (a *attacker) send(ch chan<- frameEvent, e frameEvent) {
	select {
	case ch <- e:
	default:
	}
}

// bigBodyBackend serves size bytes to every request, over h2c.
func bigBodyBackend(t *testing.T, size int) string {
	chunk := make([]byte, 32<<10)
	return startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
}

// openGETs opens n GET streams (ids 1, 3, ...), each ended, and flushes.
func (a *attacker) openGETs(t *testing.T, n int) {
	t.Helper()
	var sb strings.Builder
	enc := hpack.NewEncoder(&sb)
	for i := range n {
		if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: encodeHeader(enc, &sb, getHeader...), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// flood writes frames with write (given the frame's index) in batches of
// batch frames, flushing each batch, until max are written or a write
// fails (the relay closed the connection). It returns the frames written.
//
// Attackers would run on other machines; here they share the relay's two
// cores, so every attacker's batches take turns (attackCPU): the attack
// as a whole uses at most one core, and the latency measured is the
// relay's, not the load generator's.
func (a *attacker) flood(max, batch int, write func(i int) error) int {
	attackCPU.Lock()
	defer attackCPU.Unlock()
	for i := 0; i < max; i++ {
		if write(i) != nil {
			return i
		}
		if (i+1)%batch == 0 {
			attackCPU.Unlock()
			err := a.bw.Flush()
			attackCPU.Lock()
			if err != nil {
				return i + 1 - batch
			}
		}
	}
	a.bw.Flush()
	return max
}

var attackCPU sync.Mutex

// sustain runs attack in a loop, each run with a new connection, for
// attackFor (at most maxRuns runs), so that the well-behaved client's
// calls are measured under a sustained attack, not its first second.
func sustain(maxRuns int, attack func()) int {
	deadline := time.Now().Add(attackFor)
	n := 0
	for ; n < maxRuns && time.Now().Before(deadline); n++ {
		attack()
	}
	return n
}

// attackFor is how long each attack is kept up, reconnecting.
const attackFor = time.Second

// waitClosed waits (at most 10 s) for the relay to close the attacker's
// connection and checks it said ENHANCE_YOUR_CALM first.
func (a *attacker) waitClosed(t *testing.T) time.Duration {
	t.Helper()
	select {
	case <-a.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the attacker's connection is still open 10 s into the attack")
	}
	if a.goaway == nil || a.goaway.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("the relay closed the attacker with GOAWAY %v; want ENHANCE_YOUR_CALM", a.goaway)
	}
	return a.closedAt
}

// heapInUse returns the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

var getHeader = []string{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/"}

// encodeHeader returns a header block of fields (name, value pairs).
func encodeHeader(enc *hpack.Encoder, buf *strings.Builder, fields ...string) []byte {
	buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return []byte(buf.String())
}

func newAttackRelay(t *testing.T) (*testRelay, *testRouter, *testObserver) {
	t.Helper()
	be := startBackend(t)
	r := &testRouter{addrs: []string{be.addr}}
	obs := &testObserver{}
	return startRelay(t, Config{Router: r, Observer: obs}), r, obs
}

// TestRapidReset: HEADERS then RST_STREAM, as fast as one connection
// takes them (CVE-2023-44487), up to 1,000,000 pairs a connection, kept
// up with new connections for attackFor. The relay sends GOAWAY
// ENHANCE_YOUR_CALM after about 100 early resets and closes each
// connection; fewer than 1,000 streams of each reach the endpoint.
func TestRapidReset(t *testing.T) {
	p, r, obs := newAttackRelay(t)
	pr := startProbe(t, p.addr)
	var worstReached int64
	var worstClosed time.Duration
	pairs := 0
	runs := sustain(200, func() {
		base := r.routedGET.Load()
		a := dialAttacker(t, p.addr, true)
		var sb strings.Builder
		enc := hpack.NewEncoder(&sb)
		n := a.flood(2_000_000, 200, func(i int) error {
			id := uint32(2*(i/2) + 1)
			if i%2 == 1 {
				return a.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
			return a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: encodeHeader(enc, &sb, getHeader...), EndStream: true, EndHeaders: true})
		})
		pairs += n / 2
		worstClosed = max(worstClosed, a.waitClosed(t))
		worstReached = max(worstReached, r.routedGET.Load()-base)
		a.c.Close()
	})
	pr.stop(t)
	if worstReached >= 1000 {
		t.Errorf("%d streams of one connection reached the endpoint; want under 1,000", worstReached)
	}
	if worstClosed > time.Second {
		t.Errorf("an attacker was closed %v into its attack; want within 1 s", worstClosed)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.calmed) != runs {
		t.Errorf("observer saw %d connections calmed; want %d", len(obs.calmed), runs)
	}
	t.Logf("rapid reset: %d connections, %d pairs written in all, at most %d streams of one reached the endpoint, each closed within %v",
		runs, pairs, worstReached, worstClosed)
}

// peakSampler samples the heap in use and the process's RSS every 20ms
// until stopped.
type peakSampler struct {
	stopc             chan struct{}
	done              chan struct{}
	heapPeak, rssPeak uint64
}

func samplePeaks() *peakSampler {
	ps := &peakSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(ps.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			ps.heapPeak = max(ps.heapPeak, m.HeapInuse)
			ps.rssPeak = max(ps.rssPeak, rss())
			select {
			case <-tick.C:
			case <-ps.stopc:
				return
			}
		}
	}()
	return ps
}

func (ps *peakSampler) stop() { close(ps.stopc); <-ps.done }

// rss returns the process's resident set in bytes (0 where /proc is
// absent).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res uint64
	fmt.Sscan(string(b), &size, &res)
	return res * uint64(os.Getpagesize())
}

// TestPingFloodNonReading: 100 connections send PINGs and never read their
// sockets, reconnecting for attackFor. Each is closed once its unread
// answers pass the control-frame budget; the relay's heap stays flat.
func TestPingFloodNonReading(t *testing.T) {
	p, _, obs := newAttackRelay(t)
	pr := startProbe(t, p.addr)
	before := heapInUse()
	rssBefore := rss()
	ps := samplePeaks()
	flooders := 100
	if raceEnabled {
		flooders = 20
	}
	var wg sync.WaitGroup
	var worst atomic.Int64 // nanoseconds
	var maxWritten, conns atomic.Int64
	for range flooders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns.Add(int64(sustain(20, func() {
				a := dialAttacker(t, p.addr, false)
				n := a.flood(200_000, 100, func(i int) error { return a.fr.WritePing(false, [8]byte{byte(i)}) })
				// Only now read (and drop) what the relay sent, to see it
				// close the connection.
				a.c.SetReadDeadline(time.Now().Add(10 * time.Second))
				// A reset is a close too: the relay closed with the
				// flood unread in its receive buffer.
				if _, err := io.Copy(io.Discard, a.c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("the relay did not close a flooder: %v", err)
				}
				if d := int64(time.Since(a.start)); d > worst.Load() {
					worst.Store(d)
				}
				if int64(n) > maxWritten.Load() {
					maxWritten.Store(int64(n))
				}
				a.c.Close()
			})))
		}()
	}
	wg.Wait()
	ps.stop()
	pr.stop(t)
	grown := int64(ps.heapPeak) - int64(before)
	slowest := time.Duration(worst.Load())
	if slowest > 3*time.Second {
		t.Errorf("the slowest flooder was cut off %v into its flood; want within 3 s", slowest)
	}
	if grown > 50<<20 {
		t.Errorf("heap peaked %d MiB above its start with %d non-reading PING flooders; want under 50 MiB", grown>>20, flooders)
	}
	obs.mu.Lock()
	calmed := len(obs.calmed)
	obs.mu.Unlock()
	if int64(calmed) != conns.Load() {
		t.Errorf("%d of %d flooding connections closed with ENHANCE_YOUR_CALM", calmed, conns.Load())
	}
	t.Logf("PING flood: %d non-reading flooders, %d connections, at most %d PINGs written on one (kernel buffers take them), each closed within %v; heap peak %+d KiB, process RSS %d -> peak %d MiB",
		flooders, conns.Load(), maxWritten.Load(), slowest.Round(time.Millisecond), grown>>10, rssBefore>>20, ps.rssPeak>>20)
}

// TestSettingsFlood: SETTINGS frames without end, from clients that read
// the acknowledgements.
func TestSettingsFlood(t *testing.T) {
	p, _, _ := newAttackRelay(t)
	pr := startProbe(t, p.addr)
	var worst time.Duration
	most := 0
	runs := sustain(200, func() {
		a := dialAttacker(t, p.addr, true)
		n := a.flood(1_000_000, 100, func(i int) error {
			return a.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(65535 + i%2)})
		})
		most = max(most, n)
		worst = max(worst, a.waitClosed(t))
		a.c.Close()
	})
	pr.stop(t)
	if most >= 1_000_000 {
		t.Errorf("all %d SETTINGS were taken", most)
	}
	if worst > time.Second {
		t.Errorf("closed %v into the flood; want within 1 s", worst)
	}
	t.Logf("SETTINGS flood: %d connections, at most %d frames written on one, each closed within %v", runs, most, worst)
}

// TestEmptyContinuationFlood: a HEADERS frame without END_HEADERS, then
// empty CONTINUATION frames without end (CVE-2024-27316's shape).
func TestEmptyContinuationFlood(t *testing.T) {
	p, r, _ := newAttackRelay(t)
	pr := startProbe(t, p.addr)
	base := r.routedGET.Load()
	var worst time.Duration
	most := 0
	runs := sustain(200, func() {
		a := dialAttacker(t, p.addr, true)
		var sb strings.Builder
		block := encodeHeader(hpack.NewEncoder(&sb), &sb, getHeader...)
		if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true}); err != nil {
			t.Fatal(err)
		}
		n := a.flood(3_000_000, 500, func(int) error { return a.fr.WriteContinuation(1, false, nil) })
		most = max(most, n)
		worst = max(worst, a.waitClosed(t))
		a.c.Close()
	})
	pr.stop(t)
	if most >= 3_000_000 {
		t.Errorf("all %d CONTINUATION frames were taken", most)
	}
	if got := r.routedGET.Load() - base; got != 0 {
		t.Errorf("%d streams routed from unfinished header blocks", got)
	}
	if worst > time.Second {
		t.Errorf("closed %v into the flood; want within 1 s", worst)
	}
	t.Logf("empty CONTINUATION flood: %d connections, at most %d frames written on one, each closed within %v", runs, most, worst)
}

// TestHeaderListBudget: 1000 streams whose small header blocks decode to
// about 60 KiB each through the HPACK table, held open by the endpoint.
// The streams above the connection's header budget are refused, and the
// heap holds a bounded amount.
func TestHeaderListBudget(t *testing.T) {
	release := make(chan struct{})
	var served atomic.Int64
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-release
	}))
	defer close(release)
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{be}}, MaxConcurrentStreams: 1000})
	before := heapInUse()
	a := dialAttacker(t, p.addr, false)
	var sb strings.Builder
	enc := hpack.NewEncoder(&sb)
	enc.SetMaxDynamicTableSizeLimit(4096)
	big := strings.Repeat("v", 3000)
	fields := slices.Clone(getHeader)
	for range 20 {
		fields = append(fields, "x-big", big)
	}
	// Count refusals and answers.
	var refused, ok atomic.Int64
	done := make(chan struct{})
	events := a.events()
	go func() {
		defer close(done)
		for e := range events {
			switch {
			case e.rst == http2.ErrCodeRefusedStream:
				refused.Add(1)
			case e.resp:
				ok.Add(1)
			}
			if refused.Load()+ok.Load() >= 1000 {
				return
			}
		}
	}()
	sent := 0
	for id := uint32(1); sent < 1000; id += 2 {
		block := encodeHeader(enc, &sb, fields...)
		if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
			t.Fatalf("stream %d: %v", id, err)
		}
		a.bw.Flush()
		sent++
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("answers to %d of %d streams in 20 s", refused.Load()+ok.Load(), sent)
	}
	grown := int64(heapInUse()) - int64(before)
	if refused.Load() == 0 {
		t.Errorf("no stream refused: %d header lists of about 60 KiB held", ok.Load())
	}
	if grown > 16<<20 {
		t.Errorf("heap grew by %d MiB for %d streams held; want under 16 MiB", grown>>20, ok.Load())
	}
	t.Logf("HPACK amplification: %d streams sent (%d bytes of header block each), %d held, %d refused, heap %+d KiB",
		sent, len(encodeHeader(enc, &sb, fields...)), ok.Load(), refused.Load(), grown>>10)
}

// TestZeroWindowClientDoesNotStallOthers: a client that advertises
// INITIAL_WINDOW_SIZE 0 and opens 8 streams of large responses holds no
// one else back on the endpoint connection they share, and its stalled
// streams are reset after StreamStallTimeout.
func TestZeroWindowClientDoesNotStallOthers(t *testing.T) {
	const size = 4 << 20
	be := bigBodyBackend(t, size)
	const stall = 500 * time.Millisecond
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{be}}, StreamStallTimeout: stall})
	a := dialAttacker(t, p.addr, false, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	a.openGETs(t, 8)
	start := time.Now()
	// Another client, the same endpoint: whole bodies, at once.
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: dialPlain}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := range 4 {
		t0 := time.Now()
		resp, err := cl.Get("http://" + p.addr + "/")
		if err != nil {
			t.Fatalf("download %d: %v", i, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			t.Fatalf("download %d: %d of %d bytes: %v", i, n, size, err)
		}
		if took := time.Since(t0); took > 2*time.Second {
			t.Errorf("download %d of %d MiB took %v beside the zero-window client", i, size>>20, took)
		}
	}
	// The zero-window client's streams are reset once stalled.
	reset := map[uint32]bool{}
	a.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(reset) < 8 {
		f, err := a.fr.ReadFrame()
		if err != nil {
			t.Fatalf("%d of 8 stalled streams reset before: %v", len(reset), err)
		}
		if r, ok := f.(*http2.RSTStreamFrame); ok && r.ErrCode == http2.ErrCodeCancel {
			reset[r.StreamID] = true
		}
	}
	took := time.Since(start)
	if took > stall+2*time.Second {
		t.Errorf("stalled streams reset %v after they stalled; want within StreamStallTimeout (%v) and 2 s", took, stall)
	}
	t.Logf("zero-window client: others' downloads unaffected, its 8 streams reset %v after the start (stall timeout %v)", took.Round(time.Millisecond), stall)
}

// TestStreamIdleTimeout: a gRPC call with nothing on its stream for
// StreamIdleTimeout ends UNAVAILABLE, and the endpoint's side is
// cancelled.
func TestStreamIdleTimeout(t *testing.T) {
	be := startBackend(t)
	const idle = 300 * time.Millisecond
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{be.addr}}, StreamIdleTimeout: idle})
	cc := dialGRPC(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := wait(ctx, cc, "forever")
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "Unavailable") {
		t.Fatalf("idle call ended with %v; want UNAVAILABLE", err)
	}
	if took < idle || took > idle+time.Second {
		t.Errorf("idle call ended after %v; want within [%v, %v]", took, idle, idle+time.Second)
	}
	select {
	case w := <-be.waitSeen:
		if !errors.Is(w.err, context.Canceled) {
			t.Errorf("the endpoint's call ended with %v; want cancelled", w.err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the endpoint's call was not cancelled")
	}
}

// TestAnsweredStreamCountsUntilClientEnds: a stream the endpoint answered
// and reset (NO_ERROR) while the client still sends its request counts
// toward MAX_CONCURRENT_STREAMS until the client ends it, or the sweep
// resets it with NO_ERROR.
func TestAnsweredStreamCountsUntilClientEnds(t *testing.T) {
	be := startBackend(t) // grpc-go: answers an unknown method at once, then RST_STREAM NO_ERROR
	const stall = 400 * time.Millisecond
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{be.addr}}, MaxConcurrentStreams: 2, StreamStallTimeout: stall, lingerGrace: time.Second})
	a := dialAttacker(t, p.addr, false)
	var sb strings.Builder
	enc := hpack.NewEncoder(&sb)
	grpcReq := []string{":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/no.Such/Method", "content-type", "application/grpc", "te", "trailers"}
	events := a.events()
	for _, id := range []uint32{1, 3} {
		if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: encodeHeader(enc, &sb, grpcReq...), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		a.bw.Flush()
	}
	// Both answered (trailers-only UNIMPLEMENTED); neither reset yet.
	answered := 0
	for answered < 2 {
		e := <-events
		if e.rst != 0 || (!e.resp && e.id != 0) {
			t.Fatalf("stream %d reset (%v) before the client ended it", e.id, e.rst)
		}
		answered++
	}
	// A third stream is over the limit while both still count.
	if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: encodeHeader(enc, &sb, grpcReq...), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	a.bw.Flush()
	e := <-events
	if e.id != 5 || e.rst != http2.ErrCodeRefusedStream {
		t.Fatalf("third stream: %+v; want REFUSED_STREAM while two answered streams are open", e)
	}
	// The client ends stream 1 itself; stream 3 is reset by the sweep.
	if err := a.fr.WriteData(1, true, nil); err != nil {
		t.Fatal(err)
	}
	a.bw.Flush()
	e = <-events
	if e.id != 3 || e.rst != http2.ErrCodeNo {
		t.Fatalf("got %+v; want stream 3 reset NO_ERROR by the sweep", e)
	}
	if e.at > 3*time.Second {
		t.Errorf("stream 3 reset %v in; want within a few sweeps", e.at)
	}
}

// TestMemoryBudgetShedsGreediest: zero-window clients that make the relay
// buffer their responses push the process's budget over its limit; the
// greediest are closed (GOAWAY ENHANCE_YOUR_CALM) until the total is back
// under it, and a well-behaved client's downloads go on.
func TestMemoryBudgetShedsGreediest(t *testing.T) {
	const size = 4 << 20
	be := bigBodyBackend(t, size)
	const limit = 4 << 20
	budget := membudget.New(limit)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { budget.Run(ctx); close(ran) }()
	defer func() { cancel(); <-ran }()
	obs := &testObserver{}
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{be}}, Budget: budget, Observer: obs})
	// Six clients, each holding up to 8 streams x 256 KiB: 12 MiB wanted.
	const greedy = 6
	var attackers []*attacker
	for range greedy {
		a := dialAttacker(t, p.addr, true, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		a.openGETs(t, 8)
		attackers = append(attackers, a)
	}
	eventually(t, 5*time.Second, func() bool { return budget.Shed() > 0 && budget.Used() <= limit }, "accounted bytes back under the limit")
	shed := int(budget.Shed())
	closedCount := func() (n int) {
		for _, a := range attackers {
			select {
			case <-a.closed:
				n++
			default:
			}
		}
		return n
	}
	eventually(t, 3*time.Second, func() bool { return closedCount() == shed }, "every shed client closed")
	for _, a := range attackers {
		select {
		case <-a.closed:
			if a.goaway == nil || a.goaway.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Errorf("a shed client got GOAWAY %v; want ENHANCE_YOUR_CALM", a.goaway)
			}
		default:
		}
	}
	if shed == greedy {
		t.Errorf("all %d greedy clients shed; want only as many as the limit needs", greedy)
	}
	closed := closedCount()
	// A well-behaved client is served in full meanwhile.
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: dialPlain}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("well-behaved download: %d of %d bytes: %v", n, size, err)
	}
	t.Logf("memory budget %d MiB: %d of %d greedy clients shed, %d KiB accounted after", limit>>20, closed, greedy, budget.Used()>>10)
	for _, a := range attackers {
		a.c.Close()
	}
	eventually(t, 5*time.Second, func() bool { return budget.Used() == 0 }, "every byte given back once all closed")
}

// TestPingsAfterWorkAreFree: a peer that PINGs after each request (as
// gRPC's BDP estimation does after data) is not a flood, however many.
func TestPingsAfterWorkAreFree(t *testing.T) {
	p, _, obs := newAttackRelay(t)
	a := dialAttacker(t, p.addr, false)
	var sb strings.Builder
	enc := hpack.NewEncoder(&sb)
	const n = 3 * maxPingsPerSpan
	acks := make(chan int, 1)
	go func() {
		got := 0
		for got < n {
			f, err := a.fr.ReadFrame()
			if err != nil {
				break
			}
			if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() {
				got++
			}
		}
		acks <- got
	}()
	for i := range n {
		if err := a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: encodeHeader(enc, &sb, getHeader...), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if err := a.fr.WritePing(false, [8]byte{1}); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			a.bw.Flush()
		}
	}
	a.bw.Flush()
	if got := <-acks; got != n {
		t.Errorf("%d of %d PINGs answered", got, n)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.calmed) != 0 {
		t.Errorf("calmed: %v", obs.calmed)
	}
}
