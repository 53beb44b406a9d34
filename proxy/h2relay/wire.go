package h2relay

import "golang.org/x/net/http2"

// Frame encoding. Frames leave through a frameConn's output buffer; these
// helpers append one frame (or a header block split into HEADERS and
// CONTINUATION) to a byte slice and return it, as append does.

const frameHeaderLen = 9

const (
	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
)

func appendFrameHeader(b []byte, length int, t http2.FrameType, flags byte, id uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), byte(t), flags,
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// appendData appends one DATA frame; len(data) must not exceed the peer's
// SETTINGS_MAX_FRAME_SIZE.
func appendData(b []byte, id uint32, data []byte, end bool) []byte {
	var flags byte
	if end {
		flags = flagEndStream
	}
	b = appendFrameHeader(b, len(data), http2.FrameData, flags, id)
	return append(b, data...)
}

// appendHeaderBlock appends block as a HEADERS frame followed by as many
// CONTINUATION frames as maxFrame requires.
func appendHeaderBlock(b []byte, id uint32, block []byte, end bool, maxFrame int) []byte {
	t := http2.FrameHeaders
	var flags byte
	if end {
		flags = flagEndStream
	}
	for {
		n := min(len(block), maxFrame)
		f := flags
		if n == len(block) {
			f |= flagEndHeaders
		}
		b = appendFrameHeader(b, n, t, f, id)
		b = append(b, block[:n]...)
		block = block[n:]
		if len(block) == 0 {
			return b
		}
		t, flags = http2.FrameContinuation, 0
	}
}

func appendRSTStream(b []byte, id uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 4, http2.FrameRSTStream, 0, id)
	return appendUint32(b, uint32(code))
}

func appendWindowUpdate(b []byte, id uint32, inc uint32) []byte {
	b = appendFrameHeader(b, 4, http2.FrameWindowUpdate, 0, id)
	return appendUint32(b, inc)
}

func appendSettings(b []byte, settings ...http2.Setting) []byte {
	b = appendFrameHeader(b, 6*len(settings), http2.FrameSettings, 0, 0)
	for _, s := range settings {
		b = append(b, byte(s.ID>>8), byte(s.ID))
		b = appendUint32(b, s.Val)
	}
	return b
}

func appendSettingsAck(b []byte) []byte {
	return appendFrameHeader(b, 0, http2.FrameSettings, flagAck, 0)
}

func appendPing(b []byte, ack bool, data [8]byte) []byte {
	var flags byte
	if ack {
		flags = flagAck
	}
	b = appendFrameHeader(b, 8, http2.FramePing, flags, 0)
	return append(b, data[:]...)
}

func appendGoAway(b []byte, last uint32, code http2.ErrCode, debug string) []byte {
	b = appendFrameHeader(b, 8+len(debug), http2.FrameGoAway, 0, 0)
	b = appendUint32(b, last&(1<<31-1))
	b = appendUint32(b, uint32(code))
	return append(b, debug...)
}
