// Package app wires longhaul's components together from a validated
// configuration: endpoint sources feed upstreams and the drain controller,
// listeners relay, the admin server answers probes and scrapes and serves
// the live page (status), and the debug server, if configured, shows
// endpoints, sessions and profiles.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/longhaul-proxy/longhaul/admin"
	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/drain"
	"github.com/longhaul-proxy/longhaul/internal/guard"
	"github.com/longhaul-proxy/longhaul/internal/membudget"
	"github.com/longhaul-proxy/longhaul/proxy/certs"
	"github.com/longhaul-proxy/longhaul/proxy/httpproxy"
	"github.com/longhaul-proxy/longhaul/proxy/listen"
	"github.com/longhaul-proxy/longhaul/proxy/metrics"
	"github.com/longhaul-proxy/longhaul/proxy/readiness"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// DefaultShutdownDelay is longhaul run's shutdown delay: long enough for
// an endpoints update to reach the kube-proxies and load balancers in front
// (a few seconds), so that no client is refused by a stopping replica.
const DefaultShutdownDelay = 5 * time.Second

// Options are what the configuration file does not say.
type Options struct {
	Logger *zap.Logger
	// Dial replaces the dialer toward endpoints (tests map addresses).
	Dial upstream.DialFunc
	// Kubernetes builds the source of a listener whose endpoints come from
	// Kubernetes; nil makes such a listener an error.
	Kubernetes func(l config.Listener, log *zap.Logger) (discovery.Source, error)
	// ShutdownDelay is how long listeners keep accepting and serving
	// after /readyz starts failing, while the Service in front updates its
	// endpoints; 0 is none (longhaul run's default is
	// DefaultShutdownDelay).
	ShutdownDelay time.Duration
	// Level, if set, is the logger's level, which Reload changes.
	Level *zap.AtomicLevel
}

// App is a running longhaul. Listeners are bound in New, so that a port in
// use is reported before Run.
type App struct {
	cfg      *config.Config
	reloadMu sync.Mutex
	cur      *config.Config // the configuration in force; guarded by reloadMu
	opts     Options
	log      *zap.Logger
	reg      *prometheus.Registry
	metrics  *metrics.Metrics
	sessions *upstream.Registry
	series   *upstream.EndpointSeries // forgets the series of endpoints gone
	ready    *admin.Readiness
	// mu guards listeners, each listener's backends and cfg, and run.
	// Lock order: mu before anything a component locks; each() copies
	// what it visits and calls out without mu.
	mu        sync.Mutex
	listeners []*listener
	run       *runState // set while Run runs; nil before
	closing   bool      // Run is shutting down: Apply refuses
	adminLn   net.Listener
	// debugLn serves the debug views, nil without admin.debugAddress;
	// debugToken, if set, guards it.
	debugLn    net.Listener
	debugToken string
	// budget caps what client connections hold in user space, derived
	// from GOMEMLIMIT; nil without one.
	budget *membudget.Budget
	// reloads counts configuration changes by result (reloadResults).
	reloads *prometheus.CounterVec
	// migrations are the recent ones, for the live view (status).
	migrations migrationLog
	// parker holds the parked sockets of WebSockets and TCP sessions,
	// for every listener: a Poller per CPU, each with a goroutine that
	// starts with its first socket. Closed by Run's end and by Close.
	parker *readiness.Pool
}

// listener is one configured listener: its server, its socket, and the
// backends it sends to.
type listener struct {
	cfg config.Listener
	// backends are the listener's own (one, named like the listener) or,
	// with routes, its named backends, in the configuration's order.
	backends []*backend
	srv      server
	// certs serves a TLS listener's certificates; nil without TLS.
	certs *certs.Store
	ln    net.Listener
	stop  context.CancelFunc // ends Serve; set by startListener
}

// backend is one upstream of a listener, with the endpoint source that
// feeds it and the drain controller that moves its sessions: everything
// that holds per backend (picker, pacing, rebalancing, ledger).
type backend struct {
	// name is the upstream's: the listener's name, or for a backend of a
	// listener with routes "listener/backend". Sessions, metrics, debug
	// views and drains go by it.
	name   string
	cfg    config.Backend // for the listener's own: its endpoints, balance and drain
	up     *upstream.Upstream
	src    discovery.Source
	drain  *drain.Controller
	synced atomic.Bool
	// fingerprint is the backend's longhaul_picker_fingerprint gauge.
	fingerprint prometheus.Collector
	// stopSource and stopDrain end its source's and its drain
	// controller's goroutines; set by startBackend.
	stopSource, stopDrain context.CancelFunc
}

