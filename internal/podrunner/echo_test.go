package podrunner

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestEchoHandler checks the echo contract the conformance suite relies
// on, over loopback HTTP/1.1 and h2c.
func TestEchoHandler(t *testing.T) {
	id := Identity{Namespace: "ns", Ingress: "ing", Service: "svc", Pod: "pod-1", HTTPPort: "3000"}
	srv := httptest.NewUnstartedServer(EchoHandler(id))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	h2 := httptest.NewUnstartedServer(h2cOnly(EchoHandler(id)))
	h2.Config.Protocols = srv.Config.Protocols
	h2.Start()
	defer h2.Close()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	h2tr := &http.Transport{Protocols: protos}
	defer h2tr.CloseIdleConnections()

	do := func(rt http.RoundTripper, method, url string, h http.Header) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	decode := func(body []byte) Echo {
		t.Helper()
		var e Echo
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return e
	}

	t.Run("Echo", func(t *testing.T) {
		resp, body := do(tr, "PUT", srv.URL+"//a//b/?x=1&y=2", http.Header{
			"X-Echo-Set-Header": {"X-One: 1, x-two:2", "X-One: 3"},
			"X-Req":             {"a", "b"},
		})
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s %v: %s", resp.Status, resp.Header, body)
		}
		e := decode(body)
		host := strings.TrimPrefix(srv.URL, "http://")
		if e.Path != "//a//b/?x=1&y=2" || e.Host != host || e.Method != "PUT" || e.Proto != "HTTP/1.1" ||
			e.HTTPPort != "3000" || e.Namespace != "ns" || e.Ingress != "ing" || e.Service != "svc" || e.Pod != "pod-1" || e.TLS != nil {
			t.Errorf("echo %+v", e)
		}
		if got := e.Headers["X-Req"]; len(got) != 2 || got[0] != "a" || got[1] != "b" {
			t.Errorf("X-Req echoed as %q", got)
		}
		if got := resp.Header.Get("X-One"); got != "1,3" {
			t.Errorf("X-One: %q, want 1,3", got)
		}
		if got := resp.Header.Values("x-two"); len(got) != 1 || got[0] != "2" {
			t.Errorf("x-two: %q, want 2", got)
		}
		// The raw JSON has exactly the field names the suite decodes.
		var raw map[string]any
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"path", "host", "method", "proto", "headers", "httpPort", "namespace", "ingress", "service", "pod"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("field %q missing in %s", k, body)
			}
		}
	})
	t.Run("Status", func(t *testing.T) {
		for path, want := range map[string]int{"/status/418": 418, "/status/503": 503, "/status/20": 400, "/status/200?x": 400, "//status//302": 400} {
			resp, _ := do(tr, "GET", srv.URL+path, nil)
			if resp.StatusCode != want {
				t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
			}
		}
		resp, body := do(tr, "GET", srv.URL+"/health", nil)
		if resp.StatusCode != 200 || string(body) != "OK" {
			t.Errorf("/health: %s %q", resp.Status, body)
		}
	})
	t.Run("Retry", func(t *testing.T) {
		for i, want := range []int{503, 503, 200, 200} {
			resp, _ := do(tr, "GET", srv.URL+"/retry/?uuid=u1&succeedAfter=2&responseCode=503", nil)
			if resp.StatusCode != want {
				t.Errorf("attempt %d: %d, want %d", i+1, resp.StatusCode, want)
			}
		}
		// Without a response code a failed attempt resets the connection.
		req, _ := http.NewRequest("GET", srv.URL+"/retry/?uuid=u2&succeedAfter=1", nil)
		if resp, err := (&http.Transport{DisableKeepAlives: true}).RoundTrip(req); err == nil {
			resp.Body.Close()
			t.Errorf("first attempt answered %s, want a reset", resp.Status)
		}
		if resp, _ := do(tr, "GET", srv.URL+"/retry/?uuid=u2&succeedAfter=1", nil); resp.StatusCode != 200 {
			t.Errorf("second attempt: %s", resp.Status)
		}
		if resp, _ := do(tr, "GET", srv.URL+"/retry/?succeedAfter=1", nil); resp.StatusCode != 400 {
			t.Errorf("without uuid: %s", resp.Status)
		}
	})
	t.Run("Delay", func(t *testing.T) {
		start := time.Now()
		resp, _ := do(tr, "GET", srv.URL+"/?delay=100ms", nil)
		if d := time.Since(start); resp.StatusCode != 200 || d < 100*time.Millisecond {
			t.Errorf("%s after %v, want 200 after at least 100ms", resp.Status, d)
		}
		if resp, _ := do(tr, "GET", srv.URL+"/?delay=soon", nil); resp.StatusCode != 500 {
			t.Errorf("bad delay: %s", resp.Status)
		}
	})
	t.Run("H2C", func(t *testing.T) {
		resp, body := do(h2tr, "GET", srv.URL+"/x", nil)
		if e := decode(body); resp.StatusCode != 200 || e.Proto != "HTTP/2.0" {
			t.Errorf("h2c on the HTTP port: %s %+v", resp.Status, e)
		}
		resp, body = do(h2tr, "GET", h2.URL+"/x", nil)
		if e := decode(body); resp.StatusCode != 200 || e.Proto != "HTTP/2.0" || e.Pod != "pod-1" {
			t.Errorf("h2c on the h2c port: %s %+v", resp.Status, e)
		}
		if resp, body := do(tr, "GET", h2.URL+"/x", nil); resp.StatusCode != 400 || string(body) != "Expected h2c request" {
			t.Errorf("HTTP/1.1 on the h2c port: %s %q", resp.Status, body)
		}
	})
}

// TestWebSocketEcho: /ws upgrades, names the pod in the answer, echoes
// text and binary messages as sent, and closeWebSockets ends the sessions
// without a close frame (as a pod's end does) and refuses new ones.
func TestWebSocketEcho(t *testing.T) {
	h := newEchoHandler(Identity{Namespace: "ns", Pod: "pod-1", HTTPPort: "3000"})
	srv := httptest.NewServer(h)
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + WebSocketPath
	c, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer c.Close()
	if got := resp.Header.Get(HeaderEchoPod); got != "pod-1" || resp.Header.Get(HeaderEchoNamespace) != "ns" {
		t.Errorf("upgrade answered %s %q, %s %q; want pod-1 and ns", HeaderEchoPod, got, HeaderEchoNamespace, resp.Header.Get(HeaderEchoNamespace))
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, m := range []struct {
		typ  int
		data string
	}{{websocket.TextMessage, "1"}, {websocket.BinaryMessage, "\x00\xffbin"}, {websocket.TextMessage, strings.Repeat("x", 70000)}} {
		if err := c.WriteMessage(m.typ, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.ReadMessage()
		if err != nil || typ != m.typ || string(got) != m.data {
			t.Fatalf("message %d: echoed type %d, %d bytes (%v); want type %d, %d bytes as sent", i, typ, len(got), err, m.typ, len(m.data))
		}
	}

	h.closeWebSockets()
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if err == nil || errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
		t.Errorf("after closeWebSockets: read %v, want the connection ended without a close frame", err)
	}
	c2, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil {
		c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err = c2.ReadMessage()
		c2.Close()
	}
	if err == nil {
		t.Error("a session opened after closeWebSockets was served")
	}
}
