package balancer

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseKeySpec(t *testing.T) {
	tests := []struct {
		spec string
		want KeySpec
		str  string // String of the result
	}{
		{"client-ip", KeySpec{}, "client-ip"},
		{"client-ip-port", KeySpec{Source: ClientIPPort}, "client-ip-port"},
		{"path", KeySpec{Source: Path}, "path"},
		{"header:X-User", KeySpec{Source: Header, Name: "X-User"}, "header:X-User"},
		{"grpc-metadata:X-Tenant", KeySpec{Source: Header, Name: "x-tenant"}, "header:x-tenant"},
		{"cookie:sid", KeySpec{Source: Cookie, Name: "sid"}, "cookie:sid"},
		{"query:user", KeySpec{Source: Query, Name: "user"}, "query:user"},
		{"query:a:b", KeySpec{Source: Query, Name: "a:b"}, "query:a:b"},
	}
	for _, tt := range tests {
		got, err := ParseKeySpec(tt.spec)
		if err != nil || got != tt.want {
			t.Errorf("ParseKeySpec(%q): %+v, %v; want %+v", tt.spec, got, err, tt.want)
			continue
		}
		if s := got.String(); s != tt.str {
			t.Errorf("ParseKeySpec(%q).String(): %q, want %q", tt.spec, s, tt.str)
		}
	}
}

func TestParseKeySpecErrors(t *testing.T) {
	const kinds = "must be one of client-ip, client-ip-port, path, header:NAME, cookie:NAME, query:NAME, grpc-metadata:NAME"
	tests := []struct{ spec, reason string }{
		{"", kinds},
		{"ip", kinds},
		{"bogus:x", kinds},
		{"client-ip:x", kinds},
		{"Path", kinds},
		{":x", kinds},
		{"header", "header needs a name, as in header:NAME"},
		{"header:", "header needs a name, as in header:NAME"},
		{"grpc-metadata:", "grpc-metadata needs a name, as in grpc-metadata:NAME"},
		{"cookie:", "cookie needs a name, as in cookie:NAME"},
		{"query", "query needs a name, as in query:NAME"},
		{"header:X User", `header name "X User" must be an HTTP token (letters, digits and !#$%&'*+-.^_` + "`|~)"},
		{"header:a:b", `header name "a:b" must be an HTTP token (letters, digits and !#$%&'*+-.^_` + "`|~)"},
		{"grpc-metadata:é", `grpc-metadata name "é" must be an HTTP token (letters, digits and !#$%&'*+-.^_` + "`|~)"},
		{"cookie:a b", `cookie name "a b" must be printable ASCII without spaces`},
		{"query:a\x00", `query name "a\x00" must be printable ASCII without spaces`},
	}
	for _, tt := range tests {
		got, err := ParseKeySpec(tt.spec)
		var ke *KeySpecError
		if !errors.As(err, &ke) {
			t.Errorf("ParseKeySpec(%q): %+v, %v; want a *KeySpecError", tt.spec, got, err)
			continue
		}
		if ke.Spec != tt.spec || ke.Reason != tt.reason {
			t.Errorf("ParseKeySpec(%q): spec %q, reason %q; want reason %q", tt.spec, ke.Spec, ke.Reason, tt.reason)
		}
		if got != (KeySpec{}) {
			t.Errorf("ParseKeySpec(%q): %+v with the error, want the zero KeySpec", tt.spec, got)
		}
	}
	if got, want := (&KeySpecError{Spec: "header:", Reason: "header needs a name, as in header:NAME"}).Error(),
		`key "header:": header needs a name, as in header:NAME`; got != want {
		t.Errorf("Error: %q, want %q", got, want)
	}
}

func TestKeySpecFromConnection(t *testing.T) {
	for src, want := range map[KeySource]bool{ClientIP: true, ClientIPPort: true, Path: false, Header: false, Cookie: false, Query: false} {
		if got := (KeySpec{Source: src, Name: "n"}).FromConnection(); got != want {
			t.Errorf("%v: FromConnection %v, want %v", src, got, want)
		}
	}
	if s := KeySource(42).String(); s != "KeySource(42)" {
		t.Errorf("unknown source: %q", s)
	}
}

// FuzzParseKeySpec: whatever ParseKeySpec accepts, it accepts again as
// String gives it back, with the same result.
func FuzzParseKeySpec(f *testing.F) {
	for _, s := range []string{"client-ip", "client-ip-port", "path", "header:X-A", "grpc-metadata:Tenant", "cookie:sid", "query:q:r", "header:", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeySpec(s)
		if err != nil {
			return
		}
		again, err := ParseKeySpec(k.String())
		if err != nil || again != k {
			t.Fatalf("ParseKeySpec(%q) = %+v, but its String %q parses to %+v, %v", s, k, k.String(), again, err)
		}
	})
}

// TestKeySpecHashValue: a value hashes as the listener's key reads it: an
// address for client-ip (both forms of an IPv4 address agree), an address
// and port for client-ip-port, the string itself otherwise; a value that
// is no address for a connection key is an error.
func TestKeySpecHashValue(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.7")
	tests := []struct {
		spec, value string
		want        uint64
		wantErr     bool
	}{
		{"client-ip", "192.0.2.7", HashAddr(ip), false},
		{"client-ip", "::ffff:192.0.2.7", HashAddr(ip), false},
		{"client-ip", "alice", 0, true},
		{"client-ip-port", "192.0.2.7:4242", HashAddrPort(netip.AddrPortFrom(ip, 4242)), false},
		{"client-ip-port", "192.0.2.7", 0, true},
		{"header:X-User", "alice", HashString("alice"), false},
		{"cookie:session", "s1", HashString("s1"), false},
		{"query:u", "", HashString(""), false},
		{"path", "/a/b", HashString("/a/b"), false},
	}
	for _, tt := range tests {
		k, err := ParseKeySpec(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := k.HashValue(tt.value)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s HashValue(%q) = %#x, %v; want %#x, error %v", tt.spec, tt.value, got, err, tt.want, tt.wantErr)
		}
	}
}
