package h2relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// rawClient speaks HTTP/2 frames to the relay directly.
type rawClient struct {
	t   *testing.T
	c   net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	rc := &rawClient{t: t, c: c, fr: http2.NewFramer(c, c)}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.enc = hpack.NewEncoder(&rc.buf)
	io.WriteString(c, http2.ClientPreface)
	rc.fr.WriteSettings()
	return rc
}

func (rc *rawClient) headers(id uint32, end bool, fields ...string) {
	rc.t.Helper()
	rc.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		rc.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.buf.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		rc.t.Fatal(err)
	}
}

// response reads frames until stream id ends or is reset, answering the
// relay's SETTINGS. It returns the :status (0 if none) and the RST code.
func (rc *rawClient) response(id uint32) (status string, rst http2.ErrCode, goaway bool) {
	rc.t.Helper()
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			return status, rst, true
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				rc.fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				if v := f.PseudoValue("status"); v != "" {
					status = v
				}
				if f.StreamEnded() {
					return status, 0, false
				}
			}
		case *http2.DataFrame:
			if f.StreamID == id && f.StreamEnded() {
				return status, 0, false
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return status, f.ErrCode, false
			}
		case *http2.GoAwayFrame:
			return status, f.ErrCode, true
		}
	}
}

// startH2CBackend serves h over h2c with prior knowledge (and HTTP/1.1).
func startH2CBackend(t *testing.T, h http.Handler) string { return testnet.H2CServer(t, h) }

// TestLargeHeadersRejected: a header list above the limit is answered 431
// without reaching the endpoint, and the connection goes on.
func TestLargeHeadersRejected(t *testing.T) {
	var hits int
	var mu sync.Mutex
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		fmt.Fprint(w, "ok")
	}))
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{be}}})
	rc := dialRaw(t, p.addr)
	// 30 references to one indexed 3 KiB field: a small block that
	// decodes to about 90 KiB.
	big := strings.Repeat("x", 3000)
	fields := []string{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/"}
	for range 30 {
		fields = append(fields, "x-big", big)
	}
	rc.headers(1, true, fields...)
	if st, rst, ga := rc.response(1); st != "431" || ga {
		t.Fatalf("got status %q rst %v goaway %v, want 431", st, rst, ga)
	}
	rc.headers(3, true, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/")
	if st, rst, ga := rc.response(3); st != "200" {
		t.Fatalf("next request: status %q rst %v goaway %v", st, rst, ga)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 1 {
		t.Errorf("endpoint saw %d requests, want 1", hits)
	}
}

// TestMalformedRequests: requests RFC 9113 section 8 calls malformed are
// reset with PROTOCOL_ERROR.
func TestMalformedRequests(t *testing.T) {
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{be}}})
	base := []string{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/"}
	cases := map[string][]string{
		"connection header":  append(append([]string{}, base...), "connection", "keep-alive"),
		"te gzip":            append(append([]string{}, base...), "te", "gzip"),
		"no path":            base[:6],
		"empty path":         append(append([]string{}, base[:6]...), ":path", ""),
		"bad content-length": append(append([]string{}, base...), "content-length", "x"),
	}
	rc := dialRaw(t, p.addr)
	id := uint32(1)
	for name, fields := range cases {
		rc.headers(id, true, fields...)
		if _, rst, ga := rc.response(id); rst != http2.ErrCodeProtocol || ga {
			t.Errorf("%s: rst %v goaway %v, want RST_STREAM PROTOCOL_ERROR", name, rst, ga)
		}
		id += 2
	}
}

// TestHTTPThroughRelay: plain HTTP/2 requests (x/net client) with bodies
// both ways, forwarding headers, and a 503 without endpoints.
func TestHTTPThroughRelay(t *testing.T) {
	type seen struct {
		h    http.Header
		host string
		body string
	}
	got := make(chan seen, 1)
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Header.Clone(), r.Host, string(b)}
		w.Header().Set("X-Kept", "yes")
		w.Header().Set("Trailer", "X-T")
		w.Write(bytes.Repeat([]byte("y"), 100000))
		w.Header().Set("X-T", "t")
	}))
	r := &testRouter{addrs: []string{be}}
	p := startRelay(t, Config{Router: r})
	c := &http.Client{Transport: &http2.Transport{AllowHTTP: true, DialTLSContext: dialPlain}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("POST", "http://"+p.addr+"/p?q=1", strings.NewReader(strings.Repeat("z", 200000)))
	req.Host = "app.example"
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) != 100000 || resp.Header.Get("X-Kept") != "yes" || resp.Trailer.Get("X-T") != "t" {
		t.Fatalf("response %d, %d bytes, header %v trailer %v", resp.StatusCode, len(body), resp.Header, resp.Trailer)
	}
	s := <-got
	if s.host != "app.example" || len(s.body) != 200000 {
		t.Errorf("endpoint saw host %q, %d body bytes", s.host, len(s.body))
	}
	if xff := s.h.Get("X-Forwarded-For"); xff != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", xff)
	}
	if s.h.Get("X-Forwarded-Proto") != "http" || s.h.Get("Forwarded") != `for=127.0.0.1;proto=http;host="app.example"` {
		t.Errorf("forwarding headers %v", s.h)
	}
	r.exclude(be)
	resp, err = c.Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("no endpoint: %d, want 503", resp.StatusCode)
	}
}

// TestShutdownTwoStepGoAway: Shutdown sends GOAWAY with the largest stream
// id and a PING, then, once the PING is acknowledged, GOAWAY with the last
// stream accepted; the stream in flight completes and the connection
// closes.
func TestShutdownTwoStepGoAway(t *testing.T) {
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, "done")
	}))
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{be}}})
	rc := dialRaw(t, p.addr)
	req := []string{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/"}
	rc.headers(1, true, req...)
	time.Sleep(50 * time.Millisecond)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- p.srv.Shutdown(ctx)
	}()
	var goaways []uint32
	status, ended, closed := "", false, false
	for !closed {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			closed = true
			break
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				rc.fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			goaways = append(goaways, f.LastStreamID)
			if len(goaways) == 2 {
				// Opened after the final GOAWAY: ignored.
				rc.headers(3, true, req...)
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				rc.fr.WritePing(true, f.Data)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 3 {
				t.Error("stream 3, opened after GOAWAY, was answered")
			}
			if v := f.PseudoValue("status"); v != "" {
				status = v
			}
		case *http2.DataFrame:
			ended = ended || f.StreamID == 1 && f.StreamEnded()
		}
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if len(goaways) != 2 || goaways[0] != 1<<31-1 || goaways[1] != 1 {
		t.Errorf("GOAWAY last stream ids %v, want [2147483647 1]", goaways)
	}
	if status != "200" || !ended {
		t.Errorf("stream 1: status %q, ended %v", status, ended)
	}
}
