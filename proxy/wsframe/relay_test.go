package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// wire builds one frame; a masked one uses testMask.
func wire(fin bool, op Opcode, payload []byte, masked bool) []byte {
	h := Header{Fin: fin, Opcode: op, Masked: masked, Mask: testMask, Length: int64(len(payload))}
	b := AppendHeader(nil, h)
	start := len(b)
	b = append(b, payload...)
	if masked {
		MaskBytes(testMask, 0, b[start:])
	}
	return b
}

// fromClient builds a final, masked frame as a client sends it.
func fromClient(op Opcode, payload string) []byte { return wire(true, op, []byte(payload), true) }

// fromServer builds a final, unmasked frame as a server sends it.
func fromServer(op Opcode, payload string) []byte { return wire(true, op, []byte(payload), false) }

func closePayload(code uint16, reason string) string {
	return string(binary.BigEndian.AppendUint16(nil, code)) + reason
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (dialed, accepted net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			c = nil
		}
		ch <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	if a == nil {
		d.Close()
		t.Fatal("accept failed")
	}
	return d, a
}

// rawRelay runs a Relay between two loopback connections whose far ends,
// client and backend, the test drives byte by byte.
type rawRelay struct {
	client, backend net.Conn // the test's ends
	relay           *Relay
	done            chan error
}

func startRaw(t testing.TB, o Options, clientBuf, backendBuf []byte) *rawRelay {
	return startRawWith(t, o, clientBuf, backendBuf, func(r *Relay) {})
}

func startRawWith(t testing.TB, o Options, clientBuf, backendBuf []byte, beforeRun func(*Relay)) *rawRelay {
	t.Helper()
	cPeer, cRelay := tcpPair(t)
	bRelay, bPeer := tcpPair(t)
	rr := &rawRelay{client: cPeer, backend: bPeer, done: make(chan error, 1)}
	rr.relay = New(cRelay, clientBuf, bRelay, backendBuf, o)
	beforeRun(rr.relay)
	go func() {
		err := rr.relay.Run()
		cRelay.Close()
		bRelay.Close()
		rr.done <- err
	}()
	t.Cleanup(func() {
		cPeer.Close()
		bPeer.Close()
		select {
		case err := <-rr.done:
			rr.done <- err
		case <-time.After(10 * time.Second):
			t.Errorf("Run: still running 10s after both peers closed")
		}
	})
	return rr
}

// wait returns Run's result, failing the test if it takes more than 10s.
func (rr *rawRelay) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-rr.done:
		rr.done <- err
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("Run: got no return after 10s, want it ended")
		return nil
	}
}

// readFrame reads one frame from c, unmasking its payload.
func readFrame(c net.Conn) (Header, []byte, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var buf [14]byte
	h, err := ReadHeader(c, &buf)
	if err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c, p); err != nil {
		return h, nil, err
	}
	if h.Masked {
		MaskBytes(h.Mask, 0, p)
	}
	return h, p, nil
}

// readExactly reads n bytes from c.
func readExactly(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes: got %v, want nil", n, err)
	}
	return b
}

// expectClose reads one frame from c and checks it is a Close with code,
// masked as wantMasked says.
func expectClose(t testing.TB, c net.Conn, code uint16, wantMasked bool) {
	t.Helper()
	h, p, err := readFrame(c)
	if err != nil {
		t.Fatalf("reading close: got %v, want a close frame", err)
	}
	if h.Opcode != OpClose || !h.Fin || len(p) < 2 {
		t.Fatalf("frame: got %v fin=%v payload %d bytes, want a final close with a code", h.Opcode, h.Fin, len(p))
	}
	if got := binary.BigEndian.Uint16(p); got != code {
		t.Errorf("close code: got %v, want %v", got, code)
	}
	if h.Masked != wantMasked {
		t.Errorf("close masked: got %v, want %v", h.Masked, wantMasked)
	}
}