// runState is what Run starts components under: listeners added later
// start there too.
type runState struct {
	g                *errgroup.Group
	srcCtx, serveCtx context.Context
}

// backendsOf returns the backend configurations of lc: its named backends
// with routes, else one made of its own endpoints, balance and drain.
func backendsOf(lc config.Listener) []config.Backend {
	if lc.HasRoutes() {
		return lc.Backends
	}
	return []config.Backend{{Endpoints: lc.Endpoints, Balance: lc.Balance, Drain: lc.Drain}}
}

// upstreamName is the name of the upstream of backend b of listener lc.
func upstreamName(lc config.Listener, b config.Backend) string {
	if b.Name == "" {
		return lc.Name
	}
	return lc.Name + "/" + b.Name
}

// each calls f for every backend of every listener, as they are when it
// is called; f runs without a.mu.
func (a *App) each(f func(l *listener, b *backend)) {
	type pair struct {
		l *listener
		b *backend
	}
	var ps []pair
	a.mu.Lock()
	for _, l := range a.listeners {
		for _, b := range l.backends {
			ps = append(ps, pair{l, b})
		}
	}
	a.mu.Unlock()
	for _, p := range ps {
		f(p.l, p.b)
	}
}

// current returns the listeners as they are now.
func (a *App) current() []*listener {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.listeners)
}

// backend returns the backend whose upstream is named name, or nil.
func (a *App) backend(name string) *backend {
	var out *backend
	a.each(func(_ *listener, b *backend) {
		if b.name == name {
			out = b
		}
	})
	return out
}

// server is what the app needs of a protocol listener.
type server interface {
	Serve(ctx context.Context, ln net.Listener) error
	Shutdown(ctx context.Context) error
}

// New builds every component and binds every listener. Call Run next, or
// Close to release the sockets.
func New(cfg *config.Config, opts Options) (a *App, err error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		guard.Collector())
	guard.SetLogger(opts.Logger)
	a = &App{cfg: cfg, cur: cfg, opts: opts, log: opts.Logger, reg: reg, metrics: metrics.New(reg),
		sessions: upstream.NewRegistry(), ready: &admin.Readiness{}}
	a.series = upstream.NewEndpointSeries(a.metrics, a.sessions)
	// A Poller per CPU the runtime uses: small WebSocket messages are
	// relayed on their goroutines.
	if a.parker, err = readiness.NewPool(runtime.GOMAXPROCS(0)); err != nil {
		return nil, err
	}
	parker := a.parker
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "longhaul_parked_sockets",
		Help: "Sockets parked now: directions of WebSocket and TCP sessions quiet past timeouts.park, with no goroutine or buffer (an idle session parks both of its sockets)."},
		func() float64 { return float64(parker.Parked()) }))
	a.reloads = newReloadsCounter()
	reg.MustRegister(a.reloads)
	if a.budget = membudget.FromGOMEMLIMIT(); a.budget != nil {
		b := a.budget
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "longhaul_memory_budget_limit_bytes",
				Help: "Bytes client connections may hold in user space (output, stream buffers) across the process: half of GOMEMLIMIT."},
				func() float64 { return float64(b.Limit()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "longhaul_memory_budget_used_bytes",
				Help: "Bytes client connections hold in user space now, against longhaul_memory_budget_limit_bytes."},
				func() float64 { return float64(b.Used()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "longhaul_memory_budget_shed_total",
				Help: "Client connections closed because the memory budget was exceeded (the greediest first)."},
				func() float64 { return float64(b.Shed()) }))
	}
	a.sessions.OnMigrationEnd = func(e upstream.MigrationEnd) {
		a.metrics.MigrationsEnded.WithLabelValues(e.Info.Listener, e.Info.Protocol, e.Outcome).Inc()
		a.metrics.MigrationTime.WithLabelValues(e.Info.Listener, e.Info.Protocol).Observe(e.Took.Seconds())
		// upstream's outcomes are drain's (moved, forced, closed).
		a.migrationEnded(e.Info.UpstreamID, e.Info.Endpoint, e.Outcome)
		a.migrations.ended(e, time.Now())
	}
	// The returns below set a to nil: close what was bound through a copy.
	built := a
	defer func() {
		if err != nil {
			built.Close()
		}
	}()
	for _, lc := range cfg.Listeners {
		l, err := a.newListener(lc)
		if err != nil {
			return nil, err
		}
		a.listeners = append(a.listeners, l)
	}
	reg.MustRegister(drainCollector{a})
	if a.adminLn, err = net.Listen("tcp", cfg.Admin.Address); err != nil {
		return nil, fmt.Errorf("admin listener on %s: %w", cfg.Admin.Address, err)
	}
	if ac := cfg.Admin; ac.DebugAddress != "" {
		if ac.DebugTokenFile != "" {
			if a.debugToken, err = admin.ReadToken(ac.DebugTokenFile); err != nil {
				return nil, fmt.Errorf("admin.debugTokenFile: %w", err)
			}
		}
		if a.debugLn, err = net.Listen("tcp", ac.DebugAddress); err != nil {
			return nil, fmt.Errorf("admin debug listener on %s: %w", ac.DebugAddress, err)
		}
	}
	return a, nil
}

