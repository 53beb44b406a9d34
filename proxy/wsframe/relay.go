package wsframe

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/guard"
	"github.com/longhaul-proxy/longhaul/proxy/readiness"
	"golang.org/x/sys/unix"
)

// Defaults for the zero values of Options' fields.
const (
	DefaultMaxFrame     = 16 << 20
	DefaultCloseTimeout = 5 * time.Second
	DefaultParkAfter    = 100 * time.Millisecond
)

// ErrAborted is the result of a relay ended by Abort.
var ErrAborted = errors.New("wsframe: relay aborted")

// errParked ends a pump's loop when it parked its source: its goroutine
// ends, and the Parker's wake-up starts another.
var errParked = errors.New("wsframe: parked")

// Parker waits for sockets to become readable without a goroutine each
// (readiness.Poller). Park calls wake once rc's socket is readable, has hung
// up or failed; the Cancel of what it returns withdraws the wait and
// reports whether wake will never run.
type Parker interface {
	Park(rc syscall.RawConn, wake func()) (interface{ Cancel() bool }, error)
}

// bufSize is the size of each direction's working buffer. A frame whose
// header and payload fit in it is read whole before it is written, in one
// write; a larger one is streamed through it in pieces while its
// destination stays locked.
//
// An idle connection holds no working buffer: each direction waits for the
// next frame with a small buffer (idleBufSize, enough for a header and a
// small message), takes a working buffer from a pool for a frame that does
// not fit, and gives it back once it has relayed every byte it buffered.
// A parked direction (Options.Parker) holds neither: the small buffer goes
// back to its pool too. Thousands of quiet WebSockets then cost little
// memory.
const (
	bufSize     = 16 << 10
	idleBufSize = 512
)

var (
	bufPool   = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}
	smallPool = sync.Pool{New: func() any { b := make([]byte, idleBufSize); return &b }}
)

// Options tunes a Relay. The zero value is usable.
type Options struct {
	// MaxFrame bounds a frame's payload length; 0 means DefaultMaxFrame
	// (16 MiB). A larger frame ends the relay with Close 1009 (message too
	// big) to both sides and an error wrapping ErrTooLarge.
	MaxFrame int64
	// Extensions allows frames with RSV bits set: an extension (such as
	// permessage-deflate) was negotiated in the handshake. Without it such
	// frames are protocol errors.
	Extensions bool
	// CloseTimeout bounds the wait for the close handshake once the relay
	// started one (Migrate, or Close 1002/1009 on a violation), and the wait
	// for a peer's Close after the other peer sent Close and hung up; 0
	// means DefaultCloseTimeout (5s).
	CloseTimeout time.Duration
	// Parker, when set, lets a direction give up its goroutine and buffer
	// at a frame boundary until its source is readable again: an idle
	// WebSocket then holds no goroutine. Only sources that are sockets
	// (syscall.Conn: not TLS) park; the others wait on a goroutine as
	// without a Parker. A direction whose destination is a socket too
	// parks at every frame boundary, and its wake-ups relay small frames
	// on the Parker's goroutine (see pump.inline); one toward a TLS
	// connection parks after ParkAfter, and its wake-ups start a
	// goroutine.
	Parker Parker
	// ParkAfter is how long a direction toward a connection that is not a
	// socket waits for a frame on its goroutine before it parks; 0 means
	// DefaultParkAfter (100ms).
	//
	// Such a direction woken soon after it parked waits longer before the
	// next park (readiness.ParkWait): a steady stream of messages soon
	// stops parking between them, while an idle one parks after ParkAfter.
	ParkAfter time.Duration
}

// Sides, used as indexes: as a pump's source and as a destination peer.
const (
	clientSide  = 0
	backendSide = 1
)

var sideName = [2]string{"client", "backend"}

// Relay copies WebSocket frames between a client and a backend connection.
// See the package documentation for the invariants it keeps. A Relay is
// created by New, run once by Run, and may be told to Migrate from any
// goroutine at any time, before or during Run.
type Relay struct {
	opts Options
	// peers[s] is side s seen as a destination of frames.
	peers [2]peer
	// pumps[clientSide] carries client->backend frames ("up"),
	// pumps[backendSide] backend->client frames ("down").
	pumps       [2]pump
	started     atomic.Bool
	migrateOnce sync.Once
	// finishing mirrors finished for the pumps' lock-free check after they
	// set a read deadline (see pump.await). It is set before the past
	// deadline that releases blocked reads.
	finishing atomic.Bool
	// endFn is Start's; called once, when both pumps stopped and the
	// injections are done.
	endFn func(error)

	// The control state: what each side did and what the relay decided.
	// Events (a pump's Close or end, an injection done, Migrate, the close
	// timeout) update it under mu, on the goroutine that has them: no
	// goroutine of its own waits for them.
	mu            sync.Mutex
	running       bool   // Run takes events
	migrateReq    bool   // Migrate was called
	migrateCode   uint16 // its arguments
	migrateReason string
	closeFrom     [2]bool // a Close frame came from the side
	pumpDone      [2]bool
	pending       int  // injections under way
	ending        bool // the relay ends once pending is 0
	finished      bool // it ended: blocked reads and writes were released
	live          int  // pumps not stopped for good (running or parked)
	result        error
	timer         *time.Timer
	done          chan struct{} // closed when finished
	injectors     sync.WaitGroup
}