// expectEOF reads what is left on c until it ends and checks it is nothing.
func expectEOF(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if len(b) != 0 || !(err == nil || errors.Is(err, net.ErrClosed) || isReset(err)) {
		t.Errorf("rest of stream: got %d bytes (%x), %v, want nothing, EOF", len(b), b[:min(len(b), 32)], err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

func write(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	defer c.SetWriteDeadline(time.Time{})
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: got %v, want nil", err)
	}
}

func TestRelayForwardsFramesUnchanged(t *testing.T) {
	rr := startRaw(t, Options{}, nil, nil)
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320000 bytes > bufSize
	up := cat(
		fromClient(OpText, "hello"),
		wire(false, OpBinary, []byte("frag1"), true),
		fromClient(OpPing, "between fragments"),
		wire(false, OpContinuation, []byte("frag2"), true),
		wire(true, OpContinuation, nil, true),
		wire(true, OpBinary, big, true),
		fromClient(OpPong, ""),
	)
	down := cat(
		fromServer(OpText, "world"),
		wire(false, OpText, []byte("a"), false),
		fromServer(OpPong, "between fragments"),
		wire(true, OpContinuation, []byte("b"), false),
		wire(true, OpBinary, big, false),
	)
	go rr.client.Write(up)
	go rr.backend.Write(down)
	if got := readExactly(t, rr.backend, len(up)); !bytes.Equal(got, up) {
		t.Errorf("client->backend bytes: differ (%d bytes), want identical", len(got))
	}
	if got := readExactly(t, rr.client, len(down)); !bytes.Equal(got, down) {
		t.Errorf("backend->client bytes: differ (%d bytes), want identical", len(got))
	}
	// Counters are final once Run returned.
	rr.client.Close()
	rr.wait(t)
	fu, fd, bu, bd := rr.relay.Stats()
	if fu != 7 || fd != 5 || bu != int64(len(up)) || bd != int64(len(down)) {
		t.Errorf("Stats: got %v %v %v %v, want %v %v %v %v", fu, fd, bu, bd, 7, 5, len(up), len(down))
	}
}

func TestRelayPrefetchedBuffers(t *testing.T) {
	c1, c2 := fromClient(OpText, "early one"), fromClient(OpBinary, "early two, split")
	s1, s2 := fromServer(OpText, "greeting"), fromServer(OpBinary, "greeting two, split")
	// The prefetched bytes end inside a frame; the connection has the rest.
	rr := startRaw(t, Options{}, cat(c1, c2[:5]), cat(s1, s2[:3]))
	c3 := fromClient(OpText, "later")
	write(t, rr.client, cat(c2[5:], c3))
	write(t, rr.backend, s2[3:])
	if got, want := readExactly(t, rr.backend, len(c1)+len(c2)+len(c3)), cat(c1, c2, c3); !bytes.Equal(got, want) {
		t.Errorf("backend got %x, want %x", got, want)
	}
	if got, want := readExactly(t, rr.client, len(s1)+len(s2)), cat(s1, s2); !bytes.Equal(got, want) {
		t.Errorf("client got %x, want %x", got, want)
	}
}

func TestRelayExtensionsAllowRSV(t *testing.T) {
	rr := startRaw(t, Options{Extensions: true}, nil, nil)
	f := fromClient(OpText, "compressed, say")
	f[0] |= 0x40 // RSV1
	write(t, rr.client, f)
	if got := readExactly(t, rr.backend, len(f)); !bytes.Equal(got, f) {
		t.Errorf("RSV1 frame with Extensions: got %x, want %x", got, f)
	}
}

func TestProtocolViolations(t *testing.T) {
	long := string(bytes.Repeat([]byte("x"), 126))
	rsv := func(b []byte, bits byte) []byte { b[0] |= bits << 4; return b }
	tests := []struct {
		name        string
		fromBackend bool
		maxFrame    int64
		bad         []byte
		want        error
		code        uint16
	}{
		{"unmasked client frame", false, 0, fromServer(OpText, "hi"), ErrProtocol, 1002},
		{"masked server frame", true, 0, fromClient(OpText, "hi"), ErrProtocol, 1002},
		{"client ping over 125 bytes", false, 0, fromClient(OpPing, long), ErrProtocol, 1002},
		{"server close over 125 bytes", true, 0, fromServer(OpClose, long), ErrProtocol, 1002},
		{"fragmented ping", false, 0, wire(false, OpPing, []byte("p"), true), ErrProtocol, 1002},
		{"fragmented close", true, 0, wire(false, OpClose, nil, false), ErrProtocol, 1002},
		{"reserved opcode 3", false, 0, fromClient(3, "x"), ErrProtocol, 1002},
		{"reserved opcode 11", true, 0, fromServer(11, ""), ErrProtocol, 1002},
		{"RSV1 without extensions", false, 0, rsv(fromClient(OpText, "x"), 4), ErrProtocol, 1002},
		{"RSV3 without extensions", true, 0, rsv(fromServer(OpBinary, "x"), 1), ErrProtocol, 1002},
		{"continuation without message", false, 0, wire(true, OpContinuation, []byte("x"), true), ErrProtocol, 1002},
		{"data frame inside fragmented message", true, 0,
			cat(wire(false, OpText, []byte("a"), false), fromServer(OpPing, ""), fromServer(OpBinary, "b")), ErrProtocol, 1002},
		{"oversized server frame", true, 1024, fromServer(OpBinary, string(make([]byte, 1025))), ErrTooLarge, 1009},
		{"oversized client continuation", false, 1024,
			cat(wire(false, OpBinary, make([]byte, 1024), true), wire(true, OpContinuation, make([]byte, 2000), true)), ErrTooLarge, 1009},
		{"64-bit length with MSB", false, 0, []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, ErrProtocol, 1002},
		{"non-minimal 16-bit length", true, 0, []byte{0x82, 0x7e, 0, 5, 'h', 'e', 'l', 'l', 'o'}, ErrProtocol, 1002},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rr := startRaw(t, Options{MaxFrame: tc.maxFrame}, nil, nil)
			src, dst := rr.client, rr.backend
			good := fromClient(OpText, "before")
			if tc.fromBackend {
				src, dst = dst, src
				good = fromServer(OpText, "before")
			}
			write(t, src, cat(good, tc.bad))
			if got := readExactly(t, dst, len(good)); !bytes.Equal(got, good) {
				t.Fatalf("frame before the violation: got %x, want %x", got, good)
			}
			// A destination may first get fragments and control frames
			// that preceded the violation, then the close.
			for {
				h, p, err := readFrame(dst)
				if err != nil {
					t.Fatalf("peer of the violating side: got %v, want a close frame", err)
				}
				if h.Opcode != OpClose {
					continue
				}
				if code := binary.BigEndian.Uint16(p); code != tc.code {
					t.Errorf("close code to the peer: got %v, want %v", code, tc.code)
				}
				if h.Masked != !tc.fromBackend {
					t.Errorf("close to the peer masked: got %v, want %v", h.Masked, !tc.fromBackend)
				}
				break
			}
			expectClose(t, src, tc.code, tc.fromBackend)
			err := rr.wait(t)
			if !errors.Is(err, tc.want) {
				t.Errorf("Run: got %v, want %v", err, tc.want)
			}
			expectEOF(t, dst)
		})
	}
}

