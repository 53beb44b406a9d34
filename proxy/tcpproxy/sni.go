package tcpproxy

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// TLS passthrough reads the server name (SNI) of a connection's
// ClientHello without terminating TLS: the records that carry the
// ClientHello are read whole, parsed, and then written to the backend
// first, as they came; the relay that follows is the plain splice.

// maxHello bounds the bytes read for a ClientHello: one record of the
// largest plaintext TLS allows (2^14 bytes) and its 5-byte header. A
// ClientHello fragmented over several records must fit too, headers
// included. Real ClientHellos are far smaller (post-quantum key shares
// bring them to about 2 KiB).
const maxHello = recordHeader + maxRecord

const (
	recordHeader    = 5
	maxRecord       = 1 << 14 // TLSPlaintext.length, RFC 8446 5.1
	recordHandshake = 22
	typeClientHello = 1
	extServerName   = 0
	nameTypeHost    = 0
	maxServerName   = 255
)

// Errors of readHello; a read's own error (EOF, a deadline) is wrapped
// instead.
var (
	errNotTLS       = errors.New("not a TLS handshake")
	errHelloTooBig  = fmt.Errorf("ClientHello larger than %d bytes", maxHello)
	errBadHello     = errors.New("malformed ClientHello")
	errHelloTrimmed = errors.New("connection ended inside the ClientHello")
)

// helloBufs are the buffers ClientHellos are read into: a session holds
// one from its accept until the ClientHello was written to its backend.
var helloBufs = sync.Pool{New: func() any { return new([maxHello]byte) }}

// readHello reads from r the TLS records that carry the first handshake
// message, which must be a ClientHello, into buf, and returns the bytes
// read (a prefix of buf) and the server name the ClientHello names (""
// when it names none). It reads nothing past the last record of the
// ClientHello, so the rest of the connection is still r's. An error is
// errNotTLS (the first record is not a TLS handshake), errHelloTooBig,
// errBadHello (with what is wrong) or errHelloTrimmed (each matched by
// errors.Is), or the read's error wrapped (a deadline: os.ErrDeadlineExceeded).
// It does not allocate unless the ClientHello is fragmented over records.
func readHello(r io.Reader, buf *[maxHello]byte) (hello []byte, serverName string, err error) {
	n := 0
	var msg []byte // the handshake message's bytes so far
	for records := 0; ; records++ {
		if n+recordHeader > len(buf) {
			return buf[:n], "", errHelloTooBig
		}
		h := buf[n : n+recordHeader]
		if err := readFull(r, h, n); err != nil {
			return buf[:n], "", err
		}
		if h[0] != recordHandshake || h[1] != 3 {
			if records == 0 {
				return buf[:n+recordHeader], "", errNotTLS
			}
			return buf[:n+recordHeader], "", fmt.Errorf("%w: a record of type %d inside it", errBadHello, h[0])
		}
		l := int(h[3])<<8 | int(h[4])
		if l == 0 || l > maxRecord {
			return buf[:n+recordHeader], "", fmt.Errorf("%w: record length %d", errBadHello, l)
		}
		n += recordHeader
		if n+l > len(buf) {
			return buf[:n], "", errHelloTooBig
		}
		payload := buf[n : n+l]
		if err := readFull(r, payload, n); err != nil {
			return buf[:n], "", err
		}
		n += l
		switch {
		case records == 0:
			msg = payload
		case records == 1:
			msg = append(append(make([]byte, 0, 2*len(msg)+l), msg...), payload...)
		default:
			msg = append(msg, payload...)
		}
		if len(msg) < 4 {
			continue
		}
		if msg[0] != typeClientHello {
			return buf[:n], "", fmt.Errorf("%w: handshake message of type %d first", errBadHello, msg[0])
		}
		ml := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
		if ml > len(buf)-recordHeader-4 {
			return buf[:n], "", errHelloTooBig // it cannot fit, whatever comes
		}
		if len(msg) >= 4+ml {
			name, err := parseClientHello(msg[4 : 4+ml])
			return buf[:n], name, err
		}
	}
}

