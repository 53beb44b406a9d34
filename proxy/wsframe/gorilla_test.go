package wsframe

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startWS runs a gorilla/websocket server whose connections handle serves,
// and returns its address. Cleanup waits for every handler to return.
func startWS(t *testing.T, up websocket.Upgrader, handle func(*websocket.Conn)) string {
	t.Helper()
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Added while the connection is active, so before srv.Close
		// returns: cleanup's Wait cannot miss it.
		wg.Add(1)
		defer wg.Done()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		handle(c)
	}))
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return srv.Listener.Addr().String()
}

// echo answers every message with the same message. stream copies it
// through NextReader/NextWriter (fragments when the server's write buffer is
// small); otherwise WriteMessage sends it as one frame.
func echo(stream bool) func(*websocket.Conn) {
	return func(c *websocket.Conn) {
		for {
			if !stream {
				mt, msg, err := c.ReadMessage()
				if err != nil {
					return
				}
				if err := c.WriteMessage(mt, msg); err != nil {
					return
				}
				continue
			}
			mt, r, err := c.NextReader()
			if err != nil {
				return
			}
			w, err := c.NextWriter(mt)
			if err != nil {
				return
			}
			if _, err := io.Copy(w, r); err != nil {
				return
			}
			if err := w.Close(); err != nil {
				return
			}
		}
	}
}

// testProxy is a minimal WebSocket proxy: it forwards the upgrade
// handshake to a backend, then relays frames with a Relay.
type testProxy struct {
	addr    string
	backend string
	opts    Options
	relays  chan *Relay
	results chan error

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, backend string, o Options) *testProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &testProxy{addr: ln.Addr().String(), backend: backend, opts: o,
		relays: make(chan *Relay, 16), results: make(chan error, 16), conns: map[net.Conn]bool{}}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.track(c)
			p.wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *testProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = true
	p.mu.Unlock()
}

func (p *testProxy) serve(client net.Conn) {
	defer client.Close()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	cr := bufio.NewReader(client)
	req, err := http.ReadRequest(cr)
	if err != nil {
		return
	}
	backend, err := net.Dial("tcp", p.backend)
	if err != nil {
		return
	}
	p.track(backend)
	defer backend.Close()
	backend.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(backend); err != nil {
		return
	}
	br := bufio.NewReader(backend)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return
	}
	if err := resp.Write(client); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		return
	}
	client.SetDeadline(time.Time{})
	backend.SetDeadline(time.Time{})
	r := New(client, buffered(cr), backend, buffered(br), p.opts)
	p.relays <- r
	p.results <- r.Run()
}

func buffered(r *bufio.Reader) []byte {
	b, _ := r.Peek(r.Buffered())
	return append([]byte(nil), b...)
}

// relay returns the Relay of the proxy's next connection.
func (p *testProxy) relay(t *testing.T) *Relay {
	t.Helper()
	select {
	case r := <-p.relays:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("proxy: got no relay after 5s, want one")
		return nil
	}
}

// result returns what the proxy's next Run returned.
func (p *testProxy) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.results:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("proxy: Run still running after 10s, want it ended")
		return nil
	}
}

func dial(t *testing.T, p *testProxy, d websocket.Dialer) *websocket.Conn {
	t.Helper()
	d.HandshakeTimeout = 5 * time.Second
	c, resp, err := d.Dial("ws://"+p.addr+"/ws", nil)
	if err != nil {
		t.Fatalf("dial through proxy: got %v (response %v), want a connection", err, resp)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	return c
}

func roundTrip(t *testing.T, c *websocket.Conn, mt int, msg []byte) {
	t.Helper()
	if err := c.WriteMessage(mt, msg); err != nil {
		t.Fatalf("write: got %v, want nil", err)
	}
	gotType, got, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read echo: got %v, want nil", err)
	}
	if gotType != mt || !bytes.Equal(got, msg) {
		t.Fatalf("echo: got type %v, %d bytes, want type %v, %d bytes, equal", gotType, len(got), mt, len(msg))
	}
}

