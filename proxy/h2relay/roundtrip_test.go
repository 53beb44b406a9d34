package h2relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestRoundTripGET: a GET reaches an x/net HTTP/2 endpoint with the
// request's method, authority, path and fields (connection-specific ones
// dropped, TE kept as trailers), and its response comes back whole.
func TestRoundTripGET(t *testing.T) {
	type seen struct {
		proto, method, host, uri string
		header                   http.Header
	}
	got := make(chan seen, 1)
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Proto, r.Method, r.Host, r.RequestURI, r.Header.Clone()}
		w.Header().Set("X-From", "endpoint")
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	}))
	srv := newRoundTripper(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := newRequest(t, ctx, "GET", e.addr, "/a/b?x=1&y=%20", nil)
	req.Host = "example.test"
	req.Header.Set("X-Custom", "v1")
	req.Header.Add("X-Custom", "v2")
	req.Header.Set("Connection", "keep-alive")
	req.Header.Set("Keep-Alive", "300")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("Te", "gzip, trailers")
	resp, err := srv.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "hello" {
		t.Fatalf("body %q, %v", body, err)
	}
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || resp.Header.Get("X-From") != "endpoint" || resp.ContentLength != 5 {
		t.Fatalf("response %d %s %v content-length %d", resp.StatusCode, resp.Proto, resp.Header, resp.ContentLength)
	}
	s := <-got
	if s.proto != "HTTP/2.0" || s.method != "GET" || s.host != "example.test" || s.uri != "/a/b?x=1&y=%20" {
		t.Errorf("endpoint saw %s %s host %q uri %q", s.proto, s.method, s.host, s.uri)
	}
	if v := s.header.Values("X-Custom"); len(v) != 2 || v[0] != "v1" || v[1] != "v2" {
		t.Errorf("X-Custom: %q", v)
	}
	for _, h := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Upgrade"} {
		if v := s.header.Get(h); v != "" {
			t.Errorf("%s reached the endpoint: %q", h, v)
		}
	}
	if v := s.header.Get("Te"); v != "trailers" {
		t.Errorf("TE: %q, want trailers", v)
	}
	eventually(t, 2*time.Second, func() bool { return upActive(srv, e.addr) == 0 }, "the stream's slot released")
}

// TestRoundTripPOSTLarge: 4 MiB up and echoed back down at once, with
// windows far smaller than the body, so that both directions wait on flow
// control; both arrive intact (SHA-256), and the endpoint's digest comes
// back as a trailer.
func TestRoundTripPOSTLarge(t *testing.T) {
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sha256")
		h := sha256.New()
		if _, err := io.Copy(w, io.TeeReader(r.Body, h)); err != nil {
			return
		}
		w.Header().Set("X-Sha256", hex.EncodeToString(h.Sum(nil)))
	}))
	srv := newRoundTripper(t, Config{StreamWindow: 64 << 10, ConnWindow: 128 << 10})
	const size = 4 << 20
	payload := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	want := sha256.Sum256(payload)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := newRequest(t, ctx, "POST", e.addr, "/echo", bytes.NewReader(payload))
	if req.ContentLength != size {
		t.Fatalf("content length %d", req.ContentLength)
	}
	resp, err := srv.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, ok := resp.Trailer["X-Sha256"]; !ok {
		t.Errorf("declared trailer missing before the body: %v", resp.Trailer)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", n, err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("echoed %d bytes of %d, digest equal %v", n, size, bytes.Equal(h.Sum(nil), want[:]))
	}
	if got := resp.Trailer.Get("X-Sha256"); got != hex.EncodeToString(want[:]) {
		t.Fatalf("endpoint digest %q, want %x", got, want)
	}
}

