package app

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// TestDebugServerNeedsToken: with admin.debugTokenFile the debug views
// answer only to the token; the probes and metrics need none.
func TestDebugServerNeedsToken(t *testing.T) {
	b := echoServer(t)
	const token = "s3cret-token-0123456789"
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	adm, debug, lis := testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(`
admin: {address: %q, debugAddress: %q, debugTokenFile: %q, pprof: true}
listeners:
  - {name: echo, address: %q, endpoints: {static: [%q]}}
`, adm, debug, file, lis, b))
	if got := r.a.DebugAddr().String(); got != debug {
		t.Errorf("DebugAddr = %s, want %s", got, debug)
	}
	c, err := net.Dial("tcp", lis)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "hi")
	client := c.LocalAddr().String()
	request := func(path, auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+debug+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, path := range []string{"/debug/sessions", "/debug/endpoints", "/debug/pprof/"} {
		if code, body := request(path, ""); code != http.StatusUnauthorized || strings.Contains(body, client) {
			t.Errorf("%s without a token: %d %.80q, want 401", path, code, body)
		}
		if code, _ := request(path, "Bearer wrong-token-0123456789"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", path, code)
		}
	}
	if code, body := request("/debug/sessions", "Bearer "+token); code != 200 || !strings.Contains(body, client) {
		t.Errorf("/debug/sessions with the token: %d %.200s, want 200 listing %s", code, body, client)
	}
	if code, _ := get(t, "http://"+adm+"/readyz"); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
}

// TestAdminAbuse: admin.maxConnections and admin.timeouts reach the admin
// server: 500 connections that send nothing never hold more than the cap,
// /readyz still answers at once, and they are closed at
// admin.timeouts.readHeader.
func TestAdminAbuse(t *testing.T) {
	const (
		total   = 500
		maxConn = 8
		rht     = 400 * time.Millisecond
	)
	b := echoServer(t)
	adm, lis := testnet.FreeAddr(t), testnet.FreeAddr(t)
	start(t, fmt.Sprintf(`
admin: {address: %q, maxConnections: %d, timeouts: {readHeader: %s, read: 1s, write: 1s, idle: 1s}}
listeners:
  - {name: echo, address: %q, endpoints: {static: [%q]}}
`, adm, maxConn, rht, lis, b))
	conns := make([]net.Conn, 0, total)
	for range total {
		c, err := net.Dial("tcp", adm)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	lastDial := time.Now()
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	began := time.Now()
	resp, err := probe.Get("http://" + adm + "/readyz")
	if err != nil {
		t.Fatalf("/readyz with %d idle connections: %v", total, err)
	}
	resp.Body.Close()
	took := time.Since(began)
	if resp.StatusCode != 200 {
		t.Errorf("/readyz: %d", resp.StatusCode)
	}
	// Every connection is closed by the server: evicted for a newcomer, or
	// at the header timeout.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Time
	var open int
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(rht + 5*time.Second))
			_, err := io.Copy(io.Discard, c)
			mu.Lock()
			defer mu.Unlock()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				open++
				return
			}
			if now := time.Now(); now.After(last) {
				last = now
			}
		})
	}
	wg.Wait()
	t.Logf("/readyz answered in %v among %d idle connections; the last closed %v after the last dial (readHeader %v)",
		took, total, last.Sub(lastDial), rht)
	if took > 500*time.Millisecond {
		t.Errorf("/readyz took %v among idle connections, want < 500ms", took)
	}
	if open > 0 {
		t.Errorf("%d idle connections still open %v after the header timeout", open, 5*time.Second)
	}
	if d := last.Sub(lastDial); d > rht+time.Second {
		t.Errorf("last idle connection closed %v after the last dial, want within readHeader %v + 1s", d, rht)
	}
}
