package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func status(t *testing.T, h http.Handler, path, auth string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

// TestHandlerServesNoDebugView: the probe and metrics handler serves no
// view that names a client, nor pprof.
func TestHandlerServesNoDebugView(t *testing.T) {
	r := &Readiness{}
	h := Handler(Options{Ready: r})
	for path, want := range map[string]int{
		"/healthz": 200, "/readyz": 200,
		"/debug/sessions": 404, "/debug/endpoints": 404, "/debug/drains": 404, "/debug/pprof/": 404,
	} {
		if code, _ := status(t, h, path, ""); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
	r.ShuttingDown()
	if code, body := status(t, h, "/readyz", ""); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while shutting down: %d %q", code, body)
	}
}

// TestDebugToken: with a token every debug path needs it as a bearer
// token; without one the views are served as they are.
func TestDebugToken(t *testing.T) {
	const tok = "0123456789abcdef-secret"
	sessions := func() any { return []string{"192.0.2.1:4242"} }
	drains := func() any { return []string{"192.0.2.1:80 drains"} }
	h := DebugHandler(DebugOptions{Sessions: sessions, Drains: drains, Pprof: true, Token: tok})
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no header", "", 401},
		{"wrong token", "Bearer 0123456789abcdef-secreT", 401},
		{"prefix of the token", "Bearer 0123456789abcdef", 401},
		{"token plus more", "Bearer " + tok + "x", 401},
		{"other scheme", "Basic " + tok, 401},
		{"scheme only", "Bearer ", 401},
		{"right token", "Bearer " + tok, 200},
		{"scheme in lower case", "bearer " + tok, 200},
	} {
		for _, path := range []string{"/debug/sessions", "/debug/drains", "/debug/pprof/"} {
			code, body := status(t, h, path, tc.auth)
			if code != tc.want {
				t.Errorf("%s: GET %s: %d, want %d", tc.name, path, code, tc.want)
			}
			if code == 401 && strings.Contains(body, "192.0.2.1") {
				t.Errorf("%s: 401 leaks the view: %q", tc.name, body)
			}
		}
	}
	open := DebugHandler(DebugOptions{Sessions: sessions, Drains: drains})
	if code, body := status(t, open, "/debug/sessions", ""); code != 200 || !strings.Contains(body, "192.0.2.1:4242") {
		t.Errorf("without a token: %d %q", code, body)
	}
	if code, body := status(t, open, "/debug/drains", ""); code != 200 || !strings.Contains(body, "192.0.2.1:80 drains") {
		t.Errorf("/debug/drains without a token: %d %q", code, body)
	}
	if code, body := status(t, DebugHandler(DebugOptions{}), "/debug/drains", ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("/debug/drains without Drains: %d %q, want 200 []", code, body)
	}
	if code, _ := status(t, open, "/debug/pprof/", ""); code != 404 {
		t.Errorf("pprof off: %d, want 404", code)
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := ReadToken(write("ok", "  0123456789abcdef\n")); err != nil || tok != "0123456789abcdef" {
		t.Errorf("ReadToken = %q, %v", tok, err)
	}
	for name, content := range map[string]string{
		"empty": "", "short": "0123456789abcde\n", "space inside": "01234567 89abcdefgh", "control": "0123456789abcdef\x00",
	} {
		if tok, err := ReadToken(write(name, content)); err == nil {
			t.Errorf("%s: ReadToken = %q, want an error", name, tok)
		}
	}
	if _, err := ReadToken(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"", "Bearer x", "bearer  x", "Bearer", "Basic abc", "Bearer \x00", " Bearer x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, ok := bearerToken(header)
		if ok != (tok != "") {
			t.Fatalf("bearerToken(%q) = %q, %v", header, tok, ok)
		}
		if ok && !strings.HasSuffix(header, tok) {
			t.Fatalf("bearerToken(%q) = %q: not the header's end", header, tok)
		}
	})
}
