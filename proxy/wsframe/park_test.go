package wsframe

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/proxy/readiness"
)

// parkAfter is short so that every pause of these tests parks.
const parkAfter = 5 * time.Millisecond

func TestParkedRelayHoldsNoGoroutine(t *testing.T) {
	pk := proxytest.NewPoller(t)
	rr := startRaw(t, Options{Parker: pk, ParkAfter: parkAfter}, nil, nil)
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	// Frames each way wake the directions, which park again after.
	for i := range 5 {
		up, down := fromClient(OpText, strings.Repeat("u", i*100)), fromServer(OpBinary, strings.Repeat("d", i*300))
		write(t, rr.client, up)
		if got := readExactly(t, rr.backend, len(up)); !bytes.Equal(got, up) {
			t.Fatalf("round %d: backend got %x, want %x", i, got, up)
		}
		write(t, rr.backend, down)
		if got := readExactly(t, rr.client, len(down)); !bytes.Equal(got, down) {
			t.Fatalf("round %d: client got %x, want %x", i, got, down)
		}
		proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	}
	if fu, fd, _, _ := rr.relay.Stats(); fu != 5 || fd != 5 {
		t.Errorf("frames forwarded: got %d up %d down, want 5 5", fu, fd)
	}
	// An EOF wakes the parked direction and is passed on as before.
	rr.client.(interface{ CloseWrite() error }).CloseWrite()
	expectEOF(t, rr.backend)
	rr.backend.Close()
	if err := rr.wait(t); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
}

func TestParkedMigrate(t *testing.T) {
	pk := proxytest.NewPoller(t)
	rr := startRaw(t, Options{Parker: pk, ParkAfter: parkAfter}, nil, nil)
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	rr.relay.Migrate(1012, "service restart")
	expectClose(t, rr.client, 1012, false)
	expectClose(t, rr.backend, 1012, true)
	// The answers wake the parked directions, which absorb them.
	write(t, rr.client, fromClient(OpClose, closePayload(1012, "")))
	write(t, rr.backend, fromServer(OpClose, closePayload(1012, "")))
	if err := rr.wait(t); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
	if n := pk.Parked(); n != 0 {
		t.Errorf("parked after the relay ended: %d, want 0", n)
	}
}

// TestParkedCloseTimeout: neither side answers the injected Close; the
// close timeout ends the relay although both directions are parked.
func TestParkedCloseTimeout(t *testing.T) {
	pk := proxytest.NewPoller(t)
	rr := startRaw(t, Options{Parker: pk, ParkAfter: parkAfter, CloseTimeout: 100 * time.Millisecond}, nil, nil)
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	start := time.Now()
	rr.relay.Migrate(1001, "going away")
	expectClose(t, rr.client, 1001, false)
	expectClose(t, rr.backend, 1001, true)
	if err := rr.wait(t); !errors.Is(err, ErrCloseTimeout) {
		t.Errorf("Run: got %v, want ErrCloseTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("relay ended %v after Migrate, want about the 100ms close timeout", d)
	}
	if n := pk.Parked(); n != 0 {
		t.Errorf("parked after the relay ended: %d, want 0", n)
	}
}

func TestParkedAbort(t *testing.T) {
	pk := proxytest.NewPoller(t)
	rr := startRaw(t, Options{Parker: pk, ParkAfter: parkAfter}, nil, nil)
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	rr.relay.Abort()
	if err := rr.wait(t); !errors.Is(err, ErrAborted) {
		t.Errorf("Run: got %v, want ErrAborted", err)
	}
	if n := pk.Parked(); n != 0 {
		t.Errorf("parked after Abort: %d, want 0", n)
	}
}

// TestAbortWhileRelaying: Abort releases directions blocked on their
// goroutines too (no Parker).
func TestAbortWhileRelaying(t *testing.T) {
	rr := startRaw(t, Options{}, nil, nil)
	write(t, rr.client, fromClient(OpText, "x"))
	readExactly(t, rr.backend, len(fromClient(OpText, "x")))
	rr.relay.Abort()
	if err := rr.wait(t); !errors.Is(err, ErrAborted) {
		t.Errorf("Run: got %v, want ErrAborted", err)
	}
}

// TestParkedSlowFrames sends frames byte by byte with pauses longer than
// ParkAfter inside headers and payloads: a pause inside a frame does not
// park it or cut it, and every byte arrives in order.
func TestParkedSlowFrames(t *testing.T) {
	pk := proxytest.NewPoller(t)
	rr := startRaw(t, Options{Parker: pk, ParkAfter: parkAfter}, nil, nil)
	var want []byte
	for i := range 3 {
		want = append(want, fromClient(OpBinary, strings.Repeat(string(rune('a'+i)), 130))...)
	}
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(want))
		rr.backend.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.ReadFull(rr.backend, b)
		got <- b[:n]
	}()
	for off := 0; off < len(want); {
		n := min(1+rand.IntN(60), len(want)-off)
		write(t, rr.client, want[off:off+n])
		off += n
		time.Sleep(2 * parkAfter) // longer than ParkAfter, inside a frame or not
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("backend got %d bytes, want %d, equal=%v", len(b), len(want), bytes.Equal(b, want))
	}
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump) // counted before it parked
	if fu, _, _, _ := rr.relay.Stats(); fu != 3 {
		t.Errorf("frames forwarded up: got %d, want 3", fu)
	}
}