// peer is one connection seen as a destination of frames. Whoever writes to
// it (a pump forwarding a frame, or an injector writing a Close) holds mu
// for the whole frame, so frames never interleave on the wire.
type peer struct {
	conn net.Conn
	// masked: frames written to this peer must be masked (it is the
	// server side, the backend).
	masked bool

	mu sync.Mutex
	// closeSent: a Close frame was written to the peer (forwarded or
	// injected). RFC 6455 allows no frame after it, so later frames
	// toward this peer are dropped. Guarded by mu.
	closeSent bool
	// injecting: the relay decided to send the peer a Close (Migrate, or
	// a violation). From then on no frame that has not started toward the
	// peer is forwarded, even before the injector gets mu: the peer gets
	// the relay's Close, never the other side's Close or frames sent after
	// the decision. Set before the injector starts, never cleared.
	injecting atomic.Bool

	// pending is the Close frame an injector is about to write: if the
	// other side's EOF must be passed on first, shutWrite writes it before
	// the FIN, so that the peer never gets an EOF where the relay promised
	// a Close. Written once, by Run's goroutine, before injecting is set;
	// read only after injecting is seen set. Allocated then: most relays
	// never inject.
	pending []byte

	// shut: nothing more may be written to the peer, because a write of
	// a frame failed or a read of a frame's source failed part-way (the
	// peer may hold part of a frame, so any further byte would be taken
	// as the rest of it), or because its write half was closed. Guarded
	// by mu.
	shut bool
}

// pump reads frames from one side and forwards or drops each whole frame
// toward the other. All its fields but the counters are owned by its
// goroutine.
type pump struct {
	relay *Relay
	from  int // side the frames come from; it writes to peers[1-from] (to)
	in    frameReader
	// frag: a fragmented data message is in progress on this source (a
	// data frame without FIN was seen and its final continuation not yet).
	frag bool
	// closed: the source sent a Close frame (reported once).
	closed bool
	// holding: the pump holds its destination's mu (relayFrame), so that
	// a panic there lets go of it (see panicked).
	holding bool
	// parked: the source is parked and cancel withdraws its wait. Guarded
	// by the Relay's mu.
	parked bool
	// resume is what is left to write of a frame the inline relay began
	// to write and could not finish without blocking: the frame's rest is
	// buffered at in.buf[in.r:], and the pump holds its destination's mu
	// (holding). The loop finishes it first. Owned like wait.
	resume int32
	// rc is the source socket (the Relay's peers[from].conn), nil when it
	// cannot park; pre is what was read past the handshake, relayed
	// before parking is allowed.
	rc  syscall.RawConn
	pre *prefixReader
	// cancel is the wait of the source's last park: while parked, it
	// withdraws it; after the wake-up, when it can be re-armed
	// (rewaiter), the next park re-arms it. Guarded by the Relay's mu.
	cancel interface{ Cancel() bool }
	// wait is how long the source waits on the goroutine before it parks
	// (see Options.ParkAfter). Owned by the pump's goroutine (the one
	// running, or the wake-up's).
	wait readiness.ParkWait
	// deadline is the parking read deadline set on the source (unix
	// nanoseconds), 0 when none is; owned like wait.
	deadline int64
	// io does the inline relay's system calls (see inline); made at the
	// first wake-up, owned like wait.
	io *rawIO

	frames atomic.Int64 // frames forwarded
	bytes  atomic.Int64 // wire bytes (headers and payloads) forwarded
}

// to is the peer the pump writes frames to.
func (p *pump) to() *peer { return &p.relay.peers[1-p.from] }

type eventKind uint8

const (
	evClose    eventKind = iota // a Close frame came from side from
	evDone                      // the pump reading side from ended with err
	evInjected                  // an injected Close was written or skipped
	evMigrate                   // Migrate was called (and Run runs)
	evTimeout                   // CloseTimeout passed since the first close decision
	evAbort                     // Abort was called
)

type event struct {
	kind eventKind
	from int
	err  error
}

// New returns a Relay between client, the hijacked client connection, and
// backend, the upstream connection, both just past the 101 Switching
// Protocols handshake. clientBuf holds bytes already read from client past
// the handshake request, backendBuf bytes already read from backend past the
// 101 response; either may be nil. They are relayed first, in order, and
// are not modified; the Relay keeps them until Run returns.
func New(client net.Conn, clientBuf []byte, backend net.Conn, backendBuf []byte, o Options) *Relay {
	if o.MaxFrame <= 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
	if o.ParkAfter <= 0 {
		o.ParkAfter = DefaultParkAfter
	}
	r := &Relay{opts: o, done: make(chan struct{})}
	r.peers[clientSide].conn = client
	r.peers[backendSide].conn = backend
	r.peers[backendSide].masked = true
	conns := [2]net.Conn{client, backend}
	bufs := [2][]byte{clientBuf, backendBuf}
	for s := range r.pumps {
		p := &r.pumps[s]
		p.relay = r
		p.from = s
		p.in.src = conns[s]
		if len(bufs[s]) > 0 {
			p.pre = &prefixReader{pre: bufs[s], r: conns[s]}
			p.in.src = p.pre
		}
		if sc, ok := conns[s].(syscall.Conn); ok && o.Parker != nil {
			if rc, err := sc.SyscallConn(); err == nil {
				p.rc = rc
				p.in.owner = p
			}
		}
	}
	return r
}