func TestCloseHandshakeFromClient(t *testing.T) {
	rr := startRaw(t, Options{}, nil, nil)
	c := fromClient(OpClose, closePayload(1000, "bye"))
	write(t, rr.client, c)
	if got := readExactly(t, rr.backend, len(c)); !bytes.Equal(got, c) {
		t.Fatalf("close at backend: got %x, want %x", got, c)
	}
	s := fromServer(OpClose, closePayload(1000, ""))
	write(t, rr.backend, s)
	if got := readExactly(t, rr.client, len(s)); !bytes.Equal(got, s) {
		t.Fatalf("close reply at client: got %x, want %x", got, s)
	}
	if err := rr.wait(t); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
}

func TestCloseFromBackendThenEOF(t *testing.T) {
	rr := startRaw(t, Options{CloseTimeout: 5 * time.Second}, nil, nil)
	s := fromServer(OpClose, closePayload(4000, "done"))
	write(t, rr.backend, s)
	rr.backend.(*net.TCPConn).CloseWrite()
	if got := readExactly(t, rr.client, len(s)); !bytes.Equal(got, s) {
		t.Fatalf("close at client: got %x, want %x", got, s)
	}
	// The relay passes the backend's EOF on and waits for the client.
	select {
	case err := <-rr.done:
		t.Fatalf("Run: returned %v before the client answered, want it waiting", err)
	case <-time.After(100 * time.Millisecond):
	}
	c := fromClient(OpClose, closePayload(4000, ""))
	write(t, rr.client, c)
	if err := rr.wait(t); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
	if got := readExactly(t, rr.backend, len(c)); !bytes.Equal(got, c) {
		t.Errorf("client's close at backend: got %x, want %x", got, c)
	}
}

func TestCloseFromBackendClientNeverAnswers(t *testing.T) {
	rr := startRaw(t, Options{CloseTimeout: 200 * time.Millisecond}, nil, nil)
	write(t, rr.backend, fromServer(OpClose, closePayload(1000, "")))
	rr.backend.Close()
	start := time.Now()
	if err := rr.wait(t); !errors.Is(err, ErrCloseTimeout) {
		t.Errorf("Run: got %v, want %v", err, ErrCloseTimeout)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run took %v, want about the 200ms close timeout", d)
	}
}

