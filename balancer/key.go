package balancer

import (
	"fmt"
	"net/netip"
	"strings"
)

// KeySource says what part of a connection or request a balancing key is
// read from. The zero value is ClientIP.
type KeySource int

const (
	// ClientIP is the client's IP address (HashAddr).
	ClientIP KeySource = iota
	// ClientIPPort is the client's IP address and port (HashAddrPort).
	ClientIPPort
	// Path is an HTTP request's URL path.
	Path
	// Header is the first value of the HTTP request header KeySpec.Name.
	Header
	// Cookie is the value of the cookie KeySpec.Name.
	Cookie
	// Query is the value of the URL query parameter KeySpec.Name.
	Query
)

// String returns the name of s as a key specification spells it.
func (s KeySource) String() string {
	switch s {
	case ClientIP:
		return "client-ip"
	case ClientIPPort:
		return "client-ip-port"
	case Path:
		return "path"
	case Header:
		return "header"
	case Cookie:
		return "cookie"
	case Query:
		return "query"
	}
	return fmt.Sprintf("KeySource(%d)", int(s))
}

// KeySpec says what a listener hashes to choose an endpoint. The zero value
// is ClientIP. A consumer reading a key from a request that lacks the named
// part (no such header, cookie or parameter) falls back to ClientIP.
type KeySpec struct {
	Source KeySource
	// Name is the header's, cookie's or query parameter's name for Header,
	// Cookie and Query, and empty for the other sources. A header name is
	// as written, except that grpc-metadata:NAME gives it in lower case (as
	// gRPC metadata keys are); header names compare case-insensitively, so
	// the consumer canonicalises it.
	Name string
}

// keyKinds lists every key specification, in the order error messages name
// them.
const keyKinds = "client-ip, client-ip-port, path, header:NAME, cookie:NAME, query:NAME, grpc-metadata:NAME"

// ParseKeySpec parses a key specification: "client-ip", "client-ip-port",
// "path", "header:NAME", "grpc-metadata:NAME" (a header whose name is
// lower-cased), "cookie:NAME" or "query:NAME". A header name must be an
// HTTP token; a cookie or parameter name printable ASCII without spaces.
// Every error is a *KeySpecError.
func ParseKeySpec(s string) (KeySpec, error) {
	switch s {
	case "client-ip":
		return KeySpec{Source: ClientIP}, nil
	case "client-ip-port":
		return KeySpec{Source: ClientIPPort}, nil
	case "path":
		return KeySpec{Source: Path}, nil
	}
	kind, name, _ := strings.Cut(s, ":")
	var spec KeySpec
	switch kind {
	case "header":
		spec = KeySpec{Source: Header, Name: name}
	case "grpc-metadata":
		spec = KeySpec{Source: Header, Name: strings.ToLower(name)}
	case "cookie":
		spec = KeySpec{Source: Cookie, Name: name}
	case "query":
		spec = KeySpec{Source: Query, Name: name}
	default:
		return KeySpec{}, &KeySpecError{Spec: s, Reason: "must be one of " + keyKinds}
	}
	switch {
	case name == "":
		return KeySpec{}, &KeySpecError{Spec: s, Reason: kind + " needs a name, as in " + kind + ":NAME"}
	case spec.Source == Header && strings.ContainsFunc(name, func(r rune) bool { return !isTokenChar(r) }):
		return KeySpec{}, &KeySpecError{Spec: s, Reason: fmt.Sprintf("%s name %q must be an HTTP token (letters, digits and !#$%%&'*+-.^_`|~)", kind, name)}
	case strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f }):
		return KeySpec{}, &KeySpecError{Spec: s, Reason: fmt.Sprintf("%s name %q must be printable ASCII without spaces", kind, name)}
	}
	return spec, nil
}

// isTokenChar reports whether r may appear in an HTTP token (RFC 9110
// section 5.6.2), which a field name is.
func isTokenChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}

// String returns the specification of k as ParseKeySpec accepts it; a
// grpc-metadata:NAME specification comes back as header:NAME.
func (k KeySpec) String() string {
	if k.Name == "" {
		return k.Source.String()
	}
	return k.Source.String() + ":" + k.Name
}

// FromConnection reports whether k is read from the connection alone
// (ClientIP, ClientIPPort): the only keys a TCP listener has.
func (k KeySpec) FromConnection() bool {
	return k.Source == ClientIP || k.Source == ClientIPPort
}

// HashValue returns the key hash of v as a listener with key k hashes the
// value it reads: a client IP (HashAddr) for ClientIP, a client IP and port
// (HashAddrPort) for ClientIPPort, and the value itself (HashString) for
// Path, Header, Cookie and Query. It errors when v is not an address for a
// key read from the connection. It lets a replica answer which endpoint a
// key maps to without a request carrying it.
func (k KeySpec) HashValue(v string) (uint64, error) {
	switch k.Source {
	case ClientIP:
		a, err := netip.ParseAddr(v)
		if err != nil {
			return 0, fmt.Errorf("key %s wants an IP address: %w", k, err)
		}
		return HashAddr(a), nil
	case ClientIPPort:
		a, err := netip.ParseAddrPort(v)
		if err != nil {
			return 0, fmt.Errorf("key %s wants an IP address and port: %w", k, err)
		}
		return HashAddrPort(a), nil
	}
	return HashString(v), nil
}

// KeySpecError is the error ParseKeySpec returns for a specification it
// refuses.
type KeySpecError struct {
	// Spec is the specification as given.
	Spec string
	// Reason says what is wrong with Spec or what is expected, as in
	// "header needs a name, as in header:NAME".
	Reason string
}

// Error formats the error as `key "SPEC": REASON`.
func (e *KeySpecError) Error() string { return fmt.Sprintf("key %q: %s", e.Spec, e.Reason) }