// Stats returns the frames and wire bytes (headers included) forwarded
// client->backend (up) and backend->client (down) so far. Injected and
// dropped frames are not counted. Safe to call at any time.
func (r *Relay) Stats() (framesUp, framesDown, bytesUp, bytesDown int64) {
	up, down := &r.pumps[clientSide], &r.pumps[backendSide]
	return up.frames.Load(), down.frames.Load(), up.bytes.Load(), down.bytes.Load()
}

// Migrate starts moving the client away: at the next frame boundary of each
// direction it injects a Close(code, reason) toward the client, unmasked,
// and a masked Close(code, reason) toward the backend. From then on no frame
// is forwarded toward either (a frame in progress is finished first), the
// client's Close reply is absorbed (the backend got its own Close), and the
// relay ends once both sides answered Close, or after CloseTimeout. reason
// is cut to MaxCloseReason bytes.
//
// Migrate returns at once and is safe from any goroutine; only the first
// call has an effect. Called before Run, it takes effect when Run starts;
// after Run returned, it has none.
func (r *Relay) Migrate(code uint16, reason string) {
	r.migrateOnce.Do(func() {
		r.mu.Lock()
		r.migrateCode, r.migrateReason = code, reason
		r.migrateReq = true
		running := r.running
		r.mu.Unlock()
		if running { // else Run sees migrateReq when it starts
			r.handle(event{kind: evMigrate})
		}
	})
}

// closeFor returns the close code and reason to send both sides after a
// pump failed with err, or 0 if err calls for none.
func closeFor(err error) (uint16, string) {
	switch {
	case errors.Is(err, ErrTooLarge):
		return 1009, "message too big"
	case errors.Is(err, ErrProtocol):
		return 1002, "protocol error"
	}
	return 0, ""
}

// Run relays frames both ways until the connection ends and returns after
// every goroutine it started has stopped. It must be called once.
//
// The relay ends:
//   - after a Close frame went each way (forwarded or absorbed): nil;
//   - when a side ends its stream at a frame boundary (EOF): nil, except
//     that a side that sent Close and then EOF leaves the other side up to
//     CloseTimeout to send its own Close;
//   - on a read or write error, or a side ending inside a frame: that error;
//   - on a protocol violation: after Close 1002 (1009 for a frame larger
//     than MaxFrame) was written to both sides where the stream allows,
//     with an error wrapping ErrProtocol (ErrTooLarge);
//   - after Migrate: once both sides answered Close (nil), or after
//     CloseTimeout (ErrCloseTimeout).
//
// Run closes neither connection; the caller does, after Run returns. To
// stop blocked reads and writes when it ends, Run sets a past deadline on
// both connections, and clears it again before returning; on an EOF it
// half-closes the other connection's write side when it can (CloseWrite).
func (r *Relay) Run() error {
	res := make(chan error, 1)
	if err := r.Start(func(err error) { res <- err }); err != nil {
		return err
	}
	return <-res
}

// Start is Run in the background: it returns at once, and end is called
// with what Run would return, once, after every goroutine the relay
// started has stopped (end runs on the last of them). Start, like Run,
// must be called once.
//
// Each direction runs on a goroutine of its own while it relays; with a
// Parker, one whose source stays quiet for ParkAfter parks it and ends its
// goroutine, and the wake-up starts another. An idle relay then holds no
// goroutine: whoever would close its connections while it may be parked
// calls Abort first, since a parked socket closed under the Parker is
// never woken.
func (r *Relay) Start(end func(error)) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("wsframe: Relay started more than once")
	}
	r.mu.Lock()
	r.endFn = end
	r.running = true
	r.live = len(r.pumps)
	migrate := r.migrateReq
	r.mu.Unlock()
	if migrate {
		r.handle(event{kind: evMigrate})
	}
	for s := range r.pumps {
		go r.pumps[s].run()
	}
	return nil
}

// Abort ends the relay at once, with ErrAborted unless it was ending
// already: blocked reads and writes are released and parked directions
// stop. The caller may close the connections after it. Safe from any
// goroutine, before or during the relay.
func (r *Relay) Abort() {
	r.handle(event{kind: evAbort})
}

// stopped records that a pump stopped for good; the last one completes
// the relay. Called with r.mu held; it reports whether the caller must run
// complete once it has let go of r.mu.
func (r *Relay) stopped() (last bool) {
	r.live--
	return r.live == 0
}

// complete waits for the injections (bounded by CloseTimeout; both pumps
// are done, so the relay is ending), clears the deadlines that released
// blocked calls, and calls Start's end with the result.
func (r *Relay) complete() {
	<-r.done
	r.injectors.Wait()
	for s := range r.peers {
		_ = r.peers[s].conn.SetDeadline(time.Time{})
	}
	r.mu.Lock()
	res := r.result
	r.mu.Unlock()
	r.endFn(res)
}