// TestParkerClosedWakesRelays: a Parker closed under parked relays wakes
// them; they go on relaying on their goroutines.
func TestParkerClosedWakesRelays(t *testing.T) {
	pk, err := readiness.New()
	if err != nil {
		t.Fatal(err)
	}
	rr := startRaw(t, Options{Parker: pk, ParkAfter: parkAfter}, nil, nil)
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	if err := pk.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * parkAfter) // the directions try to park again and are refused
	up := fromClient(OpText, "after the parker closed")
	write(t, rr.client, up)
	if got := readExactly(t, rr.backend, len(up)); !bytes.Equal(got, up) {
		t.Fatalf("backend got %x, want %x", got, up)
	}
	if n := proxytest.Goroutines(t, proxytest.WSPump); n != 2 {
		t.Errorf("pump goroutines: %d, want 2 (no parking without a Parker)", n)
	}
}

// TestParkedRelaysInline: small frames reaching a parked direction are
// relayed on the Parker's goroutine, and the direction parks again: a
// steady exchange of messages starts no pump goroutine.
func TestParkedRelaysInline(t *testing.T) {
	pk := proxytest.NewPoller(t)
	rr := startRaw(t, Options{Parker: pk, ParkAfter: parkAfter}, nil, nil)
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	const rounds = 40
	for i := range rounds {
		up, down := fromClient(OpText, strings.Repeat("u", 1+i*7)), fromServer(OpBinary, strings.Repeat("d", 1+i*11))
		write(t, rr.client, cat(fromClient(OpPing, "p"), up))
		if got, want := readExactly(t, rr.backend, len(up)+len(fromClient(OpPing, "p"))), cat(fromClient(OpPing, "p"), up); !bytes.Equal(got, want) {
			t.Fatalf("round %d: backend got %x, want %x", i, got, want)
		}
		write(t, rr.backend, down)
		if got := readExactly(t, rr.client, len(down)); !bytes.Equal(got, down) {
			t.Fatalf("round %d: client got %x, want %x", i, got, down)
		}
		if n := proxytest.Goroutines(t, proxytest.WSPump); n != 0 {
			t.Fatalf("round %d: %d pump goroutines, want none (relayed inline)", i, n)
		}
	}
	// Parked again: each direction counted its frames before it parked.
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	if fu, fd, _, _ := rr.relay.Stats(); fu != 2*rounds || fd != rounds {
		t.Errorf("frames forwarded: %d up, %d down; want %d, %d", fu, fd, 2*rounds, rounds)
	}
	rr.client.Close()
	rr.backend.Close()
	if err := rr.wait(t); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
}