func TestEOFAtBoundaryPassesOn(t *testing.T) {
	rr := startRaw(t, Options{}, nil, nil)
	f := fromClient(OpText, "last words")
	write(t, rr.client, f)
	rr.client.(*net.TCPConn).CloseWrite()
	if got := readExactly(t, rr.backend, len(f)); !bytes.Equal(got, f) {
		t.Fatalf("backend: got %x, want %x", got, f)
	}
	if err := rr.wait(t); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
	expectEOF(t, rr.backend)
}

func TestPeerVanishesMidFrame(t *testing.T) {
	for _, tc := range []struct {
		name        string
		fromBackend bool
		size, sent  int
	}{
		{"client small frame", false, 1000, 100},
		{"client large frame", false, 200 << 10, 50 << 10},
		{"backend small frame", true, 1000, 100},
		{"backend large frame", true, 200 << 10, 50 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rr := startRaw(t, Options{}, nil, nil)
			src, dst := rr.client, rr.backend
			if tc.fromBackend {
				src, dst = dst, src
			}
			f := wire(true, OpBinary, bytes.Repeat([]byte{7}, tc.size), !tc.fromBackend)
			write(t, src, f[:tc.sent])
			src.Close()
			err := rr.wait(t)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("Run: got %v, want %v", err, io.ErrUnexpectedEOF)
			}
			// The destination got at most the part of the frame that
			// came, and nothing after it: no close inside the frame.
			dst.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, _ := io.ReadAll(dst)
			if len(got) > tc.sent || !bytes.Equal(got, f[:len(got)]) {
				t.Errorf("destination: got %d bytes, want a prefix of the %d sent", len(got), tc.sent)
			}
		})
	}
}

func TestMigrate(t *testing.T) {
	rr := startRaw(t, Options{}, nil, nil)
	c1, s1 := fromClient(OpText, "up"), fromServer(OpText, "down")
	write(t, rr.client, c1)
	write(t, rr.backend, s1)
	readExactly(t, rr.backend, len(c1))
	readExactly(t, rr.client, len(s1))

	rr.relay.Migrate(1012, "service restart")
	rr.relay.Migrate(1001, "second call has no effect")
	h, p, err := readFrame(rr.client)
	if err != nil || h.Opcode != OpClose || h.Masked || string(p) != closePayload(1012, "service restart") {
		t.Fatalf("client: got %v %q masked=%v err=%v, want unmasked close 1012 service restart", h.Opcode, p, h.Masked, err)
	}
	h, p, err = readFrame(rr.backend)
	if err != nil || h.Opcode != OpClose || !h.Masked || string(p) != closePayload(1012, "service restart") {
		t.Fatalf("backend: got %v %q masked=%v err=%v, want masked close 1012 service restart", h.Opcode, p, h.Masked, err)
	}
	// Frames after the injected closes go nowhere; the replies are absorbed.
	write(t, rr.client, cat(fromClient(OpBinary, "late data"), fromClient(OpClose, closePayload(1012, ""))))
	write(t, rr.backend, cat(fromServer(OpBinary, "late data"), fromServer(OpClose, closePayload(1012, ""))))
	if err := rr.wait(t); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
	expectEOF(t, rr.client)
	expectEOF(t, rr.backend)
	if fu, fd, _, _ := rr.relay.Stats(); fu != 1 || fd != 1 {
		t.Errorf("frames forwarded: got %v up %v down, want 1 1", fu, fd)
	}
}

func TestMigrateBeforeRun(t *testing.T) {
	rr := startRawWith(t, Options{}, nil, nil, func(r *Relay) { r.Migrate(1001, "going away") })
	expectClose(t, rr.client, 1001, false)
	expectClose(t, rr.backend, 1001, true)
	write(t, rr.client, fromClient(OpClose, closePayload(1001, "")))
	write(t, rr.backend, fromServer(OpClose, closePayload(1001, "")))
	if err := rr.wait(t); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
}

func TestMigrateAfterClientClosed(t *testing.T) {
	rr := startRaw(t, Options{}, nil, nil)
	c := fromClient(OpClose, closePayload(1000, ""))
	write(t, rr.client, c)
	readExactly(t, rr.backend, len(c))
	rr.relay.Migrate(1012, "")
	// The backend already has a close; the client gets one now.
	expectClose(t, rr.client, 1012, false)
	write(t, rr.backend, fromServer(OpClose, closePayload(1000, "")))
	if err := rr.wait(t); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
	expectEOF(t, rr.backend)
	expectEOF(t, rr.client)
}

