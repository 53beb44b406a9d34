package h2relay

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// Request validation (RFC 9113 section 8) and the header rewrites of a
// proxy (RFC 9110 section 7.6).

var (
	errMissingPseudo   = errors.New("missing :method, :scheme or :path")
	errEmptyPath       = errors.New("empty :path")
	errConnSpecific    = errors.New("connection-specific header field")
	errBadTE           = errors.New("te other than trailers")
	errBadCL           = errors.New("invalid content-length")
	errExtendedConnect = errors.New(":protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL")
	errPseudoTrailer   = errors.New("pseudo-header field in trailers")
)

// connectionSpecific reports whether name is a connection-specific header
// field, which makes an HTTP/2 message malformed (section 8.2.2).
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// hopByHop reports whether name is removed when a message crosses the
// proxy: the connection-specific fields and the proxy's own ones.
func hopByHop(name string) bool {
	switch name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade",
		"proxy-authenticate", "proxy-authorization", "trailer":
		return true
	}
	return false
}

// parseRequest fills h from a request's decoded fields (pseudo-header fields
// first, as the Framer checked) and returns the content-length, -1 when
// absent. An error means the request is malformed: a stream error of type
// PROTOCOL_ERROR. isConnect reports a CONNECT request, which the relay does
// not proxy.
func parseRequest(fields []hpack.HeaderField, h *RequestHead) (cl int64, isConnect bool, err error) {
	i := 0
	for ; i < len(fields) && strings.HasPrefix(fields[i].Name, ":"); i++ {
		f := fields[i]
		switch f.Name {
		case ":method":
			h.Method = f.Value
		case ":scheme":
			h.Scheme = f.Value
		case ":authority":
			h.Authority = f.Value
		case ":path":
			h.Path = f.Value
		case ":protocol":
			return 0, false, errExtendedConnect
		}
	}
	h.fields = fields[i:]
	cl = -1
	for _, f := range h.fields {
		switch {
		case connectionSpecific(f.Name):
			return 0, false, errConnSpecific
		case f.Name == "te":
			if f.Value != "trailers" {
				return 0, false, errBadTE
			}
		case f.Name == "content-length":
			n, ok := parseUint(f.Value)
			if !ok || cl >= 0 && n != cl {
				return 0, false, errBadCL
			}
			cl = n
		case f.Name == "content-type":
			h.GRPC = strings.HasPrefix(f.Value, "application/grpc")
		}
	}
	if h.Method == "CONNECT" {
		return cl, true, nil
	}
	if h.Method == "" || h.Scheme == "" {
		return 0, false, errMissingPseudo
	}
	if h.Path == "" {
		return 0, false, errEmptyPath
	}
	return cl, false, nil
}

// checkTrailers validates request or response trailers.
func checkTrailers(fields []hpack.HeaderField) error {
	for _, f := range fields {
		if strings.HasPrefix(f.Name, ":") {
			return errPseudoTrailer
		}
		if connectionSpecific(f.Name) {
			return errConnSpecific
		}
	}
	return nil
}

// parseUint parses a decimal number of at most 18 digits.
func parseUint(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// statusOf returns the :status and grpc-status in fields (0 and -1 when
// absent or invalid).
func statusOf(fields []hpack.HeaderField) (status, grpcStatus int) {
	grpcStatus = -1
	for _, f := range fields {
		switch f.Name {
		case ":status":
			if n, ok := parseUint(f.Value); ok && n < 1000 {
				status = int(n)
			}
		case "grpc-status":
			if n, ok := parseUint(f.Value); ok && n < 1<<16 {
				grpcStatus = int(n)
			}
		}
	}
	return status, grpcStatus
}

// writeRequest encodes the request of s toward its endpoint: the
// pseudo-header fields (:scheme http, as the endpoint connection is h2c),
// the client's fields without hop-by-hop ones, and the forwarding fields.
// Called with the upstream connection's lock held (enc is its encoder).
func writeRequest(enc *hpack.Encoder, s *stream) {
	h := &s.head
	enc.WriteField(hpack.HeaderField{Name: ":method", Value: h.Method})
	enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "http"})
	if h.Authority != "" {
		enc.WriteField(hpack.HeaderField{Name: ":authority", Value: h.Authority})
	}
	enc.WriteField(hpack.HeaderField{Name: ":path", Value: h.Path})
	if s.rt != nil {
		// A round trip's fields were converted and checked by RoundTrip;
		// its caller set the forwarding fields.
		for _, f := range h.fields {
			enc.WriteField(f)
		}
		return
	}
	var prior string
	for _, f := range h.fields {
		switch {
		case hopByHop(f.Name), f.Name == "x-forwarded-proto":
			continue
		case f.Name == "x-forwarded-for":
			if prior == "" {
				prior = f.Value
			} else {
				prior += ", " + f.Value
			}
			continue
		case f.Name == "grpc-timeout":
			// A new value on every call: indexing it would only churn the
			// endpoint's dynamic table.
			f.Sensitive = true
		}
		enc.WriteField(f)
	}
	xff := s.cc.ip
	if prior != "" {
		xff = prior + ", " + xff
	}
	enc.WriteField(hpack.HeaderField{Name: "x-forwarded-for", Value: xff})
	enc.WriteField(hpack.HeaderField{Name: "x-forwarded-proto", Value: s.cc.proto})
	enc.WriteField(hpack.HeaderField{Name: "forwarded", Value: s.fwd})
}