// handle applies one event to the control state, on the goroutine that has
// it. Once the relay is ending and no injection is under way, it releases
// every blocked read and write (a past deadline on both connections), and
// later events change nothing.
func (r *Relay) handle(ev event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	switch ev.kind {
	case evMigrate:
		if !r.ending {
			r.inject(r.migrateCode, r.migrateReason)
		}
	case evInjected:
		r.pending--
	case evClose:
		r.closeFrom[ev.from] = true
		if r.closeFrom[clientSide] && r.closeFrom[backendSide] {
			r.end(nil)
		}
	case evDone:
		r.pumpDone[ev.from] = true
		other := 1 - ev.from
		if code, reason := closeFor(ev.err); code != 0 {
			if !r.ending {
				r.inject(code, reason)
			}
			r.end(ev.err)
		} else if ev.err == nil && r.closeFrom[ev.from] && !r.pumpDone[other] {
			// The side closed properly; give the other one time to
			// answer its Close.
			r.startTimer()
		} else {
			r.end(ev.err)
		}
	case evTimeout:
		r.end(ErrCloseTimeout)
		r.pending = 0 // stop waiting for stuck injections
	case evAbort:
		r.end(ErrAborted)
		r.pending = 0
	}
	if r.ending && r.pending <= 0 {
		r.finished = true
		r.finishing.Store(true)
		if r.timer != nil {
			r.timer.Stop()
		}
		// Unblock whatever still reads or writes; the pumps and injectors
		// then see errors, which no longer matter.
		past := time.Unix(1, 0)
		for s := range r.peers {
			_ = r.peers[s].conn.SetDeadline(past)
		}
		close(r.done)
		// A parked pump has no goroutine to see the deadline: withdraw
		// its wait. One whose wake-up is under way sees the deadline.
		last := false
		for s := range r.pumps {
			if p := &r.pumps[s]; p.parked && p.cancel.Cancel() {
				p.parked, p.cancel = false, nil
				last = r.stopped()
			}
		}
		if last {
			go r.complete() // not on the caller's goroutine: it holds r.mu
		}
	}
}

// end records that the relay ends, with err, once injections are done.
// Called with r.mu held.
func (r *Relay) end(err error) {
	if !r.ending {
		r.ending, r.result = true, err
	}
}

// startTimer bounds the wait for close answers by CloseTimeout. Called with
// r.mu held.
func (r *Relay) startTimer() {
	if r.timer == nil {
		r.timer = time.AfterFunc(r.opts.CloseTimeout, func() { r.handle(event{kind: evTimeout}) })
	}
}

// inject writes Close(code, reason) to both sides at their next frame
// boundary, each on a goroutine of its own (a frame in progress toward a
// side must not hold up the other). Called with r.mu held.
func (r *Relay) inject(code uint16, reason string) {
	for s := range r.peers {
		r.peers[s].setPending(code, reason)
	}
	for s := range r.peers {
		r.pending++
		r.injectors.Go(func() {
			defer guard.Recover("websocket", func() { r.handle(event{kind: evInjected}) })
			r.peers[s].sendClose(code, reason)
			r.handle(event{kind: evInjected})
		})
	}
	r.startTimer()
}

// sendClose writes a Close frame to p at a frame boundary, unless a Close
// was already written to it or it takes no more bytes.
func (p *peer) sendClose(code uint16, reason string) {
	var b [MaxHeaderLen + MaxControlPayload]byte
	frame := AppendClose(b[:0], code, reason, p.masked)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closeSent || p.shut {
		return
	}
	p.closeSent = true
	if _, err := p.conn.Write(frame); err != nil {
		p.shut = true
	}
}

// setPending records the Close frame about to be injected toward p and
// marks p as injecting.
// It does not take p.mu, which a pump holds for a whole frame: deciding to
// inject must not wait for a slow frame. Callers hold the Relay's mu.
func (p *peer) setPending(code uint16, reason string) {
	if p.injecting.Load() {
		return // the first Close decided stays the one pending
	}
	p.pending = AppendClose(make([]byte, 0, MaxHeaderLen+MaxControlPayload), code, reason, p.masked)
	p.injecting.Store(true)
}

// shutWrite closes p's write half (when the connection supports it) to pass
// on an EOF, at a frame boundary. A Close frame pending injection is
// written first.
func (p *peer) shutWrite() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shut {
		return
	}
	if !p.closeSent && p.injecting.Load() && len(p.pending) > 0 {
		p.closeSent = true
		if _, err := p.conn.Write(p.pending); err != nil {
			p.shut = true
			return
		}
	}
	p.shut = true
	if cw, ok := p.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// run runs the pump's loop on its goroutine until it ends or parks.
func (p *pump) run() {
	r := p.relay
	parked := false
	defer func() {
		if !parked {
			p.stop(r.complete)
		}
	}()
	defer guard.Recover("websocket", p.panicked)
	err := p.loop()
	if err == errParked {
		// The wake-up may run the pump on another goroutine already:
		// nothing of it is touched here any more.
		parked = true
		return
	}
	p.in.release()
	p.relay.handle(event{kind: evDone, from: p.from, err: err})
}

