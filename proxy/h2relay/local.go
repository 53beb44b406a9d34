package h2relay

import (
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Responses the relay makes itself.

// refuse answers a request the relay does not forward with a response of
// its own: HTTP status code, or for gRPC a trailers-only response with
// grpcCode. A request still sending its body is then reset (NO_ERROR).
func (cc *clientConn) refuse(id uint32, ended, grpc bool, code, grpcCode int, msg string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		return
	}
	cc.hbuf.Reset()
	writeLocalResponse(cc.enc, grpc, code, grpcCode, msg)
	cc.out = appendHeaderBlock(cc.out, id, cc.hbuf.Bytes(), true, cc.peerMaxFrame)
	if !ended {
		cc.out = appendRSTStream(cc.out, id, http2.ErrCodeNo)
	}
	cc.kick()
}

// writeLocalResponse encodes a header-only response the relay makes itself;
// extra fields follow gRPC's (ignored for other requests).
func writeLocalResponse(enc *hpack.Encoder, grpc bool, code, grpcCode int, msg string, extra ...hpack.HeaderField) {
	if grpc {
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
		enc.WriteField(hpack.HeaderField{Name: "grpc-status", Value: itoa(grpcCode)})
		enc.WriteField(hpack.HeaderField{Name: "grpc-message", Value: msg})
		for _, f := range extra {
			enc.WriteField(f)
		}
		return
	}
	enc.WriteField(hpack.HeaderField{Name: ":status", Value: itoa(code)})
	enc.WriteField(hpack.HeaderField{Name: "content-length", Value: "0"})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
