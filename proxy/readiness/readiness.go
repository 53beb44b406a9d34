// Package readiness waits for many sockets to become readable on one
// goroutine, so that a connection with nothing to do holds no goroutine
// and no buffer of its own.
//
// Go's runtime poller wakes a goroutine that is blocked reading a socket;
// keeping a goroutine blocked per idle socket costs its stack (4 to 8 KiB
// for a relay's read path). A Poller instead keeps one epoll instance of
// its own, and one goroutine that waits for its events: a caller parks a socket
// with Wait and lets its goroutine end, and the Poller calls the wake
// function it was given once the socket is readable, has hung up or failed.
// The wake function typically starts a goroutine that reads; one whose
// work is short and cannot block (non-blocking reads and writes of a small
// message) may do it there and then and wait again.
//
// A socket is armed for one wake-up (EPOLLONESHOT): the event disarms it,
// and it stays in the epoll set, disarmed, until its next Wait arms it
// again (one epoll_ctl, EPOLL_CTL_MOD; the first Wait of a socket adds it)
// or Cancel removes it. A socket that waits again right after each wake-up
// (a relay that handles each message on the wake-up itself) then costs one
// epoll_ctl per wait. The runtime poller keeps serving the same sockets
// while goroutines read them: both epoll instances may hold a socket at
// once, and a disarmed socket in this one costs nothing until it is closed,
// when the kernel drops it.
//
// A parked socket closed by its owner is dropped from the epoll set by the
// kernel without an event: whoever closes a parked socket must Cancel its
// wait first (or be sure that wake ran), or wake never runs.
//
// Linux only, as the rest of longhaul's socket code.
package readiness

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Wait after Close.
var ErrClosed = errors.New("readiness: poller closed")

// Poller parks sockets until they are readable. Create it with New; its
// goroutine starts with the first Wait and runs until Close, so a Poller
// nothing parks on costs two descriptors and no goroutine. Safe for
// concurrent use.
type Poller struct {
	epfd   int
	ep     *os.File        // epfd, in Go's poller; closed by Close
	eprc   syscall.RawConn // ep's, for the goroutine's waits
	wakefd int             // an eventfd in the set, that ends the goroutine on Close

	// mu guards slots, free, gen, started and closed. It is never held
	// while wake functions run, nor across a system call other than
	// epoll_ctl.
	//
	// slots holds the parked Waiters, free the indexes of its empty
	// slots: a Waiter's id is its slot's index + 1 in the low 32 bits
	// and a generation in the high ones, so an event for a wait that
	// ended (cancelled meanwhile) never reaches the slot's next Waiter.
	// A slice rather than a map: it costs 8 bytes a parked socket.
	mu      sync.Mutex
	slots   []*Waiter
	free    []uint32
	gen     uint32
	started bool // the goroutine runs (or ran)
	closed  bool
	// closeOnce makes Close idempotent.
	closeOnce sync.Once
	closeErr  error

	parked atomic.Int64 // sockets parked now
	done   chan struct{}
}

// Waiter is one parked socket, as Wait returned it. Its owner may park
// the socket again with Rewait once wake has run, reusing the Waiter.
type Waiter struct {
	p    *Poller
	id   uint64
	rc   syscall.RawConn
	wake func()
	// ctlFn is ctl as a method value, made once: a wait then makes no
	// closure. errno is ctl's result. Both are used under p.mu.
	ctlFn func(fd uintptr)
	errno unix.Errno
}

// ctl arms w's socket for w.id, inside rc.Control (the descriptor cannot
// be closed meanwhile): it re-arms a socket that waited before (it stays
// in the set, disarmed, after its event) and adds one that never did, or
// was removed. Called with p.mu held.
func (w *Waiter) ctl(fd uintptr) {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
	setID(&ev, w.id)
	err := unix.EpollCtl(w.p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
	if err == unix.ENOENT {
		err = unix.EpollCtl(w.p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}
	w.errno = 0
	if err != nil {
		w.errno = err.(unix.Errno)
	}
}

// wakeID is the epoll event data of the eventfd.
const wakeID = 0

// New creates a Poller.
func New() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("readiness: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("readiness: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setID(&ev, wakeID)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("readiness: registering the eventfd: %w", err)
	}
	// The epoll descriptor itself waits in Go's poller (it is readable
	// while events are ready): the goroutine parks there between events
	// instead of blocking a thread in epoll_wait, and one wake-up of the
	// runtime's poller serves both a socket's own event there and this
	// set's.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("readiness: epoll descriptor: %w", err)
	}
	ep := os.NewFile(uintptr(epfd), "readiness-epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		unix.Close(wakefd)
		return nil, fmt.Errorf("readiness: epoll descriptor: %w", err)
	}
	return &Poller{epfd: epfd, ep: ep, eprc: rc, wakefd: wakefd, done: make(chan struct{})}, nil
}

// Parked returns the number of sockets parked now.
func (p *Poller) Parked() int { return int(p.parked.Load()) }

// Wait parks the socket of rc: once it is readable (data, EOF, a reset or
// an error), the Poller's goroutine calls wake, once. wake must not block:
// it should hand the work to a goroutine. If the socket is readable
// already, wake is called at once (epoll reports the state it finds).
//
// The returned Waiter's Cancel withdraws the wait. Wait fails on a closed
// socket or a closed Poller; wake is then never called.
func (p *Poller) Wait(rc syscall.RawConn, wake func()) (*Waiter, error) {
	w := &Waiter{p: p, rc: rc, wake: wake}
	w.ctlFn = w.ctl
	if err := w.arm(); err != nil {
		return nil, err
	}
	return w, nil
}