// stop records that the pump stopped for good; when it is the last, the
// relay completes through complete (r.complete on the pump's goroutine, or
// a new goroutine's where the caller must not block).
func (p *pump) stop(complete func()) {
	r := p.relay
	r.mu.Lock()
	last := r.stopped()
	r.mu.Unlock()
	if last {
		complete()
	}
}

// inlineable reports whether the source may park now and have its frames
// relayed inline when woken: its destination is a socket too.
func (p *pump) inlineable() bool {
	return p.parkable() && p.toRC() != nil
}

// toRC is the destination's socket, nil when it is not one (TLS).
func (p *pump) toRC() syscall.RawConn { return p.relay.pumps[1-p.from].rc }

// parkable reports whether the source may park now: it is a socket, the
// Relay has a Parker and what was read past the handshake is relayed.
func (p *pump) parkable() bool {
	return p.rc != nil && (p.pre == nil || len(p.pre.pre) == 0)
}

// await waits, at a frame boundary with nothing buffered, for n bytes of
// the next frame. With parking it waits on the goroutine, under a read
// deadline, until the source has been quiet for at least half its wait
// (readiness.ParkWait), then parks: it returns errParked once the Parker
// holds the source.
//
// The deadline is refreshed only when less than half the wait is left
// (one runtime timer change every half wait, not two per frame), so it may
// pass inside a frame: the frame's later reads then clear it and read on
// (retryTimeout). A relay that is finishing is never waited for past its
// own (past) deadline: the flag is checked after each change of the
// deadline.
func (p *pump) await(n int) error {
	if !p.parkable() || p.in.err != nil { // an EOF or error inline read is the loop's now
		return p.in.fill(n)
	}
	if p.inlineable() {
		// The next frames are relayed inline once parked: park at once,
		// with no wait on the goroutine (a frame there already wakes it
		// at once: epoll reports the state it finds).
		if err := p.park(); err != nil {
			return err
		}
		return p.in.fill(n) // the Parker refused (it is closed)
	}
	r := p.relay
	conn := r.peers[p.from].conn
	wait := p.wait.Wait(r.opts.ParkAfter)
	now := time.Now().UnixNano()
	if p.deadline == 0 || p.deadline-now < int64(wait/2) {
		p.deadline = now + int64(wait)
		if err := conn.SetReadDeadline(time.Unix(0, p.deadline)); err != nil {
			return err
		}
		if r.finishing.Load() {
			return os.ErrDeadlineExceeded
		}
	}
	p.in.noRetry = true
	err := p.in.fill(n)
	p.in.noRetry = false
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if r.finishing.Load() {
		return err
	}
	if p.in.buffered() == 0 {
		if err := p.park(); err != nil {
			return err
		}
	}
	// A frame started, or the Parker refused (it is closed): read on
	// without a deadline.
	if !p.retryTimeout() {
		return os.ErrDeadlineExceeded
	}
	return p.in.fill(n)
}

// retryTimeout is the frame reader's answer to a read that passed the
// parking deadline: it clears the deadline and reports whether to read on
// (not when the relay is finishing: its past deadline stands).
func (p *pump) retryTimeout() bool {
	r := p.relay
	if r.finishing.Load() {
		return false
	}
	p.deadline = 0
	if err := r.peers[p.from].conn.SetReadDeadline(time.Time{}); err != nil {
		return false
	}
	return !r.finishing.Load()
}

// park hands the source to the Parker and gives back its buffer: it
// returns errParked, nil when the Parker refuses, or the error that ends a
// finishing relay's reads.
func (p *pump) park() error {
	r := p.relay
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return os.ErrDeadlineExceeded
	}
	if p.arm() != nil {
		return nil
	}
	p.deadline = 0 // it passed: the next wait sets a new one
	p.wait.Parked()
	p.in.release()
	return errParked
}

// wake runs on the Parker's goroutine once the parked source is readable.
// What the source sent is relayed there and then when it can be without
// blocking (inline), and the source parks again; otherwise the pump's loop
// runs again on a goroutine of its own, from what inline read.
func (p *pump) wake() {
	r := p.relay
	r.mu.Lock()
	p.parked = false // cancel stays: the next park may re-arm it
	finished := r.finished
	r.mu.Unlock()
	if !finished {
		// On the Parker's goroutine: a panic must not reach it. One here
		// ends the relay as on the pump's goroutine (panicked), and the
		// pump stops.
		parked, panicked := false, false
		func() {
			defer guard.Recover("websocket", func() {
				panicked = true
				p.in.release()
				p.panicked()
				p.stop(func() { go r.complete() })
			})
			parked = p.inline()
		}()
		if parked || panicked {
			return
		}
	}
	go func() {
		p.wait.Woke(r.opts.ParkAfter)
		p.run()
	}()
}

// inlineReads bounds the reads of one inline wake-up: a source that keeps
// filling the buffer is handed to a goroutine, so that one busy socket
// does not hold up the Parker's others.
const inlineReads = 4