// TestRoundTripStreamingBodyTrailers: a body of unknown length, written
// while the round trip runs, reaches the endpoint in full with the
// request's trailer, and the response's trailers come back.
func TestRoundTripStreamingBodyTrailers(t *testing.T) {
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Trailer", "X-Got-Sum, X-Got-Length")
		w.Header().Set("X-Cl", fmt.Sprint(r.ContentLength))
		w.WriteHeader(200)
		io.WriteString(w, "ok")
		w.Header().Set("X-Got-Sum", r.Trailer.Get("X-Sum")+"="+hex.EncodeToString(h.Sum(nil)))
		w.Header().Set("X-Got-Length", fmt.Sprint(n))
	}))
	srv := newRoundTripper(t, Config{StreamWindow: 32 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	req := newRequest(t, ctx, "PUT", e.addr, "/up", pr)
	req.Trailer = http.Header{"X-Sum": nil}
	sum := sha256.New()
	const chunks, chunk = 40, 10000
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, chunk)
		for i := range chunks {
			for j := range buf {
				buf[j] = byte(i + j)
			}
			sum.Write(buf)
			if _, err := pw.Write(buf); err != nil {
				werr <- err
				return
			}
		}
		req.Trailer.Set("X-Sum", hex.EncodeToString(sum.Sum(nil)))
		werr <- pw.Close()
	}()
	resp, err := srv.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "ok" {
		t.Fatalf("body %q, %v (status %d)", body, err, resp.StatusCode)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	digest := hex.EncodeToString(sum.Sum(nil))
	if got := resp.Trailer.Get("X-Got-Sum"); got != digest+"="+digest {
		t.Errorf("endpoint got trailer=digest %q, want %s=%s", got, digest, digest)
	}
	if got := resp.Trailer.Get("X-Got-Length"); got != fmt.Sprint(chunks*chunk) {
		t.Errorf("endpoint got %s bytes, want %d", got, chunks*chunk)
	}
	if cl := resp.Header.Get("X-Cl"); cl != "-1" {
		t.Errorf("endpoint saw content length %s, want unknown (-1)", cl)
	}
}

// TestRoundTripGRPC: a gRPC call made by hand through RoundTrip to a
// grpc-go server: its grpc-status arrives in Trailer after the body.
func TestRoundTripGRPC(t *testing.T) {
	b := startBackend(t)
	srv := newRoundTripper(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// An empty HealthCheckRequest: uncompressed, length 0.
	req := newRequest(t, ctx, "POST", b.addr, "/grpc.health.v1.Health/Check", bytes.NewReader([]byte{0, 0, 0, 0, 0}))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := srv.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// HealthCheckResponse{status: SERVING}: field 1 varint 1.
	if !bytes.Equal(msg, []byte{0, 0, 0, 0, 2, 0x08, 0x01}) {
		t.Errorf("message %x", msg)
	}
	if st := resp.Trailer.Get("Grpc-Status"); st != "0" {
		t.Errorf("grpc-status %q, trailers %v", st, resp.Trailer)
	}
}

// TestRoundTripNoBody: HEAD keeps the endpoint's Content-Length with no
// body; 204 has none; a 103 Early Hints before the response is skipped.
func TestRoundTripNoBody(t *testing.T) {
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("Content-Length", "10")
		case "/204":
			w.WriteHeader(204)
		case "/103":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(103)
			io.WriteString(w, "final")
		}
	}))
	srv := newRoundTripper(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []struct {
		method, path string
		status       int
		cl           int64
		body         string
	}{
		{"HEAD", "/head", 200, 10, ""},
		{"GET", "/204", 204, 0, ""},
		{"GET", "/103", 200, 5, "final"},
	} {
		resp, err := srv.RoundTrip(newRequest(t, ctx, c.method, e.addr, c.path, nil))
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != c.body || resp.StatusCode != c.status || resp.ContentLength != c.cl {
			t.Errorf("%s %s: %d content-length %d body %q err %v; want %d %d %q", c.method, c.path,
				resp.StatusCode, resp.ContentLength, body, err, c.status, c.cl, c.body)
		}
	}
	eventually(t, 2*time.Second, func() bool { return upActive(srv, e.addr) == 0 }, "every slot released")
}