// readFull fills p from r; had is what was read before, to tell a
// connection that ended before its first byte from one that ended inside.
func readFull(r io.Reader, p []byte, had int) error {
	k, err := io.ReadFull(r, p)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF) && had == 0 && k == 0:
		return fmt.Errorf("%w: %w", errHelloTrimmed, io.EOF)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return errHelloTrimmed
	}
	return fmt.Errorf("reading the ClientHello: %w", err)
}

// parseClientHello returns the host name of the server_name extension of
// a ClientHello's body (RFC 8446 4.1.2, RFC 6066 3), "" when it has none.
// The whole message is checked: its fields' lengths, extensions to its
// end, at most one server_name extension of at most one host name of 1
// to 255 printable ASCII characters.
func parseClientHello(b []byte) (string, error) {
	p := parser(b)
	bad := func(what string) (string, error) { return "", fmt.Errorf("%w: %s", errBadHello, what) }
	if !p.skip(2 + 32) { // legacy_version, random
		return bad("too short")
	}
	if sid, ok := p.vec8(); !ok || len(sid) > 32 {
		return bad("session id")
	}
	if cs, ok := p.vec16(); !ok || len(cs) < 2 || len(cs)%2 != 0 {
		return bad("cipher suites")
	}
	if cm, ok := p.vec8(); !ok || len(cm) < 1 {
		return bad("compression methods")
	}
	if len(p) == 0 {
		return "", nil // no extensions (SSL 3.0 style)
	}
	exts, ok := p.vec16()
	if !ok || len(p) != 0 {
		return bad("extensions")
	}
	var name string
	seen := false
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		data, ok2 := exts.vec16()
		if !ok1 || !ok2 {
			return bad("extension")
		}
		if typ != extServerName {
			continue
		}
		if seen {
			return bad("two server_name extensions")
		}
		seen = true
		list, ok := data.vec16()
		if !ok || len(data) != 0 || len(list) == 0 {
			return bad("server name list")
		}
		for len(list) > 0 {
			nt, ok1 := list.u8()
			host, ok2 := list.vec16()
			if !ok1 || !ok2 {
				return bad("server name")
			}
			if nt != nameTypeHost {
				continue
			}
			if name != "" {
				return bad("two host names")
			}
			if len(host) == 0 || len(host) > maxServerName {
				return bad(fmt.Sprintf("host name of %d bytes", len(host)))
			}
			for _, c := range host {
				if c <= ' ' || c > '~' {
					return bad("host name with a byte that is not printable ASCII")
				}
			}
			name = string(host)
		}
	}
	return name, nil
}

// parser reads a TLS structure from the front.
type parser []byte

func (p *parser) skip(n int) bool {
	if len(*p) < n {
		return false
	}
	*p = (*p)[n:]
	return true
}

func (p *parser) u8() (int, bool) {
	if len(*p) < 1 {
		return 0, false
	}
	v := int((*p)[0])
	*p = (*p)[1:]
	return v, true
}

func (p *parser) u16() (int, bool) {
	if len(*p) < 2 {
		return 0, false
	}
	v := int((*p)[0])<<8 | int((*p)[1])
	*p = (*p)[2:]
	return v, true
}

// vec8 and vec16 read a vector of an 8- or 16-bit length.
func (p *parser) vec8() (parser, bool) {
	n, ok := p.u8()
	return p.take(n, ok)
}

func (p *parser) vec16() (parser, bool) {
	n, ok := p.u16()
	return p.take(n, ok)
}

func (p *parser) take(n int, ok bool) (parser, bool) {
	if !ok || len(*p) < n {
		return nil, false
	}
	v := (*p)[:n]
	*p = (*p)[n:]
	return v, true
}
