package tcpproxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// clientHello returns the first flight crypto/tls's client writes with
// cfg: the record(s) of its ClientHello.
func clientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c, s := net.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tls.Client(c, cfg).Handshake() // fails once s closes
	}()
	defer wg.Wait()
	defer c.Close()
	defer s.Close()
	var h [5]byte
	if _, err := io.ReadFull(s, h[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(h[3])<<8|int(h[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	return append(h[:], body...)
}

// serverSees returns the server name crypto/tls's server reads from hello.
func serverSees(t testing.TB, hello []byte) string {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	got := make(chan string, 1)
	go func() {
		defer s.Close()
		tls.Server(s, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			got <- h.ServerName
			return nil, errors.New("enough")
		}}).Handshake()
	}()
	go func() { c.Write(hello); io.Copy(io.Discard, c) }()
	return <-got
}

// fragment rewrites the ClientHello records of hello as records of the
// given payload sizes (the last takes the rest).
func fragment(hello []byte, sizes ...int) []byte {
	msg := hello[5:]
	var out []byte
	for len(msg) > 0 {
		n := len(msg)
		if len(sizes) > 0 {
			n, sizes = min(sizes[0], n), sizes[1:]
		}
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// padded returns hello (one record) with a padding extension of n bytes
// added, as one record if it fits or else fragmented in maxRecord pieces.
func padded(hello []byte, n int) []byte {
	msg := bytes.Clone(hello[5:])
	body := msg[4:]
	// legacy_version, random, session id, cipher suites, compression.
	i := 2 + 32
	i += 1 + int(body[i])
	i += 2 + (int(body[i])<<8 | int(body[i+1]))
	i += 1 + int(body[i])
	extLen := int(body[i])<<8 | int(body[i+1]) + 4 + n
	body[i], body[i+1] = byte(extLen>>8), byte(extLen)
	body = append(body, 0, 21, byte(n>>8), byte(n))
	body = append(body, make([]byte, n)...)
	m := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	return fragment(append([]byte{22, 3, 1, 0, 0}, m...), maxRecord, maxRecord, maxRecord, maxRecord, maxRecord)
}

func TestReadHelloReal(t *testing.T) {
	modern := &tls.Config{ServerName: "shop.example.com", NextProtos: []string{"h2", "http/1.1"}}
	cases := []struct {
		name  string
		hello []byte
		want  string
	}{
		{"modern", clientHello(t, modern), "shop.example.com"},
		{"tls12 only", clientHello(t, &tls.Config{ServerName: "a.b.example.com", MaxVersion: tls.VersionTLS12}), "a.b.example.com"},
		{"upper case", clientHello(t, &tls.Config{ServerName: "WWW.Example.COM"}), "WWW.Example.COM"},
		{"no SNI", clientHello(t, &tls.Config{InsecureSkipVerify: true}), ""},
		{"IP literal sends no SNI", clientHello(t, &tls.Config{ServerName: "127.0.0.1"}), ""},
	}
	h := clientHello(t, modern)
	cases = append(cases,
		struct {
			name  string
			hello []byte
			want  string
		}{"fragmented 1-byte first", fragment(h, 1, 2, 3), "shop.example.com"},
		struct {
			name  string
			hello []byte
			want  string
		}{"fragmented in halves", fragment(h, len(h)/2), "shop.example.com"},
		struct {
			name  string
			hello []byte
			want  string
		}{"padded to fill a record", padded(h, maxRecord-len(h)), "shop.example.com"})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if s := serverSees(t, c.hello); s != strings.ToLower(c.want) && s != c.want {
				t.Fatalf("crypto/tls's server reads %q, the test wants %q", s, c.want)
			}
			// What follows the ClientHello stays unread.
			r := bytes.NewReader(append(bytes.Clone(c.hello), "after"...))
			buf := helloBufs.Get().(*[maxHello]byte)
			defer helloBufs.Put(buf)
			got, name, err := readHello(r, buf)
			if err != nil || name != c.want || !bytes.Equal(got, c.hello) {
				t.Fatalf("readHello = %d bytes (want %d), %q, %v; want %q", len(got), len(c.hello), name, err, c.want)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "after" {
				t.Errorf("left %q unread, want %q", rest, "after")
			}
		})
	}
	// The one-record case reads without allocating.
	buf := new([maxHello]byte)
	r := bytes.NewReader(h)
	if n := testing.AllocsPerRun(100, func() { r.Reset(h); readHello(r, buf) }); n > 1 { // the name's string
		t.Errorf("readHello: %v allocations, want at most 1", n)
	}
}

func TestReadHelloRefused(t *testing.T) {
	h := clientHello(t, &tls.Config{ServerName: "shop.example.com"})
	big := padded(h, maxRecord) // two records, more than maxHello in all
	over := bytes.Clone(h)
	over[3], over[4] = 0x40, 0x01 // maxRecord+1
	hugeMsg := bytes.Clone(h)
	hugeMsg[6], hugeMsg[7], hugeMsg[8] = 0, 0x40, 0 // a 16 KiB message in a record of 16 KiB + 5 cannot fit
	notHello := bytes.Clone(h)
	notHello[5] = 2 // ServerHello
	badExt := bytes.Clone(h)
	badExt[len(badExt)-1] ^= 0xff
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, errHelloTrimmed},
		{"HTTP", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), errNotTLS},
		{"truncated header", h[:3], errHelloTrimmed},
		{"truncated record", h[:len(h)-10], errHelloTrimmed},
		{"truncated message over records", fragment(h, 100)[:105], errHelloTrimmed},
		{"record too long", over, errBadHello},
		{"zero-length record", []byte{22, 3, 1, 0, 0}, errBadHello},
		{"oversized over records", big, errHelloTooBig},
		{"message that cannot fit", hugeMsg, errHelloTooBig},
		{"not a ClientHello", notHello, errBadHello},
		{"alert record inside", append(fragment(h, 10)[:15], 21, 3, 1, 0, 2, 2, 40), errBadHello},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, name, err := readHello(bytes.NewReader(c.in), new([maxHello]byte))
			if !errors.Is(err, c.want) || name != "" || len(got) > maxHello {
				t.Errorf("readHello = %d bytes, %q, %v; want %v", len(got), name, err, c.want)
			}
		})
	}
	// Flipping a length inside the extensions is caught (or, by chance,
	// still parses): never a panic, never a name that is not there.
	if _, name, err := readHello(bytes.NewReader(badExt), new([maxHello]byte)); err == nil && name != "shop.example.com" {
		t.Errorf("a corrupted ClientHello gave %q", name)
	}
}