// TestRoundTripCancelResponseBody: cancelling the request's context while
// the response body streams resets the stream at the endpoint, and the
// body read fails with the context's error.
func TestRoundTripCancelResponseBody(t *testing.T) {
	endpointDone := make(chan error, 1)
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 64<<10))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		endpointDone <- r.Context().Err()
	}))
	srv := newRoundTripper(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := srv.RoundTrip(newRequest(t, ctx, "GET", e.addr, "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.Copy(io.Discard, resp.Body)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
	recv(t, endpointDone, "the endpoint to see the cancel")
	eventually(t, 2*time.Second, func() bool { return upActive(srv, e.addr) == 0 }, "the stream's slot released")
}

// TestRoundTripCancelRequestBody: cancelling while the request body is on
// its way (no response yet) resets the stream at the endpoint, RoundTrip
// returns the context's error, and the body is closed (its writer fails).
func TestRoundTripCancelRequestBody(t *testing.T) {
	got := make(chan int64, 1)
	endpointErr := make(chan error, 1)
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 16<<10)
		n, err := io.ReadFull(r.Body, buf)
		got <- int64(n)
		if err != nil {
			return
		}
		_, err = io.Copy(io.Discard, r.Body)
		endpointErr <- err
	}))
	srv := newRoundTripper(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	go pw.Write(make([]byte, 16<<10)) // ends when the body is read or closed
	rt := fetch(func() (*http.Response, error) {
		return srv.RoundTrip(newRequest(t, ctx, "POST", e.addr, "/", pr))
	})
	if n := recv(t, got, "the endpoint to read"); n != 16<<10 {
		t.Fatalf("endpoint read %d bytes", n)
	}
	cancel()
	if err := recv(t, rt, "RoundTrip to return after the cancel").err; !errors.Is(err, context.Canceled) || IsRetryable(err) {
		t.Fatalf("RoundTrip: %v, want context.Canceled (not retryable)", err)
	}
	if err := recv(t, endpointErr, "the endpoint to see the reset"); err == nil {
		t.Fatal("the endpoint read the body to its end")
	}
	if _, err := pw.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("write to the body after the cancel: %v, want io.ErrClosedPipe", err)
	}
	eventually(t, 2*time.Second, func() bool { return upActive(srv, e.addr) == 0 }, "the stream's slot released")
}

// TestRoundTripBodyCloseEarly: closing the response body before its end
// resets the stream (the endpoint's writes fail) and frees its slot; reads
// after Close fail.
func TestRoundTripBodyCloseEarly(t *testing.T) {
	writeErr := make(chan error, 1)
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 16<<10)
		for range 1 << 12 { // at most 64 MiB
			if _, err := w.Write(chunk); err != nil {
				writeErr <- err
				return
			}
			w.(http.Flusher).Flush()
		}
		writeErr <- nil
	}))
	srv := newRoundTripper(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := srv.RoundTrip(newRequest(t, ctx, "GET", e.addr, "/", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 10)); !errors.Is(err, errBodyClosed) {
		t.Errorf("read after Close: %v", err)
	}
	if err := recv(t, writeErr, "the endpoint's writes to fail"); err == nil {
		t.Fatal("the endpoint wrote 64 MiB to a closed body")
	}
	eventually(t, 2*time.Second, func() bool { return upActive(srv, e.addr) == 0 }, "the stream's slot released")
}

// TestRoundTripResponseHeaderTooLarge: a response header list over
// MaxHeaderListSize fails the round trip (not retryable); the connection
// serves the next request.
func TestRoundTripResponseHeaderTooLarge(t *testing.T) {
	// 40 fields of 500 bytes: about 21 KiB as the limit counts, each field
	// well under it (one string longer than the limit is an HPACK error
	// of the whole connection).
	rng := rand.New(rand.NewPCG(5, 6))
	values := make([]string, 40)
	for i := range values {
		var v strings.Builder
		for range 500 {
			v.WriteByte(byte('a' + rng.IntN(26)))
		}
		values[i] = v.String()
	}
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			for i, v := range values {
				w.Header().Set(fmt.Sprintf("X-Big-%d", i), v)
			}
		}
		io.WriteString(w, "ok")
	}))
	srv := newRoundTripper(t, Config{MaxHeaderListSize: 16 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := srv.RoundTrip(newRequest(t, ctx, "GET", e.addr, "/big", nil))
	var ue *UpstreamError
	if !errors.As(err, &ue) || !strings.Contains(ue.Reason, "too large") || IsRetryable(err) {
		t.Fatalf("RoundTrip: %v, want a non-retryable UpstreamError for the header size", err)
	}
	resp, err := srv.RoundTrip(newRequest(t, ctx, "GET", e.addr, "/small", nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("next request: %q", body)
	}
	if n := e.conns.Load(); n != 1 {
		t.Errorf("endpoint saw %d connections, want 1", n)
	}
}

// TestRoundTripEndpointDown: nothing listens: a DialError, retryable, and
// the Observer hears of it.
func TestRoundTripEndpointDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	obs := &testObserver{}
	srv := newRoundTripper(t, Config{Observer: obs})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := &closeCounter{Reader: strings.NewReader("payload")}
	req := newRequest(t, ctx, "POST", addr, "/", body)
	_, err = srv.RoundTrip(req)
	var de *DialError
	if !errors.As(err, &de) || de.Addr != addr || !IsRetryable(err) {
		t.Fatalf("RoundTrip: %v, want a retryable DialError for %s", err, addr)
	}
	obs.mu.Lock()
	dials := obs.dials
	obs.mu.Unlock()
	if dials != 1 {
		t.Errorf("DialFailed %d times, want 1", dials)
	}
	if body.read || body.closed != 1 {
		t.Errorf("request body read %v, closed %d times; want unread, closed once", body.read, body.closed)
	}
}

// closeCounter is a request body that records reads and closes.
type closeCounter struct {
	io.Reader
	mu     sync.Mutex
	read   bool
	closed int
}

func (c *closeCounter) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.read = true
	c.mu.Unlock()
	return c.Reader.Read(p)
}

