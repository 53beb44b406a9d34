package httpproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// recordingBackend is an HTTP/1 endpoint that records the method, the
// framing headers and the body of every request it gets.
type recordingBackend struct {
	mu   sync.Mutex
	reqs []string
}

func (b *recordingBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.reqs = append(b.reqs, r.Method+" "+r.URL.Path+" cl="+strings.Join(r.Header["Content-Length"], ",")+
		" te="+strings.Join(r.TransferEncoding, ",")+" body="+string(body))
	b.mu.Unlock()
	io.WriteString(w, "ok")
}

func (b *recordingBackend) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.reqs...)
}

// rawExchange writes raw to the proxy and returns the status lines of the
// responses read: want of them, then any more that come within a short
// wait, until the proxy closes or goes quiet.
func rawExchange(t *testing.T, addr, raw string, want int) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var statuses []string
	br := bufio.NewReader(c)
	for {
		wait := 10 * time.Second
		if len(statuses) >= want {
			wait = 300 * time.Millisecond
		}
		c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return statuses
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.Status)
	}
}

// TestRequestSmuggling sends the classic desynchronisation payloads. The
// proxy must never let the endpoint frame a request differently from how it
// framed it. A request with both Content-Length and Transfer-Encoding is
// refused with 400 and its connection closed (RFC 9112 section 6.3), first
// on its connection or pipelined after a good one, so that nothing sent
// after it is read as a request. Conflicting lengths, unknown codings,
// malformed header names and bad chunk sizes are refused (400, 501) before
// any endpoint sees them, never answered 502.
func TestRequestSmuggling(t *testing.T) {
	b := &recordingBackend{}
	p := startHTTPProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, startHTTPBackend(t, b))

	for _, tc := range []struct {
		name     string
		raw      string
		statuses []string // responses the client gets, in order
		backend  []string // requests the endpoint sees, in order
		// cutBody: the error is in the body, found while the request is on
		// its way: the endpoint may see its start, never a byte of body.
		cutBody bool
	}{
		{"CL.TE: refused, the pipelined request never read",
			"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
			[]string{"400 Bad Request"}, nil, false},
		{"TE.CL: refused",
			"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n1c\r\nGET /smuggled HTTP/1.1\r\nX: y\r\n0\r\n\r\n",
			[]string{"400 Bad Request"}, nil, false},
		{"CL.TE pipelined after a good request and its chunked body",
			"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" +
				"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
			[]string{"200 OK", "400 Bad Request"},
			[]string{"POST /ok cl= te=chunked body=hello"}, false},
		{"Content-Length body that looks like the headers, then a good request",
			"POST /c1 HTTP/1.1\r\nHost: x\r\nContent-Length: 54\r\n\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
				"GET /after HTTP/1.1\r\nHost: x\r\n\r\n",
			[]string{"200 OK", "200 OK"},
			[]string{"POST /c1 cl=54 te= body=Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET /after cl= te= body="}, false},
		{"bad chunk size",
			"POST /f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
			[]string{"400 Bad Request"}, nil, true},
		{"chunk size overflowing",
			"POST /g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
			[]string{"400 Bad Request"}, nil, true},
		{"conflicting Content-Length",
			"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
			[]string{"400 Bad Request"}, nil, false},
		{"unknown transfer coding",
			"POST /d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
			[]string{"501 Not Implemented"}, nil, false},
		{"space before colon",
			"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 2\r\n\r\nhi",
			[]string{"400 Bad Request: invalid header name"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(b.seen())
			got := rawExchange(t, p.addr, tc.raw, len(tc.statuses))
			// Only this case's requests: the endpoint may record one of
			// the previous case after its client was answered (a body
			// cut short is answered by longhaul, not the endpoint).
			var seen []string
			for _, r := range b.seen()[before:] {
				if f := strings.Fields(r); len(f) > 1 && strings.Contains(tc.raw, " "+f[1]+" HTTP/1.1\r\n") {
					seen = append(seen, r)
				}
			}
			if strings.Join(got, "|") != strings.Join(tc.statuses, "|") {
				t.Errorf("client got %q, want %q", got, tc.statuses)
			}
			if tc.cutBody {
				for _, r := range seen {
					if !strings.HasSuffix(r, " body=") {
						t.Errorf("endpoint saw %q, want no body", r)
					}
				}
			} else if strings.Join(seen, "|") != strings.Join(tc.backend, "|") {
				t.Errorf("endpoint saw %q, want %q", seen, tc.backend)
			}
		})
	}
}

// FuzzHTTP1Request sends arbitrary bytes to the HTTP listener as a client
// would. Whatever they are, the proxy answers or closes within a bound,
// the endpoint never gets a request carrying hop-by-hop headers or both
// Content-Length and Transfer-Encoding, and a well-formed request on a new
// connection still works afterwards.
func FuzzHTTP1Request(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET /" + strings.Repeat("a", 70000) + " HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		b := &checkingBackend{}
		p := startHTTPProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, startHTTPBackend(t, b))
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c) // until the proxy closes, or the deadline
		c.Close()
		if bad := b.bad(); bad != "" {
			t.Fatalf("the endpoint got %s", bad)
		}
		resp, err := http.Get("http://" + p.addr + "/after")
		if err != nil {
			t.Fatalf("proxy unusable after the input: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("proxy answers %s after the input", resp.Status)
		}
	})
}

// checkingBackend records the first request that breaks the proxy's
// promises about what reaches an endpoint.
type checkingBackend struct {
	mu     sync.Mutex
	broken string
}

func (b *checkingBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var bad string
	switch {
	case len(r.TransferEncoding) > 0 && r.Header.Get("Content-Length") != "":
		bad = "Content-Length with Transfer-Encoding"
	case r.Header.Get("Connection") != "" || r.Header.Get("Keep-Alive") != "" || r.Header.Get("Proxy-Connection") != "":
		bad = fmt.Sprintf("hop-by-hop headers %v", r.Header)
	}
	if bad != "" {
		b.mu.Lock()
		if b.broken == "" {
			b.broken = bad
		}
		b.mu.Unlock()
	}
	io.Copy(io.Discard, r.Body)
	io.WriteString(w, "ok")
}

func (b *checkingBackend) bad() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.broken
}