// closeClient runs a client-initiated close handshake and checks the
// relay ended cleanly.
func closeClient(t *testing.T, c *websocket.Conn, p *testProxy) {
	t.Helper()
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second)); err != nil {
		t.Fatalf("write close: got %v, want nil", err)
	}
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				t.Errorf("after close: got %v, want close 1000 echoed", err)
			}
			break
		}
	}
	if err := p.result(t); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestGorillaTextAndBinary(t *testing.T) {
	p := startProxy(t, startWS(t, websocket.Upgrader{}, echo(false)), Options{})
	c := dial(t, p, websocket.Dialer{})
	r := p.relay(t)
	roundTrip(t, c, websocket.TextMessage, []byte("hello, world"))
	roundTrip(t, c, websocket.BinaryMessage, randomBytes(1000, 1))
	roundTrip(t, c, websocket.TextMessage, nil)
	closeClient(t, c, p)
	// Counters are final once Run returned: 3 messages and a close.
	if fu, fd, bu, bd := r.Stats(); fu != 4 || fd != 4 || bu < 1012 || bd < 1012 {
		t.Errorf("Stats: got %v %v %v %v, want 4 frames each way, over 1012 bytes", fu, fd, bu, bd)
	}
}

func TestGorillaFragmentedAndControlBetweenFragments(t *testing.T) {
	backend := startWS(t, websocket.Upgrader{WriteBufferSize: 256}, echo(true))
	p := startProxy(t, backend, Options{})
	c := dial(t, p, websocket.Dialer{WriteBufferSize: 256})
	r := p.relay(t)
	pongs := make(chan string, 1)
	c.SetPongHandler(func(s string) error { pongs <- s; return nil })

	want := randomBytes(10_000, 2)
	w, err := c.NextWriter(websocket.BinaryMessage)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(want); i += 1000 {
		if _, err := w.Write(want[i : i+1000]); err != nil {
			t.Fatal(err)
		}
		if i == 5000 {
			// Fragments of the message are already on the wire; a
			// ping goes between them.
			if err := c.WriteControl(websocket.PingMessage, []byte("mid-message"), time.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	mt, got, err := c.ReadMessage()
	if err != nil || mt != websocket.BinaryMessage || !bytes.Equal(got, want) {
		t.Fatalf("fragmented echo: got type %v, %d bytes, %v, want binary, %d bytes, equal", mt, len(got), err, len(want))
	}
	select {
	case s := <-pongs:
		if s != "mid-message" {
			t.Errorf("pong: got %q, want %q", s, "mid-message")
		}
	default:
		t.Errorf("pong: got none, want one")
	}
	closeClient(t, c, p)
	fu, fd, _, _ := r.Stats()
	if fu < 10 || fd < 10 {
		t.Errorf("frames: got %v up %v down, want the message in at least 10 fragments each way", fu, fd)
	}
}

func TestGorillaServerPing(t *testing.T) {
	pong := make(chan string, 1)
	backend := startWS(t, websocket.Upgrader{}, func(c *websocket.Conn) {
		c.SetPongHandler(func(s string) error { pong <- s; return nil })
		if err := c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)); err != nil {
			return
		}
		echo(false)(c)
	})
	p := startProxy(t, backend, Options{})
	c := dial(t, p, websocket.Dialer{})
	// Reading lets the client's default ping handler answer.
	roundTrip(t, c, websocket.TextMessage, []byte("x"))
	roundTrip(t, c, websocket.TextMessage, []byte("y"))
	select {
	case s := <-pong:
		if s != "are you there" {
			t.Errorf("pong at server: got %q, want %q", s, "are you there")
		}
	case <-time.After(5 * time.Second):
		t.Errorf("pong at server: got none, want one")
	}
	closeClient(t, c, p)
}

func TestGorillaLargeMessages(t *testing.T) {
	for _, stream := range []bool{false, true} {
		for _, size := range []int{1 << 20, 10 << 20} {
			t.Run(fmt.Sprintf("stream=%v/%dMiB", stream, size>>20), func(t *testing.T) {
				p := startProxy(t, startWS(t, websocket.Upgrader{}, echo(stream)), Options{})
				c := dial(t, p, websocket.Dialer{})
				roundTrip(t, c, websocket.BinaryMessage, randomBytes(size, uint64(size)))
				closeClient(t, c, p)
			})
		}
	}
}

func TestGorillaCloseFromServer(t *testing.T) {
	reply := make(chan error, 1)
	backend := startWS(t, websocket.Upgrader{}, func(c *websocket.Conn) {
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4002, "server bye"), time.Now().Add(time.Second))
		c.SetCloseHandler(func(int, string) error { return nil }) // already sent ours
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				reply <- err
				return
			}
		}
	})
	p := startProxy(t, backend, Options{})
	c := dial(t, p, websocket.Dialer{})
	if err := c.WriteMessage(websocket.TextMessage, []byte("close me")); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4002 || ce.Text != "server bye" {
		t.Fatalf("client: got %v, want close 4002 server bye", err)
	}
	select {
	case err := <-reply:
		if !websocket.IsCloseError(err, 4002) {
			t.Errorf("server: got %v, want the client's close reply 4002", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server: got no close reply, want one")
	}
	if err := p.result(t); err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
}

func TestGorillaOversizedFrame(t *testing.T) {
	got := make(chan error, 1)
	backend := startWS(t, websocket.Upgrader{}, func(c *websocket.Conn) {
		c.WriteMessage(websocket.BinaryMessage, make([]byte, 100<<10)) // one frame
		_, _, err := c.ReadMessage()
		got <- err
	})
	p := startProxy(t, backend, Options{MaxFrame: 64 << 10})
	c := dial(t, p, websocket.Dialer{})
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Errorf("client: got %v, want close 1009", err)
	}
	select {
	case err := <-got:
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
			t.Errorf("server: got %v, want close 1009", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server: got nothing, want close 1009")
	}
	if err := p.result(t); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Run: got %v, want %v", err, ErrTooLarge)
	}
}