func (a *App) newListener(lc config.Listener) (*listener, error) {
	log := a.log.With(zap.String("listener", lc.Name))
	l := &listener{cfg: lc}
	var backends []*backend
	for _, bc := range backendsOf(lc) {
		b, err := a.newBackend(lc, bc, log)
		if err != nil {
			for _, b := range backends {
				b.release(a)
			}
			return nil, err
		}
		backends = append(backends, b)
	}
	l.backends = backends
	built := false
	defer func() {
		if !built {
			for _, b := range backends {
				b.release(a)
			}
		}
	}()
	var downstream drain.Downstream
	switch lc.Protocol {
	case "tcp", "":
		t, err := a.newTCP(lc, l.backends, log)
		if err != nil {
			return nil, err
		}
		l.srv = t
	case "http", "grpc":
		h, store, err := a.newHTTP(lc, l.backends, log)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", lc.Name, err)
		}
		l.certs = store
		l.srv, downstream = h, relayClientsOf{h}
		for _, b := range l.backends {
			b.drain.Pools = h // endpoint pools are per address, which one backend owns
		}
	default:
		return nil, fmt.Errorf("listener %s: protocol %q is not supported", lc.Name, lc.Protocol)
	}
	// The listener's client connections are moved once, by its first
	// backend's shutdown.
	l.backends[0].drain.Downstream = downstream
	ln, err := listen.Listen(lc.Address, lc.Timeouts.TCPKeepAlive)
	if err != nil {
		return nil, fmt.Errorf("listener %s on %s: %w", lc.Name, lc.Address, err)
	}
	l.ln = ln
	built = true
	return l, nil
}

