package httpproxy

import (
	"slices"
	"strings"
	"testing"
)

// scanAll feeds in to a new scanner in pieces of size n (all at once for
// n <= 0) and returns the requests it counted and those it flagged.
func scanAll(in []byte, n int) (uint64, []uint64, h1State) {
	var s h1Scanner
	if n <= 0 {
		n = len(in) + 1
	}
	for len(in) > 0 {
		k := min(n, len(in))
		s.scan(in[:k])
		in = in[k:]
	}
	return s.blocks, s.flagged, s.state
}

// TestH1ScannerVerdicts: the scanner follows request framing (bodies by
// Content-Length and by chunks, trailers) and flags exactly the requests
// with both framing headers, counting only those net/http hands a handler.
func TestH1ScannerVerdicts(t *testing.T) {
	get := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	both := "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	for _, tc := range []struct {
		name    string
		in      string
		blocks  uint64
		flagged []uint64
		off     bool
	}{
		{"plain", get + get, 2, nil, false},
		{"both, pipelined second", get + both + get, 3, []uint64{2}, false},
		{"case and spacing of names", "POST / HTTP/1.1\r\nCONTENT-length:5\r\ntransfer-ENCODING:\tchunked\r\n\r\n0\r\n\r\n" + get, 2, []uint64{1}, false},
		{"content-length body holding header lines", "POST / HTTP/1.1\r\nContent-Length: 30\r\n\r\nTransfer-Encoding: chunked\r\n\r\n" + get, 2, nil, false},
		{"chunk data holding header lines, extensions, trailers",
			"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1e;ext=1\r\nContent-Length: 3\r\nX: yyyy\r\n\r\n\r\n0\r\nContent-Length: 9\r\nT: 1\r\n\r\n" + both,
			2, []uint64{2}, false},
		{"HTTP/1.0 ignores Transfer-Encoding", "POST / HTTP/1.0\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nhi" + both, 2, []uint64{2}, false},
		{"OPTIONS * is answered by net/http", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n" + both, 1, []uint64{1}, false},
		{"OPTIONS on a path reaches the handler", "OPTIONS /x HTTP/1.1\r\nHost: x\r\n\r\n" + both, 2, []uint64{2}, false},
		{"folded line is no header name", "GET / HTTP/1.1\r\nX: a\r\n Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1, nil, false},
		{"HTTP/2 prior knowledge turns it off", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + both, 0, nil, true},
		{"bad chunk size turns it off", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + both, 1, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []int{0, 1, 3, 7} {
				blocks, flagged, st := scanAll([]byte(tc.in), n)
				if blocks != tc.blocks || !slices.Equal(flagged, tc.flagged) || (st == stOff) != tc.off {
					t.Errorf("pieces of %d: got %d requests, flagged %v, off %v; want %d, %v, %v",
						n, blocks, flagged, st == stOff, tc.blocks, tc.flagged, tc.off)
				}
			}
		})
	}
}

// TestH1ScannerBoundsVerdicts: a client that pipelines request after
// request with both headers, far ahead of the handlers, is not followed
// further than maxFlagged verdicts.
func TestH1ScannerBoundsVerdicts(t *testing.T) {
	both := "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	_, flagged, st := scanAll([]byte(strings.Repeat(both, 10*maxFlagged)), 0)
	if len(flagged) != maxFlagged || st != stOff {
		t.Errorf("kept %d verdicts (off %v), want %d then off", len(flagged), st == stOff, maxFlagged)
	}
}

// FuzzH1Scanner: whatever the bytes, the scanner does not panic, keeps at
// most maxFlagged verdicts, and reaches the same verdicts however the
// stream is cut into reads.
func FuzzH1Scanner(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
		"OPTIONS * HTTP/1.1\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		f.Add([]byte(seed), uint8(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, piece uint8) {
		b1, f1, s1 := scanAll(in, 0)
		b2, f2, s2 := scanAll(in, int(piece%16)+1)
		if b1 != b2 || !slices.Equal(f1, f2) || s1 != s2 {
			t.Fatalf("whole: %d %v %d; in pieces of %d: %d %v %d", b1, f1, s1, piece%16+1, b2, f2, s2)
		}
		if len(f1) > maxFlagged {
			t.Fatalf("%d verdicts kept", len(f1))
		}
		for i := 1; i < len(f1); i++ {
			if f1[i] <= f1[i-1] || f1[i] > b1 {
				t.Fatalf("verdicts out of order: %v of %d requests", f1, b1)
			}
		}
	})
}