func TestParseClientHelloServerName(t *testing.T) {
	body := func(ext []byte) []byte {
		b := append(make([]byte, 34), 0, 0, 2, 0x13, 0x01, 1, 0)
		return append(b, append([]byte{byte(len(ext) >> 8), byte(len(ext))}, ext...)...)
	}
	sni := func(entries ...[]byte) []byte {
		var list []byte
		for _, e := range entries {
			list = append(list, e...)
		}
		l := append([]byte{byte(len(list) >> 8), byte(len(list))}, list...)
		return append([]byte{0, 0, byte(len(l) >> 8), byte(len(l))}, l...)
	}
	host := func(typ byte, h string) []byte { return append([]byte{typ, byte(len(h) >> 8), byte(len(h))}, h...) }
	for _, c := range []struct {
		name string
		body []byte
		want string
		ok   bool
	}{
		{"one host", body(sni(host(0, "a.example.com"))), "a.example.com", true},
		{"other name type skipped", body(sni(host(7, "x"), host(0, "a.example.com"))), "a.example.com", true},
		{"no extensions", append(make([]byte, 34), 0, 0, 2, 0x13, 0x01, 1, 0), "", true},
		{"two hosts", body(sni(host(0, "a"), host(0, "b"))), "", false},
		{"two extensions", body(append(sni(host(0, "a")), sni(host(0, "a"))...)), "", false},
		{"empty host", body(sni(host(0, ""))), "", false},
		{"long host", body(sni(host(0, strings.Repeat("a", 256)))), "", false},
		{"NUL in host", body(sni(host(0, "a\x00.example.com"))), "", false},
		{"empty list", body(sni()), "", false},
		{"trailing bytes", append(body(sni(host(0, "a"))), 0), "", false},
		{"odd cipher suites", append(make([]byte, 34), 0, 0, 1, 0x13, 1, 0), "", false},
		{"long session id", append(append(make([]byte, 34), 33), make([]byte, 33)...), "", false},
	} {
		name, err := parseClientHello(c.body)
		if name != c.want || (err == nil) != c.ok {
			t.Errorf("%s: got %q, %v; want %q, ok %v", c.name, name, err, c.want, c.ok)
		}
		if err != nil && !errors.Is(err, errBadHello) {
			t.Errorf("%s: error %v is not errBadHello", c.name, err)
		}
	}
}

// FuzzReadHello: any input ends in a name or an error, never a panic;
// what is returned was read from the input, within maxHello, and a name
// is printable ASCII of at most 255 bytes.
func FuzzReadHello(f *testing.F) {
	h := clientHello(f, &tls.Config{ServerName: "shop.example.com"})
	f.Add(h)
	f.Add(fragment(h, 1, 7, 40))
	f.Add(clientHello(f, &tls.Config{InsecureSkipVerify: true}))
	f.Add(clientHello(f, &tls.Config{ServerName: "x.example.org", MaxVersion: tls.VersionTLS12}))
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		buf := new([maxHello]byte)
		got, name, err := readHello(bytes.NewReader(in), buf)
		if len(got) > maxHello || !bytes.HasPrefix(in, got) {
			t.Fatalf("returned %d bytes that are not the input's", len(got))
		}
		if err != nil && name != "" {
			t.Fatalf("a name %q with an error %v", name, err)
		}
		if len(name) > maxServerName || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r > '~' }) {
			t.Fatalf("name %q", name)
		}
	})
}