// inline relays, on the Parker's goroutine, the frames a parked source
// sent, and parks it again; it reports false when the pump's loop must
// take over on a goroutine. It never blocks: it reads the source and
// writes the destination with non-blocking system calls outside Go's
// poller, and takes the destination's lock only if it is free. Only whole
// data and ping/pong frames whose bytes one read returned, toward a
// destination that takes more frames and takes them at once, are relayed
// here, with the rules of check; anything else (a frame cut by the read's
// end, a Close, a destination busy, closed to frames or whose socket is
// full, EOF, an error, a frame that breaks a rule) is left to the loop,
// with what was read buffered in p.in, EOF or the read's error kept for
// its next read, and a frame written in part finished first (resume).
func (p *pump) inline() (parked bool) {
	dstRC := p.toRC()
	if dstRC == nil || p.in.buf != nil {
		return false
	}
	if p.io == nil {
		p.io = newRawIO()
	}
	bp := bufPool.Get().(*[]byte)
	kept := false // the loop took *bp
	defer func() {
		if !kept {
			bufPool.Put(bp)
		}
	}()
	buf := *bp
	for range inlineReads {
		n, err := p.io.read(p.rc, buf)
		switch {
		case err == unix.EAGAIN:
			return p.repark() // woken for nothing (the data went to a read before)
		case err != nil:
			p.in.err = os.NewSyscallError("read", err)
			return false
		case n == 0:
			p.in.err = io.EOF
			return false
		}
		off, left := p.relayInline(buf[:n], dstRC)
		if off < n {
			kept = p.handOver(bp, off, n, left)
			return false
		}
		if n < len(buf) { // the read drained the socket
			return p.repark()
		}
	}
	return false // the source keeps filling the buffer: a goroutine reads on
}

// relayInline relays the whole frames at the start of b that inline may
// (see inline) and returns the bytes it consumed. When it wrote a frame
// in part, left is what remains of it (at b[off:]) and the pump holds
// its destination's mu.
func (p *pump) relayInline(b []byte, dstRC syscall.RawConn) (off, left int) {
	dst := p.to()
	for len(b)-off >= 2 {
		rest := b[off:]
		hl := sizeFromPrefix(rest[1])
		if len(rest) < hl {
			return off, 0
		}
		h, err := parseHeader(rest[:hl])
		if err != nil || h.Opcode == OpClose || h.Length > int64(len(rest)-hl) {
			return off, 0
		}
		total := hl + int(h.Length)
		if !dst.mu.TryLock() {
			return off, 0
		}
		if dst.closeSent || dst.shut || dst.injecting.Load() || p.relay.finishing.Load() || p.check(h) != nil {
			dst.mu.Unlock()
			return off, 0 // check changes nothing when it fails
		}
		p.holding = true
		k, _ := p.io.write(dstRC, rest[:total])
		k = max(k, 0)
		p.bytes.Add(int64(k))
		if k < total {
			// Full, or failed: the loop's write finishes the frame, or
			// sees the error. The lock stays: nothing may land inside
			// the frame meanwhile.
			return off + k, total - k
		}
		p.unlockDst()
		p.frames.Add(1)
		off += total
	}
	return off, 0
}

// handOver leaves to the loop what inline read into *bp past off, up to
// n, of which the first left bytes are the rest of a frame begun; it
// reports whether the loop keeps *bp as its working buffer.
func (p *pump) handOver(bp *[]byte, off, n, left int) (kept bool) {
	in := &p.in
	in.take()
	p.resume = int32(left)
	if n-off <= len(in.buf) {
		in.w = copy(in.buf, (*bp)[off:n])
		return false
	}
	in.big, in.buf = bp, *bp
	in.r, in.w = off, n
	return true
}

// repark parks the source again after inline relayed what it sent; it
// reports false when the pump's loop must take over (the relay is
// finishing, or the Parker refuses).
func (p *pump) repark() bool {
	r := p.relay
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return false
	}
	return p.arm() == nil
}

// rewaiter is a parked wait that its owner may re-arm after its wake-up
// (readiness.Waiter): parking again then allocates nothing.
type rewaiter interface {
	Cancel() bool
	Rewait() error
}

// arm hands the source to the Parker: it re-arms the wait of its last park
// when the Parker's waits allow it, else parks anew. Called with the
// Relay's mu held, by the pump's goroutine or its wake-up.
func (p *pump) arm() error {
	if rw, ok := p.cancel.(rewaiter); ok {
		if err := rw.Rewait(); err != nil {
			return err
		}
		p.parked = true
		return nil
	}
	cancel, err := p.relay.opts.Parker.Park(p.rc, p.wake)
	if err != nil {
		return err
	}
	p.parked, p.cancel = true, cancel
	return nil
}

// finishFrame writes the rest of the frame inline began (resume), with
// the destination's mu held since; it lets go of the lock.
func (p *pump) finishFrame() error {
	in := &p.in
	n := int(p.resume)
	p.resume = 0
	_, err := p.to().conn.Write(in.buf[in.r : in.r+n])
	if err != nil {
		p.to().shut = true // the destination holds part of the frame
		p.unlockDst()
		return fmt.Errorf("wsframe: writing a frame to %s: %w", sideName[1-p.from], err)
	}
	in.r += n
	p.bytes.Add(int64(n))
	p.unlockDst()
	p.frames.Add(1)
	return nil
}

