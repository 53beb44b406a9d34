package admin

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestLivePageRoutes: with Status, / serves the page, /page/ its script and
// style, /status the JSON, each with a Content-Security-Policy that keeps
// the page to its own origin; without Status none of them is served.
func TestLivePageRoutes(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h := Handler(Options{Status: func() *Status {
		return &Status{At: at, Listeners: []StatusListener{{Name: "echo", Protocol: "tcp", Address: "127.0.0.1:7000"}}}
	}})
	for _, tc := range []struct{ path, ctype, body string }{
		{"/", "text/html", `<script src="/page/live.js"`},
		{"/page/live.js", "javascript", "fetch(\"/status\""},
		{"/page/live.css", "text/css", ".badge"},
		{"/status", "application/json", `"name": "echo"`},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 || !strings.Contains(w.Header().Get("Content-Type"), tc.ctype) || !strings.Contains(w.Body.String(), tc.body) {
			t.Errorf("GET %s: %d %q, body lacks %q", tc.path, w.Code, w.Header().Get("Content-Type"), tc.body)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", tc.path)
		}
	}
	_, body := status(t, h, "/status", "")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || !st.At.Equal(at) || len(st.Listeners) != 1 {
		t.Errorf("/status: %v %+v", err, st)
	}
	for _, p := range []string{"/index.html", "/page/", "/page/index.html", "/x"} {
		if code, _ := status(t, h, p, ""); code != 404 {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
	bare := Handler(Options{})
	for _, p := range []string{"/", "/status", "/page/live.js"} {
		if code, _ := status(t, bare, p, ""); code != 404 {
			t.Errorf("without Status, GET %s: %d, want 404", p, code)
		}
	}
}

// TestLivePageWritesNoMarkup: the page's script builds the DOM from text
// (createElement, text nodes, attributes), never from data parsed as HTML,
// and loads nothing from another origin.
func TestLivePageWritesNoMarkup(t *testing.T) {
	for _, name := range []string{"page/live.js", "page/index.html", "page/live.css"} {
		b, err := fs.ReadFile(page, name)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
			"http://", "https://", "//fonts", "@import"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s uses %q", name, bad)
			}
		}
	}
}
