package wsframe

import (
	"bytes"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"

	"github.com/longhaul-proxy/longhaul/internal/proxytest"
)

// BenchmarkRelay relays 1 KiB binary messages, one frame each, both ways at
// once: one op is one message client->backend and one backend->client. The
// test's own writers and readers do not allocate, so allocs/op is the
// relay's.
func BenchmarkRelay(b *testing.B) {
	b.Run("tcp", func(b *testing.B) {
		cPeer, cRelay := tcpPair(b)
		bRelay, bPeer := tcpPair(b)
		benchRelay(b, cPeer, cRelay, bRelay, bPeer, Options{})
	})
	b.Run("tcp-parked", func(b *testing.B) { // inline on the Parker's goroutine
		cPeer, cRelay := tcpPair(b)
		bRelay, bPeer := tcpPair(b)
		benchRelay(b, cPeer, cRelay, bRelay, bPeer, Options{Parker: proxytest.NewPoller(b)})
	})
	b.Run("pipe", func(b *testing.B) {
		cPeer, cRelay := net.Pipe()
		bRelay, bPeer := net.Pipe()
		benchRelay(b, cPeer, cRelay, bRelay, bPeer, Options{})
	})
}

// BenchmarkRelayPingPong relays one 64-byte message at a time, client to
// backend and back, as a chat or a request/response protocol does: one op
// is one round trip, with a goroutine per direction (goroutines) or parked
// directions relayed inline (parked). cpu-ns/op is the whole process's CPU
// per round trip (the test's client and backend included, the same in both
// modes).
func BenchmarkRelayPingPong(b *testing.B) {
	for _, mode := range []string{"goroutines", "parked"} {
		b.Run(mode, func(b *testing.B) {
			o := Options{}
			if mode == "parked" {
				o.Parker = proxytest.NewPoller(b)
			}
			cPeer, cRelay := tcpPair(b)
			bRelay, bPeer := tcpPair(b)
			payload := bytes.Repeat([]byte{'p'}, 64)
			up, down := wire(true, OpBinary, payload, true), wire(true, OpBinary, payload, false)
			r := New(cRelay, nil, bRelay, nil, o)
			done := make(chan error, 1)
			go func() { done <- r.Run() }()
			echo := make(chan error, 1)
			n := b.N
			go func() { // the backend answers each message
				buf := make([]byte, len(up))
				for range n {
					if _, err := io.ReadFull(bPeer, buf); err != nil {
						echo <- err
						return
					}
					if _, err := bPeer.Write(down); err != nil {
						echo <- err
						return
					}
				}
				echo <- nil
			}()
			buf := make([]byte, len(down))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU(b)
			for range n {
				if _, err := cPeer.Write(up); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(cPeer, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(n), "cpu-ns/op")
			if err := <-echo; err != nil {
				b.Fatal(err)
			}
			cPeer.Close()
			bPeer.Close()
			<-done
			cRelay.Close()
			bRelay.Close()
		})
	}
}

// processCPU is the process's user and system CPU time so far, in
// nanoseconds: the benchmark's clients and the relay together, so that two
// modes compare by what the relay adds.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func benchRelay(b *testing.B, cPeer, cRelay, bRelay, bPeer net.Conn, o Options) {
	payload := bytes.Repeat([]byte{'b'}, 1024)
	up, down := wire(true, OpBinary, payload, true), wire(true, OpBinary, payload, false)
	r := New(cRelay, nil, bRelay, nil, o)
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