// rawIO makes the inline relay's reads and writes: non-blocking system
// calls on a socket's descriptor inside its RawConn's Control (which keeps
// the descriptor from being closed meanwhile), outside Go's poller. Its
// fields carry each call's arguments and results, so that no closure is
// made per call.
type rawIO struct {
	b   []byte
	n   int
	err error
	out bool // a write, else a read
	fn  func(fd uintptr)
}

func newRawIO() *rawIO {
	o := new(rawIO)
	o.fn = o.do
	return o
}

func (o *rawIO) do(fd uintptr) {
	if o.out {
		o.n, o.err = unix.Write(int(fd), o.b)
	} else {
		o.n, o.err = unix.Read(int(fd), o.b)
	}
}

func (o *rawIO) call(rc syscall.RawConn, b []byte, write bool) (int, error) {
	o.b, o.out = b, write
	err := rc.Control(o.fn)
	n, cerr := o.n, o.err
	o.b, o.n, o.err = nil, 0, nil
	if err != nil {
		return 0, err // closed
	}
	return n, cerr
}

func (o *rawIO) read(rc syscall.RawConn, b []byte) (int, error) { return o.call(rc, b, false) }

func (o *rawIO) write(rc syscall.RawConn, b []byte) (int, error) { return o.call(rc, b, true) }

// testHookFrame, when not nil (tests only), runs as a pump starts to
// forward a frame, holding the destination's lock.
var testHookFrame func(r *Relay, h Header)

// panicked ends the relay after the pump's goroutine panicked: it lets go
// of the destination's lock if it held it and reports the pump done with
// an error, which releases every blocked read and write (a past deadline
// on both connections).
func (p *pump) panicked() {
	if p.holding {
		p.unlockDst()
	}
	p.relay.handle(event{kind: evDone, from: p.from, err: guard.ErrPanicked})
}

// lockDst and unlockDst take and release the destination's mu, recording
// it in holding.
func (p *pump) lockDst() {
	p.to().mu.Lock()
	p.holding = true
}

func (p *pump) unlockDst() {
	p.holding = false
	p.to().mu.Unlock()
}

// loop relays frames until the source ends or fails, or a frame breaks a
// rule. It returns nil on EOF at a frame boundary. It does not allocate
// unless it returns an error.
func (p *pump) loop() error {
	in := &p.in
	in.take()
	if p.resume > 0 {
		if err := p.finishFrame(); err != nil {
			return err
		}
	}
	for {
		in.shrink() // between frames: hold no working buffer while idle
		var err error
		if in.buffered() == 0 {
			err = p.await(2)
		} else {
			err = in.fill(2)
		}
		if err == errParked {
			return err
		}
		if err != nil {
			if err == io.EOF && in.buffered() == 0 {
				p.to().shutWrite()
				return nil
			}
			return p.readErr("reading a frame header", err)
		}
		hl := sizeFromPrefix(in.buf[in.r+1])
		if err := in.fill(hl); err != nil {
			return p.readErr("reading a frame header", err)
		}
		h, err := parseHeader(in.buf[in.r : in.r+hl])
		if err != nil {
			return fmt.Errorf("wsframe: frame from %s: %w", sideName[p.from], err)
		}
		if err := p.check(h); err != nil {
			return err
		}
		if err := p.relayFrame(h, hl); err != nil {
			return err
		}
	}
}

func (p *pump) readErr(what string, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("wsframe: %s from %s: %w", what, sideName[p.from], err)
}

func (p *pump) violation(format string, args ...any) error {
	return fmt.Errorf("wsframe: frame from %s: %s: %w", sideName[p.from], fmt.Sprintf(format, args...), ErrProtocol)
}

// check enforces the framing rules that depend on direction, negotiated
// extensions and fragmentation state, and tracks that state.
func (p *pump) check(h Header) error {
	switch {
	case h.Opcode.IsReserved():
		return p.violation("reserved opcode %d", h.Opcode)
	case p.from == clientSide && !h.Masked:
		return p.violation("%s frame not masked", h.Opcode)
	case p.from == backendSide && h.Masked:
		return p.violation("%s frame masked", h.Opcode)
	case h.Rsv != 0 && !p.relay.opts.Extensions:
		return p.violation("RSV bits %03b set with no extension negotiated", h.Rsv)
	}
	if h.Opcode.IsControl() {
		if !h.Fin {
			return p.violation("fragmented %s frame", h.Opcode)
		}
		if h.Length > MaxControlPayload {
			return p.violation("%s frame with %d bytes of payload (at most %d)", h.Opcode, h.Length, MaxControlPayload)
		}
		return nil // may come between the fragments of a message
	}
	if h.Length > p.relay.opts.MaxFrame {
		return fmt.Errorf("wsframe: frame from %s: %d bytes of payload, more than %d: %w",
			sideName[p.from], h.Length, p.relay.opts.MaxFrame, ErrTooLarge)
	}
	if h.Opcode == OpContinuation {
		if !p.frag {
			return p.violation("continuation frame with no fragmented message started")
		}
	} else if p.frag {
		return p.violation("%s frame inside a fragmented message", h.Opcode)
	}
	p.frag = !h.Fin
	return nil
}

