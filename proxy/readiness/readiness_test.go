package readiness

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns the two ends of a loopback TCP connection.
func pair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { c.Close(); r.c.Close() })
	return c.(*net.TCPConn), r.c.(*net.TCPConn)
}

func rawConn(t testing.TB, c *net.TCPConn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func newPoller(t testing.TB) *Poller {
	t.Helper()
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// awaitWake fails the test unless ch gets a value within a few seconds.
func awaitWake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("no wake-up %s", what)
	}
}

func TestWakesOnData(t *testing.T) {
	p := newPoller(t)
	a, b := pair(t)
	woke := make(chan struct{}, 1)
	if _, err := p.Wait(rawConn(t, a), func() { woke <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if n := p.Parked(); n != 1 {
		t.Fatalf("Parked() = %d, want 1", n)
	}
	select {
	case <-woke:
		t.Fatal("woken before any data")
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := b.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	awaitWake(t, woke, "after the peer wrote")
	if n := p.Parked(); n != 0 {
		t.Fatalf("Parked() = %d after the wake-up, want 0", n)
	}
	// The socket is usable through the runtime's poller afterwards, and
	// can be parked again: the data is still unread, so at once.
	if _, err := p.Wait(rawConn(t, a), func() { woke <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	awaitWake(t, woke, "for data already there")
	buf := make([]byte, 4)
	if n, err := a.Read(buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("read %q, %v; want x", buf[:n], err)
	}
}

func TestWakesOnEOFAndReset(t *testing.T) {
	p := newPoller(t)
	for _, how := range []string{"eof", "reset"} {
		t.Run(how, func(t *testing.T) {
			a, b := pair(t)
			woke := make(chan struct{}, 1)
			if _, err := p.Wait(rawConn(t, a), func() { woke <- struct{}{} }); err != nil {
				t.Fatal(err)
			}
			if how == "reset" {
				b.SetLinger(0)
			}
			b.Close()
			awaitWake(t, woke, "after the peer's "+how)
		})
	}
}

func TestCancel(t *testing.T) {
	p := newPoller(t)
	a, b := pair(t)
	woke := make(chan struct{}, 1)
	w, err := p.Wait(rawConn(t, a), func() { woke <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if !w.Cancel() {
		t.Fatal("Cancel() = false before any event")
	}
	if w.Cancel() {
		t.Fatal("second Cancel() = true")
	}
	b.Write([]byte("x"))
	// A second socket's wake-up shows that the loop ran past the first
	// one's data without waking it.
	c, d := pair(t)
	woke2 := make(chan struct{}, 1)
	if _, err := p.Wait(rawConn(t, c), func() { woke2 <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("y"))
	awaitWake(t, woke2, "of the second socket")
	select {
	case <-woke:
		t.Fatal("a cancelled wait was woken")
	default:
	}
	if n := p.Parked(); n != 0 {
		t.Fatalf("Parked() = %d, want 0", n)
	}
}

func TestCancelAfterWake(t *testing.T) {
	p := newPoller(t)
	a, b := pair(t)
	woke := make(chan struct{}, 1)
	w, err := p.Wait(rawConn(t, a), func() { woke <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	b.Write([]byte("x"))
	awaitWake(t, woke, "after data")
	if w.Cancel() {
		t.Fatal("Cancel() = true after wake ran")
	}
}

func TestCloseWakesParked(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	woke := make(chan struct{}, n)
	for range n {
		a, _ := pair(t)
		if _, err := p.Wait(rawConn(t, a), func() { woke <- struct{}{} }); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if len(woke) != n {
		t.Fatalf("%d of %d parked sockets woken by Close", len(woke), n)
	}
	a, _ := pair(t)
	if _, err := p.Wait(rawConn(t, a), func() {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close: %v, want ErrClosed", err)
	}
}

func TestWaitOnClosedSocket(t *testing.T) {
	p := newPoller(t)
	a, _ := pair(t)
	rc := rawConn(t, a)
	a.Close()
	if _, err := p.Wait(rc, func() { t.Error("woken") }); err == nil {
		t.Fatal("Wait on a closed socket succeeded")
	}
	if n := p.Parked(); n != 0 {
		t.Fatalf("Parked() = %d, want 0", n)
	}
}

// TestManySockets parks many sockets and wakes them all, in batches
// larger than one epoll_wait's.
func TestManySockets(t *testing.T) {
	p := newPoller(t)
	const n = 300
	woke := make(chan int, n)
	peers := make([]*net.TCPConn, n)
	for i := range n {
		a, b := pair(t)
		peers[i] = b
		if _, err := p.Wait(rawConn(t, a), func() { woke <- i }); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range peers {
		b.Write([]byte("x"))
	}
	seen := make(map[int]bool)
	for range n {
		select {
		case i := <-woke:
			if seen[i] {
				t.Fatalf("socket %d woken twice", i)
			}
			seen[i] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d woken", len(seen), n)
		}
	}
}

func TestIDRoundTrip(t *testing.T) {
	for _, id := range []uint64{0, 1, 1<<31 + 5, 1<<32 - 1, 1 << 32, 1<<63 + 12345} {
		e := new(unix.EpollEvent)
		setID(e, id)
		if got := getID(e); got != id {
			t.Errorf("id %d round-trips to %d", id, got)
		}
	}
}

func TestNoGoroutineUntilWait(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	// goleak (TestMain) would see a goroutine left; Close with none
	// started must not wait for one either.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestWakeDuringWake: sockets that turn readable while the Poller's
// goroutine runs wake functions (each wake function makes the next socket
// of a chain readable, and parks its own again) are woken, every one,
// round after round: an event that comes after the goroutine's last wait
// is never lost, whether or not that wait drained the set.
func TestWakeDuringWake(t *testing.T) {
	const links, rounds = 150, 20 // more links than one wait takes (128)
	p := newPoller(t)
	ends := make([]*net.TCPConn, links)  // parked
	peers := make([]*net.TCPConn, links) // written to wake them
	for i := range links {
		peers[i], ends[i] = pair(t)
	}
	done := make(chan struct{})
	ws := make([]*Waiter, links)
	one := []byte{1}
	for i := range links {
		round := 0
		wake := func() {
			// Drain the byte without blocking, then pass it on.
			var b [1]byte
			_ = rawConn(t, ends[i]).Read(func(fd uintptr) bool { _, _ = unix.Read(int(fd), b[:]); return true })
			round++
			if i == links-1 && round == rounds {
				close(done)
				return
			}
			if round < rounds || i < links-1 {
				if _, err := peers[(i+1)%links].Write(one); err != nil {
					t.Error(err)
				}
			}
			if round < rounds {
				if err := ws[i].Rewait(); err != nil {
					t.Error(err)
				}
			}
		}
		w, err := p.Wait(rawConn(t, ends[i]), wake)
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = w
	}
	if _, err := peers[0].Write(one); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the chain of %d sockets stalled before %d rounds", links, rounds)
	}
}
