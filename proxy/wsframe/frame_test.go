package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestReadHeaderKnownEncodings(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	tests := []struct {
		name string
		wire []byte
		want Header
	}{
		{"unmasked text 5", []byte{0x81, 0x05}, Header{Fin: true, Opcode: OpText, Length: 5}},
		{"masked ping 0", []byte{0x89, 0x80, 1, 2, 3, 4}, Header{Fin: true, Opcode: OpPing, Masked: true, Mask: mask}},
		{"continuation not final", []byte{0x00, 0x7d}, Header{Opcode: OpContinuation, Length: 125}},
		{"16-bit length", []byte{0x82, 0x7e, 0x00, 0x7e}, Header{Fin: true, Opcode: OpBinary, Length: 126}},
		{"16-bit max", []byte{0x82, 0x7e, 0xff, 0xff}, Header{Fin: true, Opcode: OpBinary, Length: 0xffff}},
		{"64-bit length masked", []byte{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4},
			Header{Fin: true, Opcode: OpBinary, Masked: true, Mask: mask, Length: 0x10000}},
		{"64-bit largest", []byte{0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			Header{Fin: true, Opcode: OpBinary, Length: 1<<63 - 1}},
		{"RSV1 RSV3", []byte{0xd1, 0x00}, Header{Fin: true, Rsv: 5, Opcode: OpText}},
		{"reserved opcode parses", []byte{0x8b, 0x00}, Header{Fin: true, Opcode: 11}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf [14]byte
			// Trailing bytes must stay unread.
			r := bytes.NewReader(append(append([]byte(nil), tc.wire...), 0xAA, 0xBB))
			got, err := ReadHeader(r, &buf)
			if err != nil {
				t.Fatalf("ReadHeader: got %v, want nil", err)
			}
			if got != tc.want {
				t.Errorf("header: got %+v, want %+v", got, tc.want)
			}
			if r.Len() != 2 {
				t.Errorf("bytes left unread: got %v, want 2", r.Len())
			}
			if got.Len() != len(tc.wire) {
				t.Errorf("Len: got %v, want %v", got.Len(), len(tc.wire))
			}
			if !bytes.Equal(buf[:len(tc.wire)], tc.wire) {
				t.Errorf("buf: got %x, want %x", buf[:len(tc.wire)], tc.wire)
			}
			if enc := AppendHeader(nil, got); !bytes.Equal(enc, tc.wire) {
				t.Errorf("AppendHeader: got %x, want %x", enc, tc.wire)
			}
		})
	}
}

func TestReadHeaderErrors(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"one byte", []byte{0x81}, io.ErrUnexpectedEOF},
		{"cut in 16-bit length", []byte{0x81, 0x7e, 0x01}, io.ErrUnexpectedEOF},
		{"cut before mask", []byte{0x81, 0x85}, io.ErrUnexpectedEOF},
		{"cut in mask", []byte{0x81, 0x85, 1, 2}, io.ErrUnexpectedEOF},
		{"64-bit MSB", []byte{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0}, ErrProtocol},
		{"16-bit non-minimal", []byte{0x82, 0x7e, 0x00, 0x7d}, ErrProtocol},
		{"64-bit non-minimal", []byte{0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, ErrProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf [14]byte
			_, err := ReadHeader(bytes.NewReader(tc.wire), &buf)
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
			if tc.want == io.EOF && err != io.EOF {
				t.Errorf("got %#v, want io.EOF unwrapped", err)
			}
		})
	}
}

