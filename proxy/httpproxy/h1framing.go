package httpproxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"

	"github.com/longhaul-proxy/longhaul/proxy/listen"
)

// Refusing HTTP/1 requests that carry both Content-Length and
// Transfer-Encoding (RFC 9112 section 6.3 allows a server to treat them as
// an error, and a proxy that does is not a party to request smuggling).
// net/http frames such a request by Transfer-Encoding and deletes
// Content-Length before the handler sees it, so the handler cannot tell;
// framingConn watches the bytes net/http reads instead, follows the
// framing of each request (its header block, then its body by
// Content-Length or chunks) and records which header blocks carried both.
// The handler asks, request by request, in order (requestHadBoth).
//
// The watcher is only a witness: net/http still parses and frames every
// request. Where the two could disagree (input net/http rejects), net/http
// closes the connection, so no later verdict is read. TLS connections are
// not watched (net/http must see the *tls.Conn itself).

// framingConn is a plain HTTP/1 client connection handed to net/http.
type framingConn struct {
	net.Conn

	mu sync.Mutex
	sc h1Scanner
	// served counts the verdicts taken by handlers.
	served uint64
}

// socket returns the connection under c: an upgraded connection's relay
// reads the socket itself, past the watcher (see socketOf).
func (c *framingConn) Socket() net.Conn { return c.Conn }

// CloseWrite half-closes the connection, as net/http does before closing
// one it refused (so that the client reads the answer, not a reset).
func (c *framingConn) CloseWrite() error {
	listen.CloseWrite(c.Conn)
	return nil
}

func (c *framingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.sc.scan(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// next returns whether the next request handed to a handler had both
// Content-Length and Transfer-Encoding.
func (c *framingConn) next() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.served++
	both := false
	for len(c.sc.flagged) > 0 && c.sc.flagged[0] <= c.served {
		both = both || c.sc.flagged[0] == c.served
		c.sc.flagged = c.sc.flagged[1:]
	}
	return both
}

type framingKey struct{}

// framingListener hands net/http its connections, the plain ones watched.
type framingListener struct{ net.Listener }

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if _, isTLS := c.(*tls.Conn); isTLS {
		return c, nil
	}
	return &framingConn{Conn: c}, nil
}

// withFraming is the server's ConnContext part for framingConns.
func withFraming(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framingConn); ok {
		return context.WithValue(ctx, framingKey{}, fc)
	}
	return ctx
}

// requestHadBoth reports whether r, an HTTP/1 request, was sent with both
// Content-Length and Transfer-Encoding. It must be called once for each
// HTTP/1 request a handler gets, in order.
func requestHadBoth(r *http.Request) bool {
	fc, ok := r.Context().Value(framingKey{}).(*framingConn)
	return ok && fc.next()
}

// h1Scanner follows HTTP/1 request framing over a byte stream fed to scan
// in pieces of any size. It keeps a few bytes of state, never a line.
type h1Scanner struct {
	state h1State
	// blocks counts the header blocks seen whose request reaches a
	// handler; flagged lists those of them with both framing headers.
	blocks  uint64
	flagged []uint64

	// The header block being read.
	line    int // lines of the block before the current one
	lineLen int // bytes of the current line so far, CR left out
	// The request line: how many of its first bytes match "PRI *
	// HTTP/2.0" and "OPTIONS * " (-1 once one does not), and its last 8.
	priMatch, optMatch int
	tail               [8]byte
	// A header line: its name's first bytes, lower-cased, until ':'.
	name           [len("transfer-encoding")]byte
	nameLen        int
	inName         bool // no ':' seen yet on this line
	isCL, isTE     bool // the current line's header
	clVal          uint64
	clDigits, clOK bool
	// What the block said so far.
	hasCL, hasTE, http10, byServer bool
	cl                             uint64

	remain uint64 // body or chunk bytes left to skip
	size   uint64 // the chunk size being read
	sizeOK bool
}

type h1State uint8

const (
	stHeaders   h1State = iota // in a header block (request line first)
	stBody                     // remain bytes of a Content-Length body
	stChunkSize                // a chunk-size line
	stChunkExt                 // the rest of a chunk-size line
	stChunkData                // remain bytes of chunk data
	stChunkEnd                 // the CRLF after chunk data
	stTrailers                 // trailer lines after the last chunk
	stOff                      // not HTTP/1 any more, or lost: nothing to follow
)

// maxFlagged bounds the verdicts kept ahead of the handlers; a stream
// that runs further ahead is not followed any more.
const maxFlagged = 64

