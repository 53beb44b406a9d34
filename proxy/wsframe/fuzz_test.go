package wsframe

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/proxytest"
)

// FuzzRelay feeds arbitrary bytes as the client's stream (part of it as
// the prefetched clientBuf) through a Relay to a backend that only reads.
// The relay must end, without panicking or hanging, and what reaches the
// backend must be whole frames of the input, in order and unchanged,
// possibly followed by one Close the relay injected.
func FuzzRelay(f *testing.F) {
	for _, seed := range [][]byte{
		nil,
		fromClient(OpText, "hello"),
		cat(wire(false, OpText, []byte("a"), true), fromClient(OpPing, "p"), wire(true, OpContinuation, []byte("b"), true)),
		cat(fromClient(OpBinary, "x"), fromClient(OpClose, closePayload(1000, "bye")), fromClient(OpText, "after")),
		fromServer(OpText, "unmasked"),
		fromClient(OpPing, string(make([]byte, 126))),
		wire(true, OpBinary, make([]byte, 5000), true),
		{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
		{0x81, 0x85, 1, 2},
	} {
		f.Add(seed, uint8(3), false, false)
		f.Add(seed, uint8(0), true, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint8, ext, migrate bool) {
		k := min(int(split), len(data))
		cPeer, cRelay := net.Pipe()
		bRelay, bPeer := net.Pipe()
		defer func() {
			for _, c := range []net.Conn{cPeer, cRelay, bRelay, bPeer} {
				c.Close()
			}
		}()
		r := New(cRelay, data[:k], bRelay, nil, Options{MaxFrame: 4096, Extensions: ext, CloseTimeout: 50 * time.Millisecond})
		if migrate {
			r.Migrate(1012, "fuzz")
		}
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() {
			cPeer.SetWriteDeadline(time.Now().Add(5 * time.Second))
			cPeer.Write(data[k:])
			cPeer.Close()
		})
		wg.Go(func() { io.Copy(io.Discard, cPeer) })
		var toBackend bytes.Buffer
		wg.Go(func() { io.Copy(&toBackend, bPeer) })

		done := make(chan error, 1)
		go func() { done <- r.Run() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cRelay.Close()
			bRelay.Close()
			<-done
			t.Fatalf("Run: still running after 10s, want it ended")
		}
		cRelay.Close()
		bRelay.Close()
		wg.Wait()
		checkForwarded(t, data, toBackend.Bytes())
	})
}

// FuzzParkedRelay feeds arbitrary bytes as the client's stream to a relay
// whose directions are parked, so that they reach the inline relay on the
// Parker's goroutine first (in two writes, cut anywhere), to a backend that only
// reads. The rules are FuzzRelay's: the relay ends, and the backend gets
// whole frames of the input in order, possibly followed by one injected
// Close.
func FuzzParkedRelay(f *testing.F) {
	for _, seed := range [][]byte{
		fromClient(OpText, "hello"),
		cat(wire(false, OpText, []byte("a"), true), fromClient(OpPing, "p"), wire(true, OpContinuation, []byte("b"), true)),
		cat(fromClient(OpBinary, "x"), fromClient(OpClose, closePayload(1000, "bye")), fromClient(OpText, "after")),
		cat(fromClient(OpText, "ok"), fromServer(OpText, "unmasked")),
		cat(fromClient(OpText, "ok"), wire(true, OpContinuation, []byte("c"), true)),
		wire(true, OpBinary, make([]byte, 20000), true),
		{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
		{0x81, 0x85, 1, 2},
	} {
		f.Add(seed, uint16(0), false)
		f.Add(seed, uint16(3), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16, ext bool) {
		k := min(int(split), len(data))
		pk := proxytest.NewPoller(t) // one relay's: Parked counts its sockets
		cPeer, cRelay := tcpPair(t)
		bRelay, bPeer := tcpPair(t)
		defer func() {
			for _, c := range []net.Conn{cPeer, cRelay, bRelay, bPeer} {
				c.Close()
			}
		}()
		r := New(cRelay, nil, bRelay, nil, Options{MaxFrame: 4096, Extensions: ext, CloseTimeout: 50 * time.Millisecond,
			Parker: pk, ParkAfter: time.Millisecond})
		var toBackend bytes.Buffer
		var wg sync.WaitGroup
		wg.Go(func() { io.Copy(io.Discard, cPeer) })
		wg.Go(func() { io.Copy(&toBackend, bPeer) })
		done := make(chan error, 1)
		if err := r.Start(func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
		awaitParkedFrom(t, pk, 2, done)
		cPeer.SetWriteDeadline(time.Now().Add(5 * time.Second))
		for _, part := range [][]byte{data[:k], data[k:]} {
			cPeer.Write(part)
		}
		cPeer.(*net.TCPConn).CloseWrite()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			r.Abort()
			<-done
			t.Fatalf("relay still running after 10s, want it ended")
		}
		cRelay.Close()
		bRelay.Close()
		wg.Wait()
		checkForwarded(t, data, toBackend.Bytes())
	})
}

// awaitParkedFrom waits until want sockets are parked, or the relay has
// ended (done is ready; left for the caller).
func awaitParkedFrom(t *testing.T, pk interface{ Parked() int }, want int, done chan error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for pk.Parked() < want {
		select {
		case err := <-done:
			done <- err
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("parked %d, want %d", pk.Parked(), want)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// checkForwarded checks that out is a sequence of whole frames equal to the
// first frames of in, possibly followed by one injected Close.
func checkForwarded(t *testing.T, in, out []byte) {
	t.Helper()
	var buf [14]byte
	ir, or := bytes.NewReader(in), bytes.NewReader(out)
	for or.Len() > 0 {
		oh, err := ReadHeader(or, &buf)
		if err != nil || or.Len() < int(oh.Length) {
			t.Fatalf("backend stream: got a cut frame (%v), want whole frames", err)
		}
		ofr := append(AppendHeader(nil, oh), out[len(out)-or.Len():][:oh.Length]...)
		or.Seek(oh.Length, io.SeekCurrent)

		ih, err := ReadHeader(ir, &buf)
		if err == nil && int64(ir.Len()) >= ih.Length {
			ifr := append(AppendHeader(nil, ih), in[len(in)-ir.Len():][:ih.Length]...)
			ir.Seek(ih.Length, io.SeekCurrent)
			if bytes.Equal(ofr, ifr) {
				continue
			}
		}
		// Not the next input frame: it must be the injected close, last.
		if oh.Opcode != OpClose || !oh.Masked || oh.Length < 2 || or.Len() != 0 {
			t.Fatalf("backend frame: got %v masked=%v length %d with %d bytes after, want the next input frame or a final injected close",
				oh.Opcode, oh.Masked, oh.Length, or.Len())
		}
		p := ofr[len(ofr)-int(oh.Length):]
		MaskBytes(oh.Mask, 0, p)
		switch code := binary.BigEndian.Uint16(p); code {
		case 1002, 1009, 1012:
		default:
			t.Fatalf("injected close code: got %v, want 1002, 1009 or 1012", code)
		}
	}
}