func TestReadHeaderNoAllocs(t *testing.T) {
	wire := []byte{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}
	r := bytes.NewReader(wire)
	var buf [14]byte
	n := testing.AllocsPerRun(100, func() {
		r.Reset(wire)
		if _, err := ReadHeader(r, &buf); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("allocations per ReadHeader: got %v, want 0", n)
	}
}

func TestAppendHeaderMasksFields(t *testing.T) {
	got := AppendHeader([]byte{0xEE}, Header{Fin: true, Rsv: 0xff, Opcode: 0xf2, Length: 3})
	want := []byte{0xEE, 0xf2, 0x03}
	if !bytes.Equal(got, want) {
		t.Errorf("got %x, want %x", got, want)
	}
}

// decodeFrame reads the one frame in b, unmasking it, and returns its header
// and payload.
func decodeFrame(t *testing.T, b []byte) (Header, []byte) {
	t.Helper()
	var buf [14]byte
	r := bytes.NewReader(b)
	h, err := ReadHeader(r, &buf)
	if err != nil {
		t.Fatalf("ReadHeader: got %v, want nil", err)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatalf("payload: got %v, want nil", err)
	}
	if r.Len() != 0 {
		t.Fatalf("trailing bytes: got %v, want 0", r.Len())
	}
	if h.Masked {
		MaskBytes(h.Mask, 0, p)
	}
	return h, p
}

func TestAppendClose(t *testing.T) {
	for _, mask := range []bool{false, true} {
		b := AppendClose([]byte("prefix"), 1012, "service restart", mask)
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("prefix lost: got %q", b)
		}
		h, p := decodeFrame(t, b[len("prefix"):])
		if !h.Fin || h.Opcode != OpClose || h.Masked != mask || h.Rsv != 0 {
			t.Errorf("mask=%v header: got %+v, want final unreserved close, masked %v", mask, h, mask)
		}
		if code := binary.BigEndian.Uint16(p); code != 1012 {
			t.Errorf("mask=%v code: got %v, want %v", mask, code, 1012)
		}
		if string(p[2:]) != "service restart" {
			t.Errorf("mask=%v reason: got %q, want %q", mask, p[2:], "service restart")
		}
	}
	// Two masked closes should not share a key (random keys).
	a := AppendClose(nil, 1001, "", true)
	for range 8 {
		if b := AppendClose(nil, 1001, "", true); !bytes.Equal(a, b) {
			return
		}
	}
	t.Errorf("masked close frames: got 9 identical, want random masking keys")
}

func TestAppendCloseLongReasonAndNoStatus(t *testing.T) {
	reason := strings.Repeat("é", 100) // 200 bytes, 2 per rune
	_, p := decodeFrame(t, AppendClose(nil, 1001, reason, true))
	if len(p) > MaxControlPayload {
		t.Fatalf("payload: got %v bytes, want at most %v", len(p), MaxControlPayload)
	}
	if got := string(p[2:]); !utf8.ValidString(got) || !strings.HasPrefix(reason, got) || len(got) != 122 {
		t.Errorf("reason: got %d bytes valid=%v, want the first 122 bytes of the reason", len(got), utf8.ValidString(got))
	}
	h, p := decodeFrame(t, AppendClose(nil, 0, "ignored", false))
	if h.Length != 0 || len(p) != 0 {
		t.Errorf("code 0: got length %v, want 0", h.Length)
	}
}

func TestMaskBytesRoundTrip(t *testing.T) {
	key := [4]byte{0xde, 0xad, 0xbe, 0xef}
	orig := []byte("the quick brown fox jumps over")
	p := append([]byte(nil), orig...)
	// Masking in two uneven pieces equals masking at once.
	pos := MaskBytes(key, 0, p[:7])
	if pos = MaskBytes(key, pos, p[7:]); pos != len(p) {
		t.Fatalf("position: got %v, want %v", pos, len(p))
	}
	whole := append([]byte(nil), orig...)
	MaskBytes(key, 0, whole)
	if !bytes.Equal(p, whole) {
		t.Errorf("split masking: got %x, want %x", p, whole)
	}
	MaskBytes(key, 0, p)
	if !bytes.Equal(p, orig) {
		t.Errorf("unmask: got %q, want %q", p, orig)
	}
}

func FuzzReadHeader(f *testing.F) {
	for _, seed := range [][]byte{
		{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'},
		{0x89, 0x80, 1, 2, 3, 4},
		{0x82, 0x7e, 0x01, 0x00},
		{0x82, 0x7e, 0x00, 0x05},
		{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4},
		{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0},
		{0xf3, 0x00},
		{0x81},
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var buf [14]byte
		r := bytes.NewReader(data)
		h, err := ReadHeader(r, &buf)
		if err != nil {
			if len(data) >= MaxHeaderLen && !errors.Is(err, ErrProtocol) {
				t.Fatalf("with %d bytes available: got %v, want nil or ErrProtocol", len(data), err)
			}
			return
		}
		n := len(data) - r.Len()
		if n != h.Len() {
			t.Fatalf("consumed: got %v bytes, want h.Len() = %v", n, h.Len())
		}
		if h.Length < 0 || h.Rsv > 7 || h.Opcode > 15 {
			t.Fatalf("out of range field: got %+v", h)
		}
		enc := AppendHeader(nil, h)
		if !bytes.Equal(enc, data[:n]) {
			t.Fatalf("re-encoded: got %x, want %x", enc, data[:n])
		}
		if !bytes.Equal(buf[:n], enc) {
			t.Fatalf("buf: got %x, want %x", buf[:n], enc)
		}
	})
}
