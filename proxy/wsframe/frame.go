// Package wsframe relays WebSocket (RFC 6455) frames between a client and a
// backend after the HTTP Upgrade handshake, transparently but aware of frame
// boundaries.
//
// Transparency: every frame that is forwarded is forwarded byte for byte:
// header and payload are written exactly as read (masked client frames stay
// masked, compressed payloads stay compressed). The relay never splits,
// merges or rewrites frames; it only decides, per whole frame, whether to
// forward it or to drop it (after a Close went toward that destination).
//
// Boundaries: each destination connection has a mutex that is held while one
// whole frame (header and payload) is written to it, so a frame the relay
// injects (a Close on Relay.Migrate or on a protocol violation) never lands
// inside another frame. The two directions use different locks: injecting
// toward the client never waits for a frame travelling toward the backend.
//
// The package also offers the frame-level primitives the relay is built on:
// ReadHeader, AppendHeader and AppendClose.
package wsframe

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ErrProtocol is wrapped by every error that reports a violation of RFC 6455
// framing rules; the wrapping error says what was wrong. A relay that meets
// one sends Close 1002 (protocol error) to both sides where it can.
var ErrProtocol = errors.New("wsframe: protocol error")

// ErrTooLarge is wrapped by the error that reports a frame whose payload
// exceeds Options.MaxFrame. A relay that meets one sends Close 1009 (message
// too big) to both sides where it can.
var ErrTooLarge = errors.New("wsframe: frame too large")

// ErrCloseTimeout is returned by Relay.Run when a close handshake started by
// Relay.Migrate did not finish within Options.CloseTimeout.
var ErrCloseTimeout = errors.New("wsframe: close handshake timed out")

// Opcode is a frame's 4-bit opcode.
type Opcode byte

// Opcodes defined by RFC 6455. The others (3-7, 11-15) are reserved.
const (
	OpContinuation Opcode = 0
	OpText         Opcode = 1
	OpBinary       Opcode = 2
	OpClose        Opcode = 8
	OpPing         Opcode = 9
	OpPong         Opcode = 10
)

// IsControl reports whether o is a control opcode (8-15). Control frames must
// not be fragmented and carry at most 125 bytes of payload.
func (o Opcode) IsControl() bool { return o&0x8 != 0 }

// IsReserved reports whether o is one of the opcodes RFC 6455 reserves for
// future use (3-7 and 11-15), or does not fit in 4 bits.
func (o Opcode) IsReserved() bool {
	switch o {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
		return false
	}
	return true
}

