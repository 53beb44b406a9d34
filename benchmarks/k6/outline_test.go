package k6

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// outline is what the tests compare of a .proto file: its package, every
// method (with its streaming and message types) and every message field
// and enum value with its number, each as one sorted string.
type outline struct {
	Package string
	Methods []string // "Health/Watch(HealthCheckRequest) stream HealthCheckResponse"
	Fields  []string // "HealthCheckRequest.service=1", "ServingStatus.SERVING=1"
}

func methodName(svc, name, in, out string, clientStream, serverStream bool) string {
	st := func(b bool) string {
		if b {
			return "stream "
		}
		return ""
	}
	return fmt.Sprintf("%s/%s(%s%s) %s%s", svc, name, st(clientStream), in, st(serverStream), out)
}

func fieldName(owner, name string, number int) string {
	return fmt.Sprintf("%s.%s=%d", owner, name, number)
}

func (o *outline) sort() {
	slices.Sort(o.Methods)
	slices.Sort(o.Fields)
}

func (o outline) equal(p outline) bool {
	return o.Package == p.Package && slices.Equal(o.Methods, p.Methods) && slices.Equal(o.Fields, p.Fields)
}

// hasMethod reports whether o declares "Service/Method".
func (o outline) hasMethod(m string) bool {
	return slices.ContainsFunc(o.Methods, func(s string) bool { return strings.HasPrefix(s, m+"(") })
}

// parseOutline reads the outline of a proto3 file of the subset the k6
// folder uses: syntax, package, messages (nested too) with scalar or
// message fields, enums, services with unary and streaming rpcs, comments.
// Options, imports, maps and oneofs are errors. It never panics.
func parseOutline(src string) (outline, error) {
	toks, err := tokenize(src)
	if err != nil {
		return outline{}, err
	}
	p := &protoParser{toks: toks}
	o, err := p.file()
	if err != nil {
		return outline{}, fmt.Errorf("token %d: %w", p.i, err)
	}
	o.sort()
	return o, nil
}

func tokenize(src string) ([]string, error) {
	var toks []string
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case strings.HasPrefix(src[i:], "//"):
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				return toks, nil
			}
			i += j + 1
		case strings.HasPrefix(src[i:], "/*"):
			j := strings.Index(src[i+2:], "*/")
			if j < 0 {
				return nil, errors.New("unterminated comment")
			}
			i += j + 4
		case c == '"':
			j := strings.IndexByte(src[i+1:], '"')
			if j < 0 {
				return nil, errors.New("unterminated string")
			}
			toks = append(toks, src[i:i+j+2])
			i += j + 2
		case strings.IndexByte("{}();=", c) >= 0:
			toks = append(toks, string(c))
			i++
		case c == '_' || c == '.' || c < utf8RuneSelf && (unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c))):
			j := i
			for j < len(src) && (src[j] == '_' || src[j] == '.' || src[j] < utf8RuneSelf && (unicode.IsLetter(rune(src[j])) || unicode.IsDigit(rune(src[j])))) {
				j++
			}
			toks = append(toks, src[i:j])
			i = j
		default:
			return nil, fmt.Errorf("unexpected %q", c)
		}
	}
	return toks, nil
}

const utf8RuneSelf = 0x80

type protoParser struct {
	toks []string
	i    int
}

func (p *protoParser) next() (string, error) {
	if p.i >= len(p.toks) {
		return "", errors.New("unexpected end")
	}
	p.i++
	return p.toks[p.i-1], nil
}

func (p *protoParser) peek() string {
	if p.i >= len(p.toks) {
		return ""
	}
	return p.toks[p.i]
}

func (p *protoParser) expect(want string) error {
	t, err := p.next()
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("got %q, want %q", t, want)
	}
	return nil
}

func (p *protoParser) ident() (string, error) {
	t, err := p.next()
	if err != nil {
		return "", err
	}
	if t == "" || strings.ContainsAny(t[:1], "{}();=\"0123456789") {
		return "", fmt.Errorf("got %q, want a name", t)
	}
	return t, nil
}

func (p *protoParser) number() (int, error) {
	t, err := p.next()
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(t)
	if err != nil {
		return 0, fmt.Errorf("got %q, want a number", t)
	}
	return n, nil
}

func (p *protoParser) file() (outline, error) {
	var o outline
	for p.peek() != "" {
		t, _ := p.next()
		switch t {
		case "syntax":
			if err := p.expect("="); err != nil {
				return o, err
			}
			v, err := p.next()
			if err != nil {
				return o, err
			}
			if v != `"proto3"` {
				return o, fmt.Errorf("syntax %s, want \"proto3\"", v)
			}
			if err := p.expect(";"); err != nil {
				return o, err
			}
		case "package":
			name, err := p.ident()
			if err != nil {
				return o, err
			}
			o.Package = name
			if err := p.expect(";"); err != nil {
				return o, err
			}
		case "message":
			if err := p.message(&o); err != nil {
				return o, err
			}
		case "enum":
			if err := p.enum(&o); err != nil {
				return o, err
			}
		case "service":
			if err := p.service(&o); err != nil {
				return o, err
			}
		default:
			return o, fmt.Errorf("unexpected %q at top level", t)
		}
	}
	return o, nil
}