// Rewait parks w's socket again, for the same wake, without allocating:
// for an owner whose wake function parks its socket once more after each
// wake-up. It may be called only after wake has run (or after Cancel
// returned true), by w's owner, not twice at once.
func (w *Waiter) Rewait() error { return w.arm() }

// arm gives w a slot and a new id and arms its socket. The epoll_ctl is
// made under p.mu, so that an event for the new id (which needs p.mu to
// find its slot) is never handled before arm knows the call succeeded.
func (w *Waiter) arm() error {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if !p.started {
		p.started = true
		go p.loop()
	}
	var i uint32
	if n := len(p.free); n > 0 {
		i, p.free = p.free[n-1], p.free[:n-1]
		p.slots[i] = w
	} else {
		i = uint32(len(p.slots))
		p.slots = append(p.slots, w)
	}
	p.gen++
	w.id = uint64(p.gen)<<32 | uint64(i+1)
	p.parked.Add(1)
	err := w.rc.Control(w.ctlFn)
	if err == nil && w.errno != 0 {
		err = w.errno
	}
	if err != nil {
		p.forgetLocked(w.id)
		return fmt.Errorf("readiness: parking a socket: %w", err)
	}
	return nil
}

// Cancel withdraws the wait. It reports whether it did so before wake was
// called: true means wake will never run; false means wake ran or is about
// to. Cancel may be called more than once, and from wake itself.
func (w *Waiter) Cancel() bool {
	if w.p.forget(w.id) == nil {
		return false
	}
	w.unregister()
	return true
}

// unregister removes the socket from the epoll set. The socket may be
// closed by now (Control then fails), in which case the kernel removed it.
func (w *Waiter) unregister() {
	_ = w.rc.Control(func(fd uintptr) { _ = unix.EpollCtl(w.p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
}

// forget removes id's Waiter from its slot and returns it, or nil if the
// wait ended already.
func (p *Poller) forget(id uint64) *Waiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forgetLocked(id)
}

// forgetLocked is forget with p.mu held.
func (p *Poller) forgetLocked(id uint64) *Waiter {
	i := uint32(id) - 1
	if uint64(i) >= uint64(len(p.slots)) {
		return nil
	}
	w := p.slots[i]
	if w == nil || w.id != id {
		return nil
	}
	p.slots[i] = nil
	p.free = append(p.free, i)
	p.parked.Add(-1)
	return w
}

// loop is the Poller's goroutine: it waits for events and runs the wake
// functions of the sockets they name, until Close.
func (p *Poller) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	// serve runs inside one RawConn.Read for the Poller's whole life: it
	// takes what is ready without blocking and runs the wake functions;
	// with nothing ready, or after a wait that drained the set (fewer
	// events than room for), it returns false and the goroutine parks in
	// Go's poller until epfd turns readable. Go's poller watches epfd
	// edge-triggered and keeps an edge that comes while no one waits, for
	// the next wait of the same Read (a new Read would discard it, hence
	// one Read): every event the set gets after a wait, while the wake
	// functions run, wakes it again, so none is missed, and a drained set
	// costs no wait that would find nothing. It returns true when the
	// Poller is to stop.
	serve := func(fd uintptr) bool {
		for {
			n, werr := unix.EpollWait(int(fd), events, 0)
			if werr == unix.EINTR {
				continue
			}
			if werr != nil {
				return true
			}
			for i := range events[:n] {
				id := getID(&events[i])
				if id == wakeID {
					return true
				}
				if w := p.forget(id); w != nil { // else cancelled meanwhile
					w.wake() // the event disarmed the socket: it stays in the set
				}
			}
			if n < len(events) {
				return false
			}
		}
	}
	// Read returns when serve says stop (Close, or a broken epoll
	// descriptor) or when epfd fails in Go's poller. Either way every wait
	// ends, so that nothing stays parked for good.
	_ = p.eprc.Read(serve)
	p.shutdown()
}

// shutdown marks the Poller closed and wakes every socket still parked:
// their owners read them and see what there is (data, EOF, or nothing
// yet, in which case they block on the runtime poller as usual).
func (p *Poller) shutdown() {
	p.mu.Lock()
	p.closed = true
	var ws []*Waiter
	for _, w := range p.slots {
		if w != nil {
			ws = append(ws, w)
		}
	}
	p.slots, p.free = nil, nil
	p.parked.Store(0)
	p.mu.Unlock()
	for _, w := range ws {
		w.unregister()
		w.wake()
	}
}

// Close stops the Poller's goroutine and returns once it has ended. Every
// socket still parked is woken first (see shutdown); Wait fails from then
// on. Calls after the first return the first's result.
func (p *Poller) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		started := p.started
		p.closed = true
		p.mu.Unlock()
		if started {
			one := [8]byte{1}
			if _, err := unix.Write(p.wakefd, one[:]); err != nil && err != unix.EAGAIN {
				p.closeErr = fmt.Errorf("readiness: waking the poller: %w", err)
				return
			}
			<-p.done
		}
		p.closeErr = errors.Join(p.ep.Close(), unix.Close(p.wakefd))
	})
	return p.closeErr
}

// setID and getID store a wait's id in an epoll event's 8 bytes of data.
func setID(ev *unix.EpollEvent, id uint64) {
	ev.Fd = int32(id)
	ev.Pad = int32(id >> 32)
}

func getID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// Park is Wait for callers that keep only the means to cancel.
func (p *Poller) Park(rc syscall.RawConn, wake func()) (interface{ Cancel() bool }, error) {
	w, err := p.Wait(rc, wake)
	if err != nil {
		return nil, err // not a nil *Waiter in an interface
	}
	return w, nil
}
