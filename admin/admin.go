// Package admin serves longhaul's operational endpoints on two servers:
// probes, Prometheus metrics and the live page (Handler) where the kubelet
// and Prometheus reach them, and JSON views of endpoints and sessions plus pprof
// (DebugHandler), which name clients and show memory, on an address of their
// own: loopback, or guarded by a bearer token. Both run as a Server, which
// bounds connections and their timeouts (Limits).
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Readiness collects the conditions /readyz needs: every registered check
// passes and shutdown has not begun. Safe for concurrent use.
type Readiness struct {
	shuttingDown atomic.Bool
	mu           sync.Mutex
	checks       map[string]func() error
}

// Add registers a named readiness check (for example "the endpoint source of
// listener x has synced").
func (r *Readiness) Add(name string, check func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.checks == nil {
		r.checks = make(map[string]func() error)
	}
	r.checks[name] = check
}

// Remove drops the named check (a listener or backend that is gone).
func (r *Readiness) Remove(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.checks, name)
}

// ShuttingDown makes /readyz fail from now on, so that the Service in front
// stops sending new connections.
func (r *Readiness) ShuttingDown() { r.shuttingDown.Store(true) }

// Check returns nil when ready, or every reason it is not.
func (r *Readiness) Check() error {
	if r.shuttingDown.Load() {
		return errors.New("shutting down")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for name, c := range r.checks {
		if err := c(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Options are the data sources of the probe and metrics handler.
type Options struct {
	Gatherer prometheus.Gatherer
	Ready    *Readiness
	// Status, if set, serves the live page at / and its JSON at /status
	// (see Status).
	Status func() *Status
}

// Handler returns the handler of the admin address: /healthz, /readyz and
// /metrics, what the kubelet and Prometheus read, and with Status the live
// page (/) and its JSON (/status). It serves nothing that names a client.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	if o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if o.Ready != nil {
			if err := o.Ready.Check(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	if o.Status != nil {
		statusRoutes(mux, o.Status)
	}
	return mux
}

// DebugOptions are the data sources of the debug handler. Nil functions
// serve empty lists.
type DebugOptions struct {
	Endpoints func() any // JSON for /debug/endpoints
	Sessions  func() any // JSON for /debug/sessions: every client's address
	// Drains is JSON for /debug/drains: the drains of leaving endpoints,
	// per listener; its size is the function's to bound.
	Drains func() any
	// Pprof serves Go's profiles under /debug/pprof/. A timed profile or
	// trace (seconds=) extends its own write deadline by its duration, so
	// Limits.WriteTimeout does not cut it; it keeps its connection busy
	// (not evictable) meanwhile.
	Pprof bool
	// Token, if not empty, is required of every request as
	// "Authorization: Bearer TOKEN"; any other request gets 401.
	Token string
	// Lookup, if set, answers /debug/lookup?listener=NAME&key=VALUE with
	// the JSON of what it returns: where the listener's current picker
	// sends the key. The handler calls it only with a listener name of 1
	// to MaxLookupListener bytes and a key of 1 to MaxLookupKey bytes,
	// each given once. An error wrapping ErrNotFound (no such listener)
	// answers 404; any other error (a key the listener cannot read) 400.
	Lookup func(listener, key string) (any, error)
}

// Bounds of /debug/lookup's parameters: a listener name, and a key as a
// request would carry it in a header, cookie or parameter.
const (
	MaxLookupListener = 256
	MaxLookupKey      = 4096
)

// ErrNotFound is wrapped by a DebugOptions.Lookup error for a listener that
// does not exist.
var ErrNotFound = errors.New("not found")

// DebugHandler returns the handler of the debug address: /debug/endpoints,
// /debug/sessions, /debug/drains, with Lookup /debug/lookup and, with Pprof,
// /debug/pprof/.
func DebugHandler(o DebugOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/endpoints", jsonHandler(o.Endpoints))
	mux.HandleFunc("GET /debug/sessions", jsonHandler(o.Sessions))
	mux.HandleFunc("GET /debug/drains", jsonHandler(o.Drains))
	if o.Lookup != nil {
		mux.HandleFunc("GET /debug/lookup", lookupHandler(o.Lookup))
	}
	if o.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	if o.Token == "" {
		return mux
	}
	return requireToken(o.Token, mux)
}

func jsonHandler(f func() any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		var v any = []any{}
		if f != nil {
			v = f()
		}
		writeJSON(w, v)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// lookupHandler validates /debug/lookup's query (see DebugOptions.Lookup)
// and answers lookup's result. The query's size is bounded already by the
// server's header limit; the parameters' bounds are tighter.
func lookupHandler(lookup func(listener, key string) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			http.Error(w, "lookup: query: "+err.Error(), http.StatusBadRequest)
			return
		}
		listener, err := lookupParam(q, "listener", MaxLookupListener)
		if err != nil {
			http.Error(w, "lookup: "+err.Error(), http.StatusBadRequest)
			return
		}
		key, err := lookupParam(q, "key", MaxLookupKey)
		if err != nil {
			http.Error(w, "lookup: "+err.Error(), http.StatusBadRequest)
			return
		}
		v, err := lookup(listener, key)
		switch {
		case errors.Is(err, ErrNotFound):
			http.Error(w, "lookup: "+err.Error(), http.StatusNotFound)
		case err != nil:
			http.Error(w, "lookup: "+err.Error(), http.StatusBadRequest)
		default:
			writeJSON(w, v)
		}
	}
}

// lookupParam returns the one value of name in q, of 1 to max bytes.
func lookupParam(q url.Values, name string, max int) (string, error) {
	vs := q[name]
	switch {
	case len(vs) == 0 || vs[0] == "":
		return "", fmt.Errorf("%s= is required", name)
	case len(vs) > 1:
		return "", fmt.Errorf("%s= is given %d times, want once", name, len(vs))
	case len(vs[0]) > max:
		return "", fmt.Errorf("%s= has %d bytes, want at most %d", name, len(vs[0]), max)
	}
	return vs[0], nil
}