func (s *h1Scanner) scan(b []byte) {
	for len(b) > 0 && s.state != stOff {
		if s.state == stBody || s.state == stChunkData {
			n := min(uint64(len(b)), s.remain)
			s.remain -= n
			b = b[n:]
			if s.remain == 0 {
				if s.state == stBody {
					s.startBlock()
				} else {
					s.state = stChunkEnd
				}
			}
			continue
		}
		c := b[0]
		b = b[1:]
		switch s.state {
		case stHeaders, stTrailers:
			s.headerByte(c)
		case stChunkSize:
			switch v := hexVal(c); {
			case v >= 0 && s.size < 1<<56:
				s.size, s.sizeOK = s.size<<4|uint64(v), true
			case v >= 0:
				s.state = stOff // too large: net/http refuses it
			case c == '\n':
				s.endChunkSize()
			default:
				s.state = stChunkExt
			}
		case stChunkExt:
			if c == '\n' {
				s.endChunkSize()
			}
		case stChunkEnd:
			if c == '\n' {
				s.state, s.size, s.sizeOK = stChunkSize, 0, false
			}
		}
	}
}

func (s *h1Scanner) endChunkSize() {
	switch {
	case !s.sizeOK:
		s.state = stOff // net/http refuses it
	case s.size == 0:
		s.state, s.line, s.lineLen = stTrailers, 1, 0
	default:
		s.state, s.remain = stChunkData, s.size
	}
}

// startBlock readies the scanner for the next request's header block.
func (s *h1Scanner) startBlock() {
	*s = h1Scanner{blocks: s.blocks, flagged: s.flagged}
}

// headerByte takes one byte of a header block (or of trailers).
func (s *h1Scanner) headerByte(c byte) {
	switch c {
	case '\n':
		s.endLine()
		return
	case '\r':
		return
	}
	if s.lineLen == 0 {
		// A line starting with a space or tab continues a folded value.
		s.inName = c != ' ' && c != '\t'
		s.nameLen, s.isCL, s.isTE = 0, false, false
	}
	s.lineLen++
	if s.line == 0 {
		s.requestLineByte(c)
		return
	}
	switch {
	case s.inName && c == ':':
		s.inName = false
		name := string(s.name[:min(s.nameLen, len(s.name))])
		s.isCL = s.nameLen == len("content-length") && name == "content-length"
		s.isTE = s.nameLen == len("transfer-encoding") && name == "transfer-encoding"
		s.clVal, s.clDigits, s.clOK = 0, false, true
	case s.inName:
		if s.nameLen < len(s.name) {
			s.name[s.nameLen] = lower(c)
		}
		s.nameLen++
	case s.isCL && '0' <= c && c <= '9':
		if s.clVal > 1<<59 {
			s.clOK = false
		}
		s.clVal, s.clDigits = s.clVal*10+uint64(c-'0'), true
	case s.isCL && c != ' ' && c != '\t':
		s.clOK = false
	}
}

// requestLineByte follows the request line: "PRI * HTTP/2.0" turns the
// scanner off (HTTP/2 with prior knowledge), "OPTIONS * " is answered by
// net/http without a handler, and a request line ending in "HTTP/1.0"
// makes net/http ignore Transfer-Encoding.
func (s *h1Scanner) requestLineByte(c byte) {
	const pri, opts = "PRI * HTTP/2.0", "OPTIONS * "
	s.priMatch = prefixMatch(s.priMatch, pri, c)
	if s.priMatch == len(pri) {
		s.state = stOff
	}
	s.optMatch = prefixMatch(s.optMatch, opts, c)
	copy(s.tail[:], s.tail[1:])
	s.tail[len(s.tail)-1] = c
}

// prefixMatch returns how many bytes of want the line matches once c is
// added to the matched bytes (-1: it does not match).
func prefixMatch(matched int, want string, c byte) int {
	switch {
	case matched < 0 || matched == len(want):
		return matched
	case want[matched] == c:
		return matched + 1
	}
	return -1
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// endLine ends a line of a header block; an empty one ends the block.
func (s *h1Scanner) endLine() {
	if s.lineLen == 0 {
		s.endBlock()
		return
	}
	switch {
	case s.line == 0:
		s.http10 = string(s.tail[:]) == "HTTP/1.0"
		s.byServer = s.optMatch == len("OPTIONS * ")
	case s.state == stHeaders && s.isCL && s.clOK && s.clDigits && !s.hasCL:
		s.hasCL, s.cl = true, s.clVal
	case s.state == stHeaders && s.isTE:
		s.hasTE = true
	}
	s.line++
	s.lineLen = 0
}

// endBlock records the verdict of a header block and follows its body.
func (s *h1Scanner) endBlock() {
	if s.state == stTrailers {
		s.startBlock()
		return
	}
	if s.line == 0 {
		s.state = stOff // an empty request line: net/http refuses it
		return
	}
	if !s.byServer {
		s.blocks++
		if s.hasCL && s.hasTE && !s.http10 {
			if len(s.flagged) == maxFlagged {
				s.state = stOff
				return
			}
			s.flagged = append(s.flagged, s.blocks)
		}
	}
	switch {
	case s.hasTE && !s.http10:
		s.state, s.size, s.sizeOK = stChunkSize, 0, false
	case s.hasCL && s.cl > 0:
		s.state, s.remain = stBody, s.cl
	default:
		s.startBlock()
	}
}

// hexVal returns the value of the hex digit c, or -1.
func hexVal(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