// writeFields encodes header or trailer fields, without hop-by-hop ones.
// Called with the encoding connection's lock held.
func writeFields(enc *hpack.Encoder, fields []hpack.HeaderField) {
	for _, f := range fields {
		if !hopByHop(f.Name) {
			enc.WriteField(f)
		}
	}
}

// roundTripHead fills h from req for RoundTrip: the pseudo-header fields'
// values, and the regular fields with names lower-cased, without
// connection-specific ones (TE only as "trailers"), Host (:authority
// carries it), Content-Length (replaced by cl when known) or Trailer
// (replaced by the names of req.Trailer). An error means req cannot be
// sent: CONNECT, or a field HTTP/2 cannot carry.
func roundTripHead(h *RequestHead, req *http.Request, cl int64) error {
	h.Method = req.Method
	if h.Method == "" {
		h.Method = http.MethodGet
	}
	if !httpguts.ValidHeaderFieldName(h.Method) {
		return fmt.Errorf("h2relay: invalid method %q", h.Method)
	}
	if h.Method == http.MethodConnect {
		return errors.New("h2relay: CONNECT is not supported")
	}
	h.Scheme = "http"
	h.Authority = req.Host
	if h.Authority == "" {
		h.Authority = req.URL.Host
	}
	h.Path = req.URL.RequestURI()
	if h.Path == "" {
		h.Path = "/"
	}
	fields := make([]hpack.HeaderField, 0, len(req.Header)+1)
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h2relay: invalid header field name %q", k)
		}
		name := strings.ToLower(k)
		switch {
		case connectionSpecific(name), name == "host", name == "content-length", name == "trailer":
			continue
		case name == "te":
			if slices.ContainsFunc(vv, hasTrailersToken) {
				fields = append(fields, hpack.HeaderField{Name: "te", Value: "trailers"})
			}
			continue
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h2relay: invalid value of header field %s", k)
			}
			fields = append(fields, hpack.HeaderField{Name: name, Value: v})
			if name == "content-type" && strings.HasPrefix(v, "application/grpc") {
				h.GRPC = true
			}
		}
	}
	if len(req.Trailer) > 0 {
		// Announced, as receivers such as net/http keep only the
		// trailers the header declared.
		names := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			if httpguts.ValidHeaderFieldName(k) {
				names = append(names, strings.ToLower(k))
			}
		}
		slices.Sort(names)
		fields = append(fields, hpack.HeaderField{Name: "trailer", Value: strings.Join(names, ", ")})
	}
	if cl > 0 || cl == 0 && methodSendsLength(h.Method) {
		fields = append(fields, hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(cl, 10)})
	}
	h.fields = fields
	return nil
}

// hasTrailersToken reports whether a TE value lists "trailers".
func hasTrailersToken(v string) bool {
	for t := range strings.SplitSeq(v, ",") {
		t, _, _ = strings.Cut(t, ";")
		if strings.EqualFold(strings.TrimSpace(t), "trailers") {
			return true
		}
	}
	return false
}

// methodSendsLength reports whether an empty request body of method is
// announced with content-length: 0 (as HTTP/1 clients do).
func methodSendsLength(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return true
	}
	return false
}

// trailerFields converts request trailers for the wire: names
// lower-cased, fields HTTP/2 cannot carry (or must not, in trailers)
// dropped. nil when there is none.
func trailerFields(t http.Header) []hpack.HeaderField {
	var fields []hpack.HeaderField
	for k, vv := range t {
		name := strings.ToLower(k)
		if !httpguts.ValidHeaderFieldName(k) || connectionSpecific(name) || name == "te" {
			continue
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				fields = append(fields, hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
	return fields
}