func (p *protoParser) message(o *outline) error {
	name, err := p.ident()
	if err != nil {
		return err
	}
	if err := p.expect("{"); err != nil {
		return err
	}
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		switch t {
		case "}":
			return nil
		case "message":
			if err := p.message(o); err != nil {
				return err
			}
		case "enum":
			if err := p.enum(o); err != nil {
				return err
			}
		case "option", "oneof", "map", "reserved", "extensions", "import":
			return fmt.Errorf("%s is not supported", t)
		default: // [repeated|optional] type name = number ;
			if t == "repeated" || t == "optional" {
				if t, err = p.ident(); err != nil {
					return err
				}
			}
			if strings.ContainsAny(t[:1], "{}();=\"0123456789") {
				return fmt.Errorf("got %q, want a field type", t)
			}
			field, err := p.ident()
			if err != nil {
				return err
			}
			if err := p.expect("="); err != nil {
				return err
			}
			n, err := p.number()
			if err != nil {
				return err
			}
			if err := p.expect(";"); err != nil {
				return err
			}
			o.Fields = append(o.Fields, fieldName(name, field, n))
		}
	}
}

func (p *protoParser) enum(o *outline) error {
	name, err := p.ident()
	if err != nil {
		return err
	}
	if err := p.expect("{"); err != nil {
		return err
	}
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		if t == "}" {
			return nil
		}
		if strings.ContainsAny(t[:1], "{}();=\"0123456789") || t == "option" {
			return fmt.Errorf("got %q, want an enum value", t)
		}
		if err := p.expect("="); err != nil {
			return err
		}
		n, err := p.number()
		if err != nil {
			return err
		}
		if err := p.expect(";"); err != nil {
			return err
		}
		o.Fields = append(o.Fields, fieldName(name, t, n))
	}
}

func (p *protoParser) service(o *outline) error {
	svc, err := p.ident()
	if err != nil {
		return err
	}
	if err := p.expect("{"); err != nil {
		return err
	}
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		if t == "}" {
			return nil
		}
		if t != "rpc" {
			return fmt.Errorf("got %q in service %s, want rpc", t, svc)
		}
		name, err := p.ident()
		if err != nil {
			return err
		}
		in, inStream, err := p.rpcType()
		if err != nil {
			return err
		}
		if err := p.expect("returns"); err != nil {
			return err
		}
		out, outStream, err := p.rpcType()
		if err != nil {
			return err
		}
		switch p.peek() {
		case ";":
			p.i++
		case "{":
			p.i++
			if err := p.expect("}"); err != nil {
				return err
			}
		default:
			return fmt.Errorf("rpc %s: got %q after returns", name, p.peek())
		}
		o.Methods = append(o.Methods, methodName(svc, name, in, out, inStream, outStream))
	}
}

// rpcType reads "( [stream] Type )".
func (p *protoParser) rpcType() (string, bool, error) {
	if err := p.expect("("); err != nil {
		return "", false, err
	}
	t, err := p.ident()
	if err != nil {
		return "", false, err
	}
	stream := false
	if t == "stream" && p.peek() != ")" {
		stream = true
		if t, err = p.ident(); err != nil {
			return "", false, err
		}
	}
	return t, stream, p.expect(")")
}

func TestParseOutline(t *testing.T) {
	o, err := parseOutline(`syntax = "proto3"; // c
package a.b; /* block */
message M { string s = 1; repeated N n = 2; message N { int32 x = 1; } enum E { A = 0; B = 1; } }
service S { rpc U(M) returns (M); rpc W(stream M) returns (stream M) {} }`)
	if err != nil {
		t.Fatal(err)
	}
	want := outline{Package: "a.b",
		Methods: []string{"S/U(M) M", "S/W(stream M) stream M"},
		Fields:  []string{"E.A=0", "E.B=1", "M.n=2", "M.s=1", "N.x=1"}}
	if !o.equal(want) {
		t.Errorf("got %+v, want %+v", o, want)
	}
	for _, bad := range []string{
		`syntax = "proto2";`, `message M { map<string,int32> m = 1; }`, `message M { string s = x; }`,
		`message M {`, `/* open`, `service S { rpc U(M) returns M; }`, `enum E { 1 = 2; }`, `message M { option x = 1; }`,
	} {
		if _, err := parseOutline(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// FuzzParseOutline: the outline parser never panics and, on what it
// accepts, gives sorted lists.
func FuzzParseOutline(f *testing.F) {
	f.Add(`syntax = "proto3"; package p; message M { string s = 1; } service S { rpc U(M) returns (stream M); }`)
	f.Add(`enum E { A = 0; } message M { message N { E e = 1; } }`)
	f.Add("/* x */ // y\n")
	f.Fuzz(func(t *testing.T, src string) {
		o, err := parseOutline(src)
		if err != nil {
			return
		}
		if !slices.IsSorted(o.Methods) || !slices.IsSorted(o.Fields) {
			t.Errorf("unsorted outline %+v", o)
		}
	})
}