// A frame toward the client that is in progress is finished before the
// injected close; the backend gets its close meanwhile.
func TestMigrateFinishesFrameInProgress(t *testing.T) {
	rr := startRaw(t, Options{}, nil, nil)
	payload := bytes.Repeat([]byte("abcdefgh"), 16<<10) // 128 KiB
	big := wire(true, OpBinary, payload, false)
	half := len(big) / 2
	write(t, rr.backend, big[:half])
	got := readExactly(t, rr.client, 20<<10)
	rr.relay.Migrate(1012, "service restart")
	expectClose(t, rr.backend, 1012, true)
	write(t, rr.backend, big[half:])
	got = append(got, readExactly(t, rr.client, len(big)-len(got))...)
	if !bytes.Equal(got, big) {
		t.Fatalf("frame in progress: got %d bytes differing, want the whole frame unchanged", len(got))
	}
	expectClose(t, rr.client, 1012, false)
	write(t, rr.client, fromClient(OpClose, closePayload(1012, "")))
	write(t, rr.backend, fromServer(OpClose, closePayload(1012, "")))
	if err := rr.wait(t); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
}

// Injecting toward the client does not wait for a slow frame travelling
// toward the backend.
func TestMigrateDoesNotWaitForOtherDirection(t *testing.T) {
	rr := startRaw(t, Options{CloseTimeout: 300 * time.Millisecond}, nil, nil)
	big := wire(true, OpBinary, make([]byte, 128<<10), true)
	write(t, rr.client, big[:64<<10])
	first := readExactly(t, rr.backend, 20<<10) // the frame is under way
	start := time.Now()
	rr.relay.Migrate(1012, "service restart")
	expectClose(t, rr.client, 1012, false)
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("close reached the client after %v, want well before the close timeout", d)
	}
	// The client never finishes its frame, so the backend never gets a
	// close boundary: the relay gives up after CloseTimeout.
	if err := rr.wait(t); !errors.Is(err, ErrCloseTimeout) {
		t.Errorf("Run: got %v, want %v", err, ErrCloseTimeout)
	}
	rr.backend.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, _ := io.ReadAll(rr.backend)
	if got := append(first, rest...); len(got) > 64<<10 || !bytes.Equal(got, big[:len(got)]) {
		t.Errorf("backend: got %d bytes, want only a prefix of the %d bytes sent", len(got), 64<<10)
	}
}

func TestRunTwice(t *testing.T) {
	rr := startRaw(t, Options{}, nil, nil)
	rr.client.Close()
	rr.wait(t)
	if err := rr.relay.Run(); err == nil {
		t.Errorf("second Run: got nil, want an error")
	}
}

func TestRelayNoAllocsPerFrame(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	rr := startRaw(t, Options{}, nil, nil)
	payload := bytes.Repeat([]byte{'m'}, 1024)
	up, down := wire(true, OpBinary, payload, true), wire(true, OpBinary, payload, false)
	bufUp, bufDown := make([]byte, len(up)), make([]byte, len(down))
	exchange := func() {
		if _, err := rr.client.Write(up); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rr.backend, bufUp); err != nil {
			t.Fatal(err)
		}
		if _, err := rr.backend.Write(down); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rr.client, bufDown); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		exchange()
	}
	if n := testing.AllocsPerRun(500, exchange); n != 0 {
		t.Errorf("allocations per 1 KiB frame each way: got %v, want 0", n)
	}
	if !bytes.Equal(bufUp, up) || !bytes.Equal(bufDown, down) {
		t.Errorf("frames: got altered bytes, want identical")
	}
}

// TestMigrateBackendHangsUpAtOnce: the backend ends its stream right as the
// relay injects its Close (a server that answers a Close and hangs up at
// once). The client must still get the Close before the EOF, never a bare
// EOF (which clients report as 1006, abnormal closure).
func TestMigrateBackendHangsUpAtOnce(t *testing.T) {
	for i := range 100 {
		rr := startRaw(t, Options{}, nil, nil)
		rr.relay.Migrate(1012, "service restart")
		// The backend gets the relay's Close and hangs up at once, racing
		// the injection toward the client.
		if h, _, err := readFrame(rr.backend); err != nil || h.Opcode != OpClose {
			t.Fatalf("round %d: backend got %v, %v; want a close", i, h.Opcode, err)
		}
		rr.backend.(*net.TCPConn).CloseWrite()
		h, p, err := readFrame(rr.client)
		if err != nil || h.Opcode != OpClose || string(p) != closePayload(1012, "service restart") {
			t.Fatalf("round %d: client got %v %q, %v; want the close 1012 before any EOF", i, h.Opcode, p, err)
		}
		rr.client.Write(fromClient(OpClose, closePayload(1012, "")))
		rr.wait(t)
	}
}