// newBackend builds a backend of lc: its upstream, endpoint source, drain
// controller, readiness check and fingerprint gauge. release undoes the
// registrations of one never started.
func (a *App) newBackend(lc config.Listener, bc config.Backend, log *zap.Logger) (*backend, error) {
	b := &backend{name: upstreamName(lc, bc), cfg: bc}
	b.up = upstream.NewUpstream(b.name, bc.Balance.BalancerPolicy(), a.sessions, a.metrics)
	b.up.SetKeysPerConnection(bc.Balance.KeySpec().Source == balancer.ClientIPPort)
	src, err := a.newSource(lc, b.name, bc.Endpoints, log)
	if err != nil {
		return nil, err
	}
	b.src = src
	name, d := b.name, bc.Drain
	proto := lc.Protocol
	b.drain = &drain.Controller{
		Timeout: d.Timeout,
		Window:  d.Window,
		Rate:    d.Rate,
		// Kill times come with Kubernetes endpoints (a terminating
		// pod's deletion timestamp) and endpoints files (killTime).
		KillMargin: d.KillMargin,
		Lister:     listerFor{reg: a.sessions, upstream: b.up.ID()},
		Rebalance:  rebalanceOf(d.Rebalance),
		OnMigrate: func(_ string, s drain.Session, reason string) {
			p := proto
			if ps, ok := s.(upstream.Session); ok {
				p = ps.Info().Protocol
			}
			a.metrics.SessionsMigrated.WithLabelValues(name, p, reason).Inc()
			a.migrations.asked(s, reason, a.sessions.Infos)
		},
		OnEndpointDrained: func(_ string, took time.Duration) {
			a.metrics.EndpointDrain.WithLabelValues(name).Observe(took.Seconds())
		},
		OnLate: drainLate(log.With(zap.String("upstream", name))),
	}
	a.ready.Add("endpoints of "+name, func() error {
		if !b.synced.Load() {
			return errors.New("no endpoints list yet")
		}
		return nil
	})
	up := b.up
	b.fingerprint = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "longhaul_picker_fingerprint",
		Help: "The low 52 bits of the fingerprint of the picker of a listener (or of a backend of its routes, \"listener/backend\"): a hash of its Maglev table, " +
			"policy and endpoints, as a float: replicas that route keys alike report the same value; 0 before the first endpoints.",
		ConstLabels: prometheus.Labels{"listener": name},
	}, func() float64 {
		if p := up.Picker(); p != nil {
			return float64(p.Fingerprint() & fingerprintBits)
		}
		return 0
	})
	if err := a.reg.Register(b.fingerprint); err != nil {
		a.ready.Remove("endpoints of " + name)
		return nil, fmt.Errorf("%s: metrics: %w", name, err)
	}
	return b, nil
}

// release undoes newBackend's registrations (readiness, gauge, endpoint
// series), for a backend removed or never started.
func (b *backend) release(a *App) {
	a.ready.Remove("endpoints of " + b.name)
	a.reg.Unregister(b.fingerprint)
	a.series.Snapshot(b.name, &discovery.Snapshot{}) // its endpoints' series go once idle
}

// newSource returns the endpoint source of the upstream named name, a
// backend of lc (or lc's own).
func (a *App) newSource(lc config.Listener, name string, eps config.Endpoints, log *zap.Logger) (discovery.Source, error) {
	switch {
	case len(eps.Static) > 0:
		snap, err := staticSnapshot(name, eps.Static)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return discovery.Static{Snapshot: snap}, nil
	case eps.File != "":
		return &discovery.File{Service: name, Path: eps.File, Logger: log}, nil
	case eps.Kubernetes != nil:
		if a.opts.Kubernetes == nil {
			return nil, fmt.Errorf("%s: kubernetes endpoints need a Kubernetes client", name)
		}
		src, err := a.opts.Kubernetes(config.Listener{Name: name, Protocol: lc.Protocol, Endpoints: eps}, log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		// A source may carry its own collectors (relists, watch errors);
		// sources sharing one collector register it once.
		if c, ok := src.(prometheus.Collector); ok {
			if err := a.reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
				return nil, fmt.Errorf("%s: metrics: %w", name, err)
			}
		}
		return src, nil
	}
	return nil, fmt.Errorf("%s: no endpoint source", name)
}