func (o Opcode) String() string {
	switch o {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return fmt.Sprintf("opcode(%d)", byte(o))
}

// MaxControlPayload is the largest payload a control frame may carry.
const MaxControlPayload = 125

// MaxHeaderLen is the size of the largest frame header: 2 bytes, an 8-byte
// extended length and a 4-byte masking key.
const MaxHeaderLen = 14

// Header is a decoded frame header.
type Header struct {
	Fin bool
	// Rsv holds the three reserved bits as they sit in the first header
	// byte, shifted down: RSV1 is 4, RSV2 is 2, RSV3 is 1.
	Rsv    byte
	Opcode Opcode
	Masked bool
	// Mask is the masking key; meaningful only when Masked.
	Mask [4]byte
	// Length is the payload length; never negative.
	Length int64
}

// Len returns the encoded size of h in bytes (2 to 14).
func (h Header) Len() int {
	n := 2
	switch {
	case h.Length > 0xffff:
		n += 8
	case h.Length > 125:
		n += 2
	}
	if h.Masked {
		n += 4
	}
	return n
}

// sizeFromPrefix returns the size of a header whose second byte is b1.
func sizeFromPrefix(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// Preallocated so that rejecting a header does not allocate.
var (
	errLengthMSB = fmt.Errorf("64-bit payload length has its most significant bit set: %w", ErrProtocol)
	errLength16  = fmt.Errorf("payload length below 126 encoded in 16 bits (must be minimal): %w", ErrProtocol)
	errLength64  = fmt.Errorf("payload length below 65536 encoded in 64 bits (must be minimal): %w", ErrProtocol)
)

// parseHeader decodes b, which holds exactly one complete header
// (len(b) == sizeFromPrefix(b[1])). It rejects only encodings that
// are invalid regardless of context: a 64-bit length with its most
// significant bit set, and a length not encoded in the minimal number of
// bytes (RFC 6455 section 5.2). Thanks to the latter, every header that
// parses re-encodes with AppendHeader to the same bytes.
func parseHeader(b []byte) (Header, error) {
	h := Header{
		Fin:    b[0]&0x80 != 0,
		Rsv:    (b[0] >> 4) & 0x7,
		Opcode: Opcode(b[0] & 0xf),
		Masked: b[1]&0x80 != 0,
		Length: int64(b[1] & 0x7f),
	}
	i := 2
	switch h.Length {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		if h.Length < 126 {
			return Header{}, errLength16
		}
		i = 4
	case 127:
		u := binary.BigEndian.Uint64(b[2:10])
		if u>>63 != 0 {
			return Header{}, errLengthMSB
		}
		if u <= 0xffff {
			return Header{}, errLength64
		}
		h.Length = int64(u)
		i = 10
	}
	if h.Masked {
		copy(h.Mask[:], b[i:i+4])
	}
	return h, nil
}

// ReadHeader reads exactly one frame header (2 to 14 bytes) from r into
// buf[:h.Len()] and decodes it. It does not allocate and reads nothing past
// the header.
//
// It returns io.EOF, unwrapped, when r ends before the first byte (a clean
// end at a frame boundary), io.ErrUnexpectedEOF when r ends inside the
// header, other read errors as r returned them, and an error wrapping
// ErrProtocol for an encoding no context can accept (see parseHeader's
// rules: non-minimal length, 64-bit length with the top bit set). Rules that
// depend on the direction or the connection's state (masking, RSV bits,
// fragmentation, opcodes, control frame limits) are the caller's to check.
func ReadHeader(r io.Reader, buf *[14]byte) (Header, error) {
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return Header{}, err
	}
	n := sizeFromPrefix(buf[1])
	if n > 2 {
		if _, err := io.ReadFull(r, buf[2:n]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Header{}, err
		}
	}
	return parseHeader(buf[:n])
}

// AppendHeader appends the wire encoding of h to b, with the payload length
// in the minimal number of bytes, and returns the extended slice. Rsv is
// taken modulo 8 and Opcode modulo 16. It panics if h.Length is negative.
func AppendHeader(b []byte, h Header) []byte {
	if h.Length < 0 {
		panic("wsframe: AppendHeader with negative length")
	}
	b0 := (h.Rsv&0x7)<<4 | byte(h.Opcode)&0xf
	if h.Fin {
		b0 |= 0x80
	}
	var b1 byte
	if h.Masked {
		b1 = 0x80
	}
	switch {
	case h.Length > 0xffff:
		b = append(b, b0, b1|127)
		b = binary.BigEndian.AppendUint64(b, uint64(h.Length))
	case h.Length > 125:
		b = append(b, b0, b1|126)
		b = binary.BigEndian.AppendUint16(b, uint16(h.Length))
	default:
		b = append(b, b0, b1|byte(h.Length))
	}
	if h.Masked {
		b = append(b, h.Mask[:]...)
	}
	return b
}

// MaskBytes XORs p in place with key, p being the payload bytes that start
// pos bytes into the frame's payload; it returns the position after p. The
// same call masks and unmasks.
func MaskBytes(key [4]byte, pos int, p []byte) int {
	for i := range p {
		p[i] ^= key[(pos+i)&3]
	}
	return pos + len(p)
}

// MaxCloseReason is the longest close reason that fits a control frame.
const MaxCloseReason = MaxControlPayload - 2

// AppendClose appends a complete, final Close frame carrying code and reason
// to b and returns the extended slice. A reason longer than MaxCloseReason
// bytes is cut to fit, at a UTF-8 character boundary. Code 0 stands for "no
// status": the frame then has an empty payload and reason is ignored. When
// mask is true (frames toward a server must be masked) the payload is masked
// with a fresh random key. AppendClose does not check that code may be sent
// on the wire (1005, 1006 and 1015 may not).
func AppendClose(b []byte, code uint16, reason string, mask bool) []byte {
	if code == 0 {
		reason = ""
	} else if len(reason) > MaxCloseReason {
		cut := MaxCloseReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	h := Header{Fin: true, Opcode: OpClose, Masked: mask}
	if code != 0 {
		h.Length = int64(2 + len(reason))
	}
	if mask {
		_, _ = rand.Read(h.Mask[:]) // never fails (crypto/rand since Go 1.24)
	}
	b = AppendHeader(b, h)
	if code == 0 {
		return b
	}
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, code)
	b = append(b, reason...)
	if mask {
		MaskBytes(h.Mask, 0, b[start:])
	}
	return b
}
