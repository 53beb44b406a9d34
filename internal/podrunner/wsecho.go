package podrunner

import (
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocketPath is where an HTTP echo server takes WebSocket upgrades.
const WebSocketPath = "/ws"

// Response headers of a WebSocket upgrade that name the pod answering.
const (
	HeaderEchoPod       = "X-Echo-Pod"
	HeaderEchoNamespace = "X-Echo-Namespace"
)

// wsEcho is the WebSocket echo of an HTTP echo server: every message it
// reads is sent back unchanged, of the same type; the upgrade's answer
// names the pod (HeaderEchoPod, HeaderEchoNamespace). It keeps its
// connections, which the HTTP server no longer tracks once upgraded, so
// that a pod's teardown ends them (as a process exit would) rather than
// leaving them open without a server.
type wsEcho struct {
	id       Identity
	upgrader websocket.Upgrader

	mu     sync.Mutex
	conns  map[*websocket.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // one per connection being echoed
}

func newWSEcho(id Identity) *wsEcho {
	return &wsEcho{
		id: id,
		// Any origin: the echo is a test backend behind a proxy.
		upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }},
		conns:    map[*websocket.Conn]struct{}{},
	}
}

func (e *wsEcho) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := http.Header{HeaderEchoPod: {e.id.Pod}, HeaderEchoNamespace: {e.id.Namespace}}
	c, err := e.upgrader.Upgrade(w, r, h)
	if err != nil {
		return // Upgrade answered the error
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		c.Close()
		return
	}
	e.conns[c] = struct{}{}
	e.wg.Add(1)
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
		c.Close()
		e.wg.Done()
	}()
	for {
		mt, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteMessage(mt, msg); err != nil {
			return
		}
	}
}

// Close closes every connection, without a close frame (the pod is gone),
// refuses new ones and waits until their echo loops have returned.
func (e *wsEcho) Close() {
	e.mu.Lock()
	e.closed = true
	for c := range e.conns {
		c.NetConn().Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}
