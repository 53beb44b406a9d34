package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestDebugLookup drives /debug/lookup over a real server on loopback: a
// valid query answers Lookup's JSON, given the listener and key as sent
// (escapes undone); a missing, empty, repeated or oversized parameter is
// 400 without calling Lookup; Lookup's ErrNotFound is 404, another error
// 400; the token guards it like every debug view; without Lookup the path
// is 404.
func TestDebugLookup(t *testing.T) {
	const tok = "lookup-token-0123456789"
	type call struct{ listener, key string }
	calls := make(chan call, 64)
	lookup := func(listener, key string) (any, error) {
		calls <- call{listener, key}
		switch {
		case listener != "web":
			return nil, fmt.Errorf("listener %q: %w", listener, ErrNotFound)
		case key == "not-an-ip":
			return nil, fmt.Errorf("key client-ip wants an IP address")
		}
		return map[string]any{"listener": listener, "key": key, "endpoint": "10.0.0.1:80", "fingerprint": 42}, nil
	}
	addr, _ := serve(t, DebugHandler(DebugOptions{Lookup: lookup, Token: tok}), Limits{MaxConnections: 8, ReadHeaderTimeout: 5 * time.Second})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func(query, auth string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/debug/lookup"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", query, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	noCall := func(what string) {
		t.Helper()
		select {
		case c := <-calls:
			t.Errorf("%s: Lookup called with %+v, want no call", what, c)
		default:
		}
	}

	key := "alice & bob/ü"
	code, body := get("?listener=web&key="+url.QueryEscape(key), tok)
	if code != http.StatusOK {
		t.Fatalf("valid lookup: %d %q", code, body)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("valid lookup: body %q: %v", body, err)
	}
	if got["endpoint"] != "10.0.0.1:80" || got["key"] != key || got["fingerprint"] != 42.0 {
		t.Errorf("valid lookup: got %v", got)
	}
	if c := <-calls; c != (call{"web", key}) {
		t.Errorf("Lookup called with %+v, want web and %q", c, key)
	}

	long := func(n int) string { return strings.Repeat("k", n) }
	for _, tc := range []struct {
		name, query string
		want        int
		called      bool
	}{
		{"no query", "", 400, false},
		{"no key", "?listener=web", 400, false},
		{"empty key", "?listener=web&key=", 400, false},
		{"no listener", "?key=alice", 400, false},
		{"key twice", "?listener=web&key=a&key=b", 400, false},
		{"listener twice", "?listener=web&listener=web&key=a", 400, false},
		{"key too long", "?listener=web&key=" + long(MaxLookupKey+1), 400, false},
		{"listener too long", "?listener=" + long(MaxLookupListener+1) + "&key=a", 400, false},
		{"bad escape", "?listener=web&key=%zz", 400, false},
		{"key at the bound", "?listener=web&key=" + long(MaxLookupKey), 200, true},
		{"unknown listener", "?listener=db&key=a", 404, true},
		{"key the listener cannot read", "?listener=web&key=not-an-ip", 400, true},
	} {
		code, body := get(tc.query, tok)
		if code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.name, code, body, tc.want)
		}
		if tc.called {
			<-calls
		} else {
			noCall(tc.name)
		}
	}
	if code, _ := get("?listener=web&key=a", ""); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", code)
	}
	noCall("without the token")

	if code, _ := status(t, DebugHandler(DebugOptions{}), "/debug/lookup?listener=web&key=a", ""); code != http.StatusNotFound {
		t.Errorf("without Lookup: %d, want 404", code)
	}
}
