package wsframe

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// BenchmarkRelay relays 1 KiB binary messages, one frame each, both ways at
// once: one op is one message client->backend and one backend->client. The
// test's own writers and readers do not allocate, so allocs/op is the
// relay's.
func BenchmarkRelay(b *testing.B) {
	b.Run("tcp", func(b *testing.B) {
		cPeer, cRelay := tcpPair(b)
		bRelay, bPeer := tcpPair(b)
		benchRelay(b, cPeer, cRelay, bRelay, bPeer)
	})
	b.Run("pipe", func(b *testing.B) {
		cPeer, cRelay := net.Pipe()
		bRelay, bPeer := net.Pipe()
		benchRelay(b, cPeer, cRelay, bRelay, bPeer)
	})
}

func benchRelay(b *testing.B, cPeer, cRelay, bRelay, bPeer net.Conn) {
	payload := bytes.Repeat([]byte{'b'}, 1024)
	up, down := wire(true, OpBinary, payload, true), wire(true, OpBinary, payload, false)
	r := New(cRelay, nil, bRelay, nil, Options{})
	done := make(chan error, 1)
	go func() { done <- r.Run() }()

	// Everything the test's goroutines need is set up before the timer
	// starts, so that only the relay's allocations are counted.
	n := b.N
	start := make(chan struct{})
	var wg sync.WaitGroup
	pump := func(w net.Conn, frame []byte, rd net.Conn) {
		wg.Go(func() {
			<-start
			for range n {
				if _, err := w.Write(frame); err != nil {
					return
				}
			}
		})
		buf := make([]byte, len(frame))
		wg.Go(func() {
			<-start
			for range n {
				if _, err := io.ReadFull(rd, buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	pump(cPeer, up, bPeer)
	pump(bPeer, down, cPeer)
	b.ReportAllocs()
	b.SetBytes(int64(2 * len(payload)))
	b.ResetTimer()
	close(start)
	wg.Wait()
	b.StopTimer()
	cPeer.Close()
	bPeer.Close()
	<-done
	cRelay.Close()
	bRelay.Close()
	if fu, fd, _, _ := r.Stats(); fu != int64(n) || fd != int64(n) {
		b.Errorf("frames relayed: got %v up %v down, want %v each", fu, fd, n)
	}
}