func (c *closeCounter) Close() error {
	c.mu.Lock()
	c.closed++
	c.mu.Unlock()
	return nil
}

// TestRoundTripRefusedStream: an endpoint that answers RST_STREAM
// REFUSED_STREAM: retryable, and an http2.StreamError with that code.
func TestRoundTripRefusedStream(t *testing.T) {
	e := startRawEndpoint(t, func(fr *http2.Framer, f *http2.MetaHeadersFrame) {
		fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
	})
	obs := &testObserver{}
	srv := newRoundTripper(t, Config{Observer: obs})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := srv.RoundTrip(newRequest(t, ctx, "GET", e.addr, "/", nil))
	var se http2.StreamError
	if !IsRetryable(err) || !errors.As(err, &se) || se.Code != http2.ErrCodeRefusedStream {
		t.Fatalf("RoundTrip: %v, want retryable REFUSED_STREAM", err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.dials != 0 {
		t.Errorf("DialFailed %d times for a refused stream", obs.dials)
	}
}

// TestRoundTripResetNotRetryable: a reset other than REFUSED_STREAM after
// the request went out is not retryable.
func TestRoundTripResetNotRetryable(t *testing.T) {
	e := startRawEndpoint(t, func(fr *http2.Framer, f *http2.MetaHeadersFrame) {
		fr.WriteRSTStream(f.StreamID, http2.ErrCodeInternal)
	})
	srv := newRoundTripper(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := srv.RoundTrip(newRequest(t, ctx, "GET", e.addr, "/", nil))
	var se http2.StreamError
	if IsRetryable(err) || !errors.As(err, &se) || se.Code != http2.ErrCodeInternal {
		t.Fatalf("RoundTrip: %v, want non-retryable INTERNAL_ERROR", err)
	}
}

// TestRoundTripGoAwayExcluded: an endpoint that answers the request with
// GOAWAY last stream 0 did not process it: retryable.
func TestRoundTripGoAwayExcluded(t *testing.T) {
	e := startRawEndpoint(t, func(fr *http2.Framer, f *http2.MetaHeadersFrame) {
		fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	srv := newRoundTripper(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := srv.RoundTrip(newRequest(t, ctx, "POST", e.addr, "/", strings.NewReader("body")))
	var ue *UpstreamError
	if !IsRetryable(err) || !errors.As(err, &ue) || !ue.NotProcessed {
		t.Fatalf("RoundTrip: %v, want retryable (not processed)", err)
	}
}

// TestRoundTripInvalidRequest: requests that cannot go out fail before
// anything is dialled, and their body is closed.
func TestRoundTripInvalidRequest(t *testing.T) {
	obs := &testObserver{}
	srv := newRoundTripper(t, Config{Observer: obs, Dial: func(context.Context, string, string) (net.Conn, error) {
		t.Error("dialled for an invalid request")
		return nil, errors.New("no")
	}})
	ctx := context.Background()
	for name, mangle := range map[string]func(*http.Request){
		"CONNECT":    func(r *http.Request) { r.Method = "CONNECT" },
		"no host":    func(r *http.Request) { r.URL.Host = "" },
		"bad name":   func(r *http.Request) { r.Header["X Bad"] = []string{"v"} },
		"bad value":  func(r *http.Request) { r.Header.Set("X-Bad", "a\r\nb") },
		"bad method": func(r *http.Request) { r.Method = "GET /" },
		"cancelled":  func(r *http.Request) { c, cancel := context.WithCancel(ctx); cancel(); *r = *r.WithContext(c) },
	} {
		body := &closeCounter{Reader: strings.NewReader("x")}
		req := newRequest(t, ctx, "POST", "endpoint:1", "/", body)
		mangle(req)
		if _, err := srv.RoundTrip(req); err == nil || IsRetryable(err) {
			t.Errorf("%s: RoundTrip: %v, want a non-retryable error", name, err)
		}
		if body.read || body.closed != 1 {
			t.Errorf("%s: body read %v, closed %d times", name, body.read, body.closed)
		}
	}
}

// errReader fails its first Read after n bytes.
type errReader struct {
	n   int
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

// TestRoundTripRequestBodyFails: a body shorter than its Content-Length,
// or one whose Read fails, fails the round trip with that cause (not
// retryable) and resets the stream at the endpoint.
func TestRoundTripRequestBodyFails(t *testing.T) {
	reset := make(chan error, 2)
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		reset <- err
	}))
	srv := newRoundTripper(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errBroken := errors.New("client went away")
	for _, c := range []struct {
		name string
		body io.Reader
		cl   int64
		want string
	}{
		{"short", strings.NewReader("12345"), 10, "shorter than its Content-Length"},
		{"read error", &errReader{n: 40 << 10, err: errBroken}, -1, errBroken.Error()},
	} {
		req := newRequest(t, ctx, "POST", e.addr, "/", c.body)
		req.ContentLength = c.cl
		_, err := srv.RoundTrip(req)
		if err == nil || !strings.Contains(err.Error(), c.want) || IsRetryable(err) {
			t.Errorf("%s: RoundTrip: %v, want a non-retryable error saying %q", c.name, err, c.want)
		}
		if err := recv(t, reset, "the endpoint to see the reset"); err == nil {
			t.Errorf("%s: the endpoint read a complete body", c.name)
		}
	}
}

// TestRoundTripChurn: 240 round trips on 8 workers, each echoing a 48 KiB
// body with a small window, ended in turn by reading to the end, by a
// cancel mid-response, or by an early Close; the complete ones arrive
// intact, and afterwards no stream slot and no round trip is left.
func TestRoundTripChurn(t *testing.T) {
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	}))
	srv := newRoundTripper(t, Config{StreamWindow: 16 << 10, ConnWindow: 64 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const workers, each, size = 8, 30, 48 << 10
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				rctx, rcancel := context.WithCancel(ctx)
				resp, err := srv.RoundTrip(newRequest(t, rctx, "POST", e.addr, "/", bytes.NewReader(payload)))
				if err != nil {
					rcancel()
					t.Errorf("worker %d round trip %d: %v", w, i, err)
					return
				}
				switch (w + i) % 3 {
				case 0:
					got, err := io.ReadAll(resp.Body)
					if err != nil || !bytes.Equal(got, payload) {
						t.Errorf("worker %d round trip %d: %d bytes, %v", w, i, len(got), err)
					}
				case 1:
					io.ReadFull(resp.Body, make([]byte, 1000))
					rcancel()
					if _, err := io.Copy(io.Discard, resp.Body); err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("worker %d round trip %d: read after cancel: %v", w, i, err)
					}
				case 2:
					io.ReadFull(resp.Body, make([]byte, 1000))
				}
				resp.Body.Close()
				rcancel()
			}
		}()
	}
	wg.Wait()
	eventually(t, 5*time.Second, func() bool { return upActive(srv, e.addr) == 0 }, "every stream slot released")
	srv.rtMu.Lock()
	left := srv.roundTrips
	srv.rtMu.Unlock()
	if left != 0 {
		t.Errorf("%d round trips still counted in flight", left)
	}
}
