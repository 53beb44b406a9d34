package admin

import (
	"embed"
	"net/http"
	"time"

	"github.com/longhaul-proxy/longhaul/drain"
)

// Status is the live view of a running longhaul, the JSON of GET /status on
// the admin address: what the live page (GET /) draws every second and what
// `longhaul status` prints. It names no client: endpoints, counts, drains
// and migrations only, like /metrics. At is when it was taken, on the
// server's clock: times to deadlines are counted from it, not from the
// reader's clock.
type Status struct {
	At        time.Time        `json:"at"`
	Listeners []StatusListener `json:"listeners"`
	// Migrations are the recent migrations that ended, newest first, at
	// most MaxStatusMigrations.
	Migrations []StatusMigration `json:"migrations"`
}

// MaxStatusMigrations bounds Status.Migrations.
const MaxStatusMigrations = 50

// StatusListener is one listener and the backends it sends to: one, named
// like the listener, or with routes one per named backend
// ("listener/backend").
type StatusListener struct {
	Name     string          `json:"name"`
	Protocol string          `json:"protocol"`
	Address  string          `json:"address"`
	Backends []StatusBackend `json:"backends"`
}

// StatusBackend is one upstream: its picker's table fingerprint (16 hex
// digits, "" before its first endpoints; replicas that route keys alike
// show the same), its live sessions, its endpoints and the drains of its
// leaving endpoints.
type StatusBackend struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
	Sessions    int    `json:"sessions"`
	// Endpoints are the snapshot's, in its order, then those gone from it
	// that still hold sessions (Gone).
	Endpoints []StatusEndpoint `json:"endpoints"`
	Drains    []StatusDrain    `json:"drains"`
}

// StatusEndpoint is one endpoint with its EndpointSlice conditions, whether
// the picker offers it to new sessions (Eligible) and, of those, whether it
// runs a revision that is being replaced (Outgoing), and its live sessions
// of this backend, Migrating of them asked to move.
type StatusEndpoint struct {
	Address     string     `json:"address"`
	Pod         string     `json:"pod,omitempty"`
	Zone        string     `json:"zone,omitempty"`
	Revision    string     `json:"revision,omitempty"`
	Ready       bool       `json:"ready"`
	Serving     bool       `json:"serving"`
	Terminating bool       `json:"terminating"`
	Eligible    bool       `json:"eligible"`
	Outgoing    bool       `json:"outgoing,omitempty"`
	Gone        bool       `json:"gone,omitempty"`
	KillTime    *time.Time `json:"killTime,omitempty"`
	Sessions    int        `json:"sessions"`
	Migrating   int        `json:"migrating"`
}

// StatusDrain is a leaving endpoint's drain, as its drain ledger reports
// it (one type, so that the page and /debug/drains say the same).
type StatusDrain = drain.EndpointDrain

// StatusMigration is one session that was asked to move and has ended: of
// which backend and protocol, why it was asked (endpoint, rebalance or
// shutdown; "" if not known), how it ended (moved, forced or closed), from
// which endpoint, and To, the endpoint of the client's next session when one
// is seen (see the producer for how it is matched; "" until then).
type StatusMigration struct {
	Ended    time.Time `json:"ended"`
	Backend  string    `json:"backend"`
	Protocol string    `json:"protocol"`
	Reason   string    `json:"reason"`
	Outcome  string    `json:"outcome"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	// Took is from the request to move to the session's end, in seconds.
	Took float64 `json:"took"`
}

// page holds the live page: plain HTML, CSS and JavaScript, no build step,
// nothing fetched from elsewhere.
//
//go:embed page
var page embed.FS

// pageCSP confines the live page to its own origin: its script and style
// come from the admin address, it fetches only /status, it runs no inline
// code and may not be framed.
const pageCSP = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// statusRoutes adds the live page and /status to mux: GET / (the page),
// GET /page/live.js and /page/live.css (its script and style) and
// GET /status (the JSON).
func statusRoutes(mux *http.ServeMux, status func() *Status) {
	secure := func(h http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", pageCSP)
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Cache-Control", "no-store")
			h(w, r)
		})
	}
	file := func(name string) http.Handler {
		return secure(func(w http.ResponseWriter, r *http.Request) { http.ServeFileFS(w, r, page, name) })
	}
	mux.Handle("GET /{$}", file("page/index.html"))
	mux.Handle("GET /page/live.js", file("page/live.js"))
	mux.Handle("GET /page/live.css", file("page/live.css"))
	mux.Handle("GET /status", secure(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, status()) }))
}