// TestParkedFullDestination: a parked direction whose destination stops
// reading fills its socket. The frame the inline relay could write only in
// part is finished on a goroutine, nothing lands inside it, and every
// frame arrives whole and in order once the destination reads again.
func TestParkedFullDestination(t *testing.T) {
	pk := proxytest.NewPoller(t)
	cPeer, cRelay := tcpPair(t)
	bRelay, bPeer := tcpPair(t)
	defer cPeer.Close()
	defer bPeer.Close()
	// Small socket buffers toward the backend, which does not read: a few
	// frames fill them.
	bRelay.(*net.TCPConn).SetWriteBuffer(16 << 10)
	bPeer.(*net.TCPConn).SetReadBuffer(16 << 10)
	r := New(cRelay, nil, bRelay, nil, Options{Parker: pk, ParkAfter: parkAfter})
	done := make(chan error, 1)
	if err := r.Start(func(err error) { cRelay.Close(); bRelay.Close(); done <- err }); err != nil {
		t.Fatal(err)
	}
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	// Frames one at a time, each relayed inline while the direction is
	// parked, until one meets the full socket: its direction then stays
	// on a goroutine, blocked writing.
	var want []byte
	blocked := false
	for i := 0; i < 2000 && !blocked; i++ {
		f := fromClient(OpBinary, strings.Repeat(string(rune('a'+i%26)), 7000+i%100))
		want = append(want, f...)
		write(t, cPeer, f)
		deadline := time.Now().Add(time.Second)
		for pk.Parked() != 2 || proxytest.Goroutines(t, proxytest.WSPump) != 0 {
			if time.Now().After(deadline) {
				blocked = true // a direction is blocked writing the frame's rest
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	if !blocked {
		t.Fatalf("sent %d bytes and every frame was relayed inline: the destination never filled", len(want))
	}
	// More frames behind it, then the backend reads everything.
	for i := range 20 {
		f := fromClient(OpText, strings.Repeat("z", 10+i))
		want = append(want, f...)
		write(t, cPeer, f)
	}
	if got := readExactly(t, bPeer, len(want)); !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("backend got %d bytes differing from byte %d", len(got), i)
	}
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	cPeer.Close()
	bPeer.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("relay: got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("relay still running 10s after both peers closed")
	}
}

// TestParkedViolation: a frame that breaks a rule reaching a parked
// direction ends the relay with Close 1002 both ways, as on a goroutine;
// a fragmented message before it is relayed.
func TestParkedViolation(t *testing.T) {
	pk := proxytest.NewPoller(t)
	rr := startRaw(t, Options{Parker: pk, ParkAfter: parkAfter}, nil, nil)
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	frag := cat(wire(false, OpText, []byte("he"), true), wire(false, OpContinuation, []byte("l"), true), wire(true, OpContinuation, []byte("lo"), true))
	write(t, rr.client, frag)
	if got := readExactly(t, rr.backend, len(frag)); !bytes.Equal(got, frag) {
		t.Fatalf("backend got %x, want %x", got, frag)
	}
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	write(t, rr.client, wire(true, OpContinuation, []byte("x"), true)) // no message started
	expectClose(t, rr.client, 1002, false)
	expectClose(t, rr.backend, 1002, true)
	rr.client.Close()
	rr.backend.Close()
	if err := rr.wait(t); !errors.Is(err, ErrProtocol) {
		t.Errorf("Run: got %v, want ErrProtocol", err)
	}
}

// TestParkedBurstPastInlineReads: a burst of small frames larger than the
// inline relay's reads of one wake-up (inlineReads of the 16 KiB buffer)
// reaches a parked direction: the rest goes on a goroutine, every frame
// arrives whole and in order, and the direction parks again after.
func TestParkedBurstPastInlineReads(t *testing.T) {
	pk := proxytest.NewPoller(t)
	rr := startRaw(t, Options{Parker: pk, ParkAfter: parkAfter}, nil, nil)
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	var want []byte
	// 1024-byte frames (8 header bytes, 1016 of payload): the relay's
	// reads end at frame boundaries, so it reads full buffers inline
	// until the bound hands the rest to a goroutine.
	const frames = 400 // 400 KiB: 6 times what one wake-up reads inline
	for i := range frames {
		f := fromClient(OpBinary, strings.Repeat(string(rune('a'+i%26)), 1016))
		if len(f) != 1024 {
			t.Fatalf("frame of %d bytes, want 1024", len(f))
		}
		want = append(want, f...)
	}
	if len(want) <= 2*inlineReads*bufSize {
		t.Fatalf("burst of %d bytes, want more than twice the %d one wake-up reads", len(want), inlineReads*bufSize)
	}
	go rr.client.Write(want) // one write: the bytes queue at once
	if got := readExactly(t, rr.backend, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("backend got %d bytes, not the %d sent in order", len(got), len(want))
	}
	proxytest.AwaitParked(t, pk, 2, proxytest.WSPump)
	if fu, _, _, _ := rr.relay.Stats(); fu != frames {
		t.Errorf("frames forwarded up: %d, want %d", fu, frames)
	}
}