// relayFrame forwards or drops the frame whose hl header bytes are buffered
// at p.in.buf[p.in.r:], header h. A frame that fits the buffer is read
// whole before the destination is locked; a larger one is streamed while
// it is locked. Either way the destination stays locked from the first
// byte written to the last, so that nothing else lands inside the frame.
func (p *pump) relayFrame(h Header, hl int) error {
	in := &p.in
	total := uint64(hl) + uint64(h.Length) // h.Length >= 0: no overflow
	if total > uint64(len(in.buf)) {
		in.grow()
	}
	if total <= uint64(len(in.buf)) {
		if err := in.fill(int(total)); err != nil {
			return p.readErr("reading a frame", err)
		}
	}
	dst := p.to()
	p.lockDst()
	if testHookFrame != nil {
		testHookFrame(p.relay, h)
	}
	if dst.closeSent || dst.shut || dst.injecting.Load() {
		// The destination takes no more frames: drop this one.
		p.unlockDst()
		for total > 0 {
			if in.buffered() == 0 {
				if err := in.fill(1); err != nil {
					return p.readErr("reading a frame", err)
				}
			}
			n := min(uint64(in.buffered()), total)
			in.r += int(n)
			total -= n
		}
		p.noteClose(h)
		return nil
	}
	var err error
	for total > 0 {
		if in.buffered() == 0 {
			if rerr := in.fill(1); rerr != nil {
				err = p.readErr("reading a frame", rerr)
				break
			}
		}
		n := min(uint64(in.buffered()), total)
		if _, werr := dst.conn.Write(in.buf[in.r : in.r+int(n)]); werr != nil {
			err = fmt.Errorf("wsframe: writing a frame to %s: %w", sideName[1-p.from], werr)
			break
		}
		in.r += int(n)
		total -= n
		p.bytes.Add(int64(n))
	}
	if err != nil {
		// The destination may hold part of the frame now.
		dst.shut = true
		p.unlockDst()
		return err
	}
	if h.Opcode == OpClose {
		dst.closeSent = true
	}
	p.unlockDst()
	p.frames.Add(1)
	p.noteClose(h)
	return nil
}

// noteClose reports the source's first Close frame to Run.
func (p *pump) noteClose(h Header) {
	if h.Opcode == OpClose && !p.closed {
		p.closed = true
		p.relay.handle(event{kind: evClose, from: p.from})
	}
}

// frameReader buffers one direction's input. Unread bytes are
// buf[r:w]; a frame that fits buf is made contiguous in it so it can be
// written with one call straight from the buffer.
type frameReader struct {
	src   io.Reader
	buf   []byte // *small, or *big; nil before take and after release
	r, w  int
	err   error   // sticky: the error src returned, but a deadline's
	small *[]byte // the pooled small buffer, if taken
	big   *[]byte // the pooled working buffer buf is, if any
	// owner, when set, is asked what to do about a read that passed a
	// deadline (retryTimeout): true reads on. noRetry (the wait for a
	// frame) returns such a read's error at once.
	owner   *pump
	noRetry bool
}

// take gets the small buffer, if the reader holds none (it is new, or was
// parked with nothing buffered).
func (f *frameReader) take() {
	if f.buf == nil {
		f.small = smallPool.Get().(*[]byte)
		f.buf = *f.small
		f.r, f.w = 0, 0
	}
}

// grow moves what is buffered into a pooled working buffer, if buf is the
// small one.
func (f *frameReader) grow() {
	if f.big != nil {
		return
	}
	f.big = bufPool.Get().(*[]byte)
	f.w = copy(*f.big, f.buf[f.r:f.w])
	f.r = 0
	f.buf = *f.big
}

// shrink gives the working buffer back when nothing is buffered.
func (f *frameReader) shrink() {
	if f.big == nil || f.r != f.w {
		return
	}
	bufPool.Put(f.big)
	f.big = nil
	f.buf = *f.small
	f.r, f.w = 0, 0
}

func (f *frameReader) buffered() int { return f.w - f.r }

// fill reads until at least n bytes (n <= len(buf)) are buffered,
// contiguous from buf[r]. It returns src's error, unwrapped, if src fails
// first.
func (f *frameReader) fill(n int) error {
	for f.w-f.r < n {
		if f.err != nil {
			return f.err
		}
		if f.r == f.w {
			f.r, f.w = 0, 0
		} else if f.r+n > len(f.buf) {
			f.w = copy(f.buf, f.buf[f.r:f.w])
			f.r = 0
		}
		m, err := f.src.Read(f.buf[f.w:])
		f.w += m
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			// Not sticky: the deadline may be the parking one (see
			// pump.await).
			if !f.noRetry && f.owner != nil && f.owner.retryTimeout() {
				continue
			}
			return err
		}
		f.err = err
	}
	return nil
}

// release gives both buffers back: the pump is done, or parked with
// nothing buffered.
func (f *frameReader) release() {
	if f.big != nil {
		bufPool.Put(f.big)
		f.big = nil
	}
	if f.small != nil {
		smallPool.Put(f.small)
		f.small = nil
	}
	f.buf = nil
}

// prefixReader reads pre, then r.
type prefixReader struct {
	pre []byte
	r   io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.r.Read(b)
}
