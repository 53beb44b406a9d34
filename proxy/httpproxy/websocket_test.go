package httpproxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/wsload"
)

// startWSEcho runs a gorilla/websocket echo server.
func startWSEcho(t testing.TB) string {
	t.Helper()
	up := websocket.Upgrader{ReadBufferSize: 64 << 10, WriteBufferSize: 64 << 10}
	return startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetReadLimit(64 << 20)
		wsload.Echo(c, nil)
	}))
}

func TestWebSocketThroughProxyAndMigrate(t *testing.T) {
	backend := startWSEcho(t)
	p := startHTTPProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, backend)
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v (resp %v)", err, resp)
	}
	defer c.Close()
	for i := range 100 {
		msg := fmt.Sprintf("message %d %s", i, strings.Repeat("x", i*100))
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != msg {
			t.Fatalf("proxytest.Echo %d: got %d bytes, %v", i, len(got), err)
		}
	}
	ss := p.reg.Endpoint(backend)
	if len(ss) != 1 || ss[0].Info().Protocol != "websocket" {
		t.Fatalf("registry: got %d sessions, want 1 websocket", len(ss))
	}
	ss[0].Migrate(time.Now().Add(time.Second))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
		t.Fatalf("after Migrate: got %v, want close 1012", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.reg.Wait(ctx, nil); err != nil {
		t.Fatalf("session still registered after migrate: %v", err)
	}
}

// TestWebSocketNodePeer runs an independent client (Node's ws package)
// through longhaul to a gorilla/websocket server.
func TestWebSocketNodePeer(t *testing.T) {
	dir := toolsDir(t)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ws")); err != nil {
		t.Fatalf("the ws package is missing from %s: run hack/tools.sh (needs npm)", dir)
	}
	backend := startWSEcho(t)
	p := startHTTPProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, backend)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "testdata/wspeer.cjs", "ws://"+p.addr+"/proxytest.Echo")
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules"))
	out, err := cmd.CombinedOutput()
	t.Logf("node ws peer:\n%s", out)
	if err != nil {
		t.Fatalf("node ws peer failed: %v", err)
	}
	if n := strings.Count(string(out), "ok   "); n != 6 {
		t.Fatalf("got %d passing cases, want 6", n)
	}
}