// Close releases the listening sockets of an App that will not Run.
func (a *App) Close() {
	for _, l := range a.current() {
		l.ln.Close()
	}
	a.parker.Close()
	for _, ln := range []net.Listener{a.adminLn, a.debugLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// ListenerAddr returns the bound address of a listener, or nil.
func (a *App) ListenerAddr(name string) net.Addr {
	for _, l := range a.listeners {
		if l.cfg.Name == name {
			return l.ln.Addr()
		}
	}
	return nil
}

// AdminAddr returns the bound address of the admin server (probes and
// metrics).
func (a *App) AdminAddr() net.Addr { return a.adminLn.Addr() }

// DebugAddr returns the bound address of the debug server, or nil when
// there is none.
func (a *App) DebugAddr() net.Addr {
	if a.debugLn == nil {
		return nil
	}
	return a.debugLn.Addr()
}

// Sessions returns the live session registry.
func (a *App) Sessions() *upstream.Registry { return a.sessions }

// Upstream returns the upstream named name (a listener's, or a backend's
// "listener/backend"), or nil.
func (a *App) Upstream(name string) *upstream.Upstream {
	if b := a.backend(name); b != nil {
		return b.up
	}
	return nil
}

// Ready returns the readiness the admin server reports.
func (a *App) Ready() *admin.Readiness { return a.ready }

// Run serves until ctx ends, then shuts down gracefully: /readyz fails, the
// listeners keep accepting for ShutdownDelay, stop accepting, and sessions
// get each listener's drain timeout to end before they are closed. Run
// returns nil after a graceful shutdown.
func (a *App) Run(ctx context.Context) error {
	srcCtx, stopSources := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSources()
	g, gctx := errgroup.WithContext(srcCtx)
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	a.mu.Lock()
	a.run = &runState{g: g, srcCtx: gctx, serveCtx: serveCtx}
	for _, l := range a.listeners {
		a.startListener(l)
	}
	n := len(a.listeners)
	a.mu.Unlock()
	g.Go(func() error { a.budget.Run(serveCtx); return nil })
	servers := a.adminServers()
	for _, srv := range servers {
		g.Go(srv.Serve)
	}
	debug := "none"
	if d := a.DebugAddr(); d != nil {
		debug = d.String()
	}
	a.log.Info("longhaul running", zap.Stringer("admin", a.adminLn.Addr()), zap.String("debug", debug),
		zap.Int("listeners", n))

	var runErr error
	select {
	case <-ctx.Done():
	case <-gctx.Done(): // a component failed
		runErr = context.Cause(gctx)
	}
	a.mu.Lock()
	a.closing = true
	a.mu.Unlock()
	a.shutdown()
	stopServing()
	stopSources()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		srv.Shutdown(sctx)
	}
	err := g.Wait()
	a.parker.Close() // every session has ended: their listeners shut down
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return nil
}

// adminServers returns the admin server (probes, metrics) and, with
// admin.debugAddress, the debug server (debug views, pprof), both bounded
// by admin.maxConnections and admin.timeouts.
func (a *App) adminServers() []*admin.Server {
	ac := a.cfg.Admin
	lim := admin.Limits{
		MaxConnections:    ac.MaxConnections,
		ReadHeaderTimeout: ac.Timeouts.ReadHeader,
		ReadTimeout:       ac.Timeouts.Read,
		WriteTimeout:      ac.Timeouts.Write,
		IdleTimeout:       ac.Timeouts.Idle,
	}
	out := []*admin.Server{admin.NewServer(a.adminLn, admin.Handler(admin.Options{Gatherer: a.reg, Ready: a.ready, Status: a.status}), lim)}
	if a.debugLn != nil {
		out = append(out, admin.NewServer(a.debugLn, admin.DebugHandler(admin.DebugOptions{
			Endpoints: a.debugEndpoints,
			Sessions:  func() any { return a.sessions.Infos() },
			Drains:    a.debugDrains,
			Lookup:    a.debugLookup,
			Pprof:     ac.Pprof,
			Token:     a.debugToken,
		}), lim))
	}
	return out
}

// sourceRestart is how long a source that panicked waits before it runs
// again.
const sourceRestart = time.Second

// runSource runs b's endpoint source until ctx ends. A panic in it is
// contained (logged and counted by guard): the last good endpoints stay in
// force and the source runs again after sourceRestart.
func (a *App) runSource(ctx context.Context, b *backend, src discovery.Source) error {
	for {
		var err error
		panicked := guard.Do("discovery", func() {
			err = src.Run(ctx, func(s *discovery.Snapshot) { a.apply(b, s) })
		})
		if !panicked {
			if err != nil {
				return fmt.Errorf("endpoints of %s: %w", b.name, err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(sourceRestart):
		}
	}
}

func (a *App) shutdown() {
	a.ready.ShuttingDown()
	a.log.Info("shutting down: readiness failed; serving on while the endpoints of longhaul's Service update",
		zap.Duration("delay", a.opts.ShutdownDelay), zap.Int("sessions", a.sessions.Len()))
	if a.opts.ShutdownDelay > 0 {
		time.Sleep(a.opts.ShutdownDelay)
	}
	g := errgroup.Group{}
	for _, l := range a.current() {
		a.mu.Lock()
		backends := l.backends
		a.mu.Unlock()
		g.Go(func() error { a.shutdownListener(l, backends); return nil })
	}
	g.Wait()
	a.log.Info("shutdown complete")
}

// shutdownListener moves every session of l's backends off, paced, by
// each backend's drain timeout, with its socket closed, then shuts its
// server down.
func (a *App) shutdownListener(l *listener, backends []*backend) {
	// Sessions get their backend's drain timeout to move; the forced ends
	// at that deadline get shutdownGrace more to be seen out.
	var timeout time.Duration
	for _, b := range backends {
		timeout = max(timeout, b.drain.DrainTimeout())
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+shutdownGrace)
	defer cancel()
	// Sessions leased from now on move at once; then no new connection is
	// accepted, and drain moves every session and client connection,
	// paced, and waits for them.
	for _, b := range backends {
		b.up.Leave(time.Now().Add(b.drain.DrainTimeout()))
	}
	l.ln.Close()
	var dg errgroup.Group
	for _, b := range backends {
		dg.Go(func() error {
			if err := b.drain.Shutdown(ctx); err != nil {
				a.log.Info("drain timeout reached; remaining sessions closed", zap.String("upstream", b.name), zap.Error(err))
			}
			return nil
		})
	}
	dg.Wait()
	// What is left: requests in flight, idle keep-alive connections,
	// pooled endpoint connections.
	if err := l.srv.Shutdown(ctx); err != nil {
		a.log.Info("listener shut down with requests cut", zap.String("listener", l.cfg.Name), zap.Error(err))
	}
}

// shutdownGrace is how long past its drain deadline a listener's shutdown
// waits for the sessions that the deadline closed to end.
const shutdownGrace = 2 * time.Second

// apply installs a new snapshot: a new picker first (so that no new session
// goes to a leaving endpoint), then drain for the sessions that must move.
func (a *App) apply(b *backend, s *discovery.Snapshot) {
	if err := b.up.Update(s); err != nil {
		a.log.Error("endpoints not applied; keeping the previous ones", zap.String("upstream", b.name), zap.Error(err))
		return
	}
	b.synced.Store(true)
	a.series.Snapshot(b.name, s)
	n := b.drain.Update(s)
	a.log.Info("endpoints updated", zap.String("upstream", b.name),
		zap.Int("endpoints", len(s.Endpoints)), zap.Int("sessions_migrating", n))
}

// fingerprintBits are the bits of a picker's fingerprint the gauge
// longhaul_picker_fingerprint carries: a float64 holds 53 bits exactly.
const fingerprintBits = 1<<52 - 1

// fingerprintHex formats a picker's fingerprint as 16 hex digits (a JSON
// number would lose bits in many readers); "" without a picker.
func fingerprintHex(p balancer.Picker) string {
	if p == nil {
		return ""
	}
	return fmt.Sprintf("%016x", p.Fingerprint())
}

type endpointView struct {
	Listener string `json:"listener"`
	// Fingerprint is the picker's (balancer.Picker.Fingerprint), in hex.
	Fingerprint string             `json:"fingerprint"`
	Endpoints   []endpointWithLoad `json:"endpoints"`
}

type endpointWithLoad struct {
	discovery.Endpoint
	Eligible bool `json:"eligible"`
	// Outgoing: eligible, but of a revision a leaving endpoint runs, so
	// that new sessions avoid it while a rollout is under way.
	Outgoing bool  `json:"outgoing,omitempty"`
	Active   int64 `json:"active"`
}

func (a *App) debugEndpoints() any {
	var out []endpointView
	a.each(func(_ *listener, b *backend) {
		v := endpointView{Listener: b.name, Endpoints: []endpointWithLoad{}}
		targets := map[string]*balancer.Target{}
		p, s := b.up.State() // a matching pair
		v.Fingerprint = fingerprintHex(p)
		if p != nil {
			for _, t := range p.Targets() {
				targets[t.Endpoint.Address] = t
			}
		}
		if s != nil {
			for _, e := range s.Endpoints {
				w := endpointWithLoad{Endpoint: e}
				if t := targets[e.Address]; t != nil {
					w.Eligible, w.Outgoing, w.Active = true, t.Outgoing(), t.Active()
				}
				v.Endpoints = append(v.Endpoints, w)
			}
		}
		out = append(out, v)
	})
	return out
}

// lookupView is /debug/lookup's answer: where the listener's current picker
// sends a new session with the key, now (with bounded loads, the current
// loads count).
type lookupView struct {
	Listener string `json:"listener"`
	// Key is the value looked up, KeySpec the listener's key, and Hash
	// the key hash, in hex, as the listener computes it.
	Key     string `json:"key"`
	KeySpec string `json:"keySpec"`
	Hash    string `json:"hash"`
	// Endpoint is the address chosen; "" when the listener has no
	// endpoint to offer.
	Endpoint    string `json:"endpoint"`
	Fingerprint string `json:"fingerprint"`
}

// debugLookup answers /debug/lookup: the key is hashed as the listener's
// key specification hashes the value it reads (balancer.KeySpec.HashValue).
func (a *App) debugLookup(name, key string) (any, error) {
	b := a.backend(name)
	if b == nil {
		return nil, fmt.Errorf("listener %q: %w", name, admin.ErrNotFound)
	}
	spec := b.cfg.Balance.KeySpec() // not reloadable: a restart changes it
	h, err := spec.HashValue(key)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", name, err)
	}
	v := lookupView{Listener: name, Key: key, KeySpec: spec.String(), Hash: fmt.Sprintf("%016x", h)}
	p := b.up.Picker()
	if p != nil {
		if t := p.Pick(h, nil); t != nil {
			v.Endpoint = t.Endpoint.Address
		}
	}
	v.Fingerprint = fingerprintHex(p)
	return v, nil
}

// relayClientsOf adapts an HTTP listener's relay client connections to
// drain.Downstream.
type relayClientsOf struct{ h *httpproxy.Listener }

func (r relayClientsOf) Conns() []drain.Session {
	cs := r.h.Clients()
	out := make([]drain.Session, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}

func (r relayClientsOf) Wait(ctx context.Context) error { return r.h.WaitClients(ctx) }

// listerFor adapts the session registry to drain.Lister for one upstream.
type listerFor struct {
	reg      *upstream.Registry
	upstream uint64 // Upstream.ID
}

func (f listerFor) Endpoints() []string {
	seen := map[string]bool{}
	var out []string
	for _, in := range f.reg.Infos() {
		if in.UpstreamID == f.upstream && !seen[in.Endpoint] {
			seen[in.Endpoint] = true
			out = append(out, in.Endpoint)
		}
	}
	return out
}

func (f listerFor) Sessions(ep string) []drain.Session {
	var out []drain.Session
	for _, s := range f.reg.Endpoint(ep) {
		if s.Info().UpstreamID == f.upstream {
			out = append(out, s)
		}
	}
	return out
}

func (f listerFor) Wait(ctx context.Context) error {
	return f.reg.WaitUpstream(ctx, f.upstream)
}

// rebalanceOf is drain's rebalancing of a listener: WebSocket sessions and
// HTTP connection pins move (a close handshake, a GOAWAY), raw TCP
// sessions only when r.TCP says their clients reconnect and resend.
func rebalanceOf(r config.Rebalance) drain.Rebalance {
	return drain.Rebalance{Factor: r.Factor, Target: r.Target, Sustain: r.Sustain, PerMinute: r.PerMinute,
		MaxPerRound: r.MaxPerRound, Cooldown: r.Cooldown,
		Movable: func(s drain.Session) bool {
			ps, ok := s.(upstream.Session)
			return r.TCP || !ok || ps.Info().Protocol != "tcp"
		}}
}

// startListener starts l's goroutines under the run: its backends' and
// Serve. Called with a.mu held, once Run runs.
func (a *App) startListener(l *listener) {
	ctx, cancel := context.WithCancel(a.run.serveCtx)
	l.stop = cancel
	for _, b := range l.backends {
		a.startBackend(b)
	}
	a.run.g.Go(func() error { return l.srv.Serve(ctx, l.ln) })
}

// startBackend starts b's endpoint source and drain controller under the
// run. drain owns every migration, longhaul's own shutdown's too: it runs
// until the listeners are done. Called with a.mu held.
func (a *App) startBackend(b *backend) {
	sctx, stopSource := context.WithCancel(a.run.srcCtx)
	dctx, stopDrain := context.WithCancel(a.run.serveCtx)
	b.stopSource, b.stopDrain = stopSource, stopDrain
	src := b.src
	a.run.g.Go(func() error { return a.runSource(sctx, b, src) })
	a.run.g.Go(func() error { b.drain.Run(dctx); return nil })
}