func TestGorillaCompression(t *testing.T) {
	up := websocket.Upgrader{EnableCompression: true}
	msg := bytes.Repeat([]byte("compressible "), 1000)
	t.Run("extensions allowed", func(t *testing.T) {
		p := startProxy(t, startWS(t, up, echo(false)), Options{Extensions: true})
		c := dial(t, p, websocket.Dialer{EnableCompression: true})
		r := p.relay(t)
		roundTrip(t, c, websocket.TextMessage, msg)
		if _, _, bu, _ := r.Stats(); bu >= int64(len(msg)) {
			t.Errorf("bytes up: got %v, want fewer than %v (compressed frames relayed as they are)", bu, len(msg))
		}
		closeClient(t, c, p)
	})
	t.Run("extensions not allowed", func(t *testing.T) {
		p := startProxy(t, startWS(t, up, echo(false)), Options{})
		c := dial(t, p, websocket.Dialer{EnableCompression: true})
		if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseProtocolError) {
			t.Errorf("client: got %v, want close 1002", err)
		}
		if err := p.result(t); !errors.Is(err, ErrProtocol) {
			t.Errorf("Run: got %v, want %v", err, ErrProtocol)
		}
	})
}

// seqMessage is message number i of the load test: its number, then
// bytes derived from it; some are larger than the relay's buffer.
func seqMessage(i int) []byte {
	n := 8 + (i*37)%2000
	if i%10 == 0 {
		n = 8 + 40<<10
	}
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b, uint64(i))
	for j := 8; j < n; j++ {
		b[j] = byte(i + j)
	}
	return b
}

func TestGorillaMigrateUnderLoad(t *testing.T) {
	backendClose := make(chan int, 1)
	backend := startWS(t, websocket.Upgrader{}, func(c *websocket.Conn) {
		c.SetCloseHandler(func(code int, text string) error {
			backendClose <- code
			return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
		})
		echo(false)(c)
	})
	p := startProxy(t, backend, Options{CloseTimeout: 5 * time.Second})
	c := dial(t, p, websocket.Dialer{})
	r := p.relay(t)

	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < 1_000_000; i++ {
			if err := c.WriteMessage(websocket.BinaryMessage, seqMessage(i)); err != nil {
				return // ErrCloseSent once the client answered the close
			}
		}
	})
	defer func() {
		c.Close() // stops the writer if the test ends early
		wg.Wait()
	}()

	const migrateAt = 300
	received := 0
	var err error
	for {
		var msg []byte
		if _, msg, err = c.ReadMessage(); err != nil {
			break
		}
		if want := seqMessage(received); !bytes.Equal(msg, want) {
			t.Fatalf("message %d: got %d bytes (seq %d), want the complete echo of %d bytes", received, len(msg), binary.BigEndian.Uint64(msg), len(want))
		}
		received++
		if received == migrateAt {
			r.Migrate(websocket.CloseServiceRestart, "service restart")
		}
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart || ce.Text != "service restart" {
		t.Fatalf("client after Migrate: got %v, want close 1012 service restart", err)
	}
	if received < migrateAt {
		t.Errorf("messages before the close: got %v, want at least %v", received, migrateAt)
	}
	select {
	case code := <-backendClose:
		if code != websocket.CloseServiceRestart {
			t.Errorf("backend close code: got %v, want %v", code, websocket.CloseServiceRestart)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend: got no close frame, want close 1012")
	}
	if err := p.result(t); err != nil {
		t.Errorf("Run: got %v, want nil (both sides answered close)", err)
	}
	_, fd, _, _ := r.Stats()
	if fd < int64(received) {
		t.Errorf("frames down: got %v, want at least the %v messages received", fd, received)
	}
	t.Logf("received %d messages before close 1012", received)
}
