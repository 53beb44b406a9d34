// Package config loads, validates and watches longhaul's configuration.
//
// The configuration is one YAML file (see testdata/example.yaml). Some keys
// can be overridden by environment variables LONGHAUL_<PATH> (for example
// LONGHAUL_LOG_LEVEL) and by flags (see BindFlags); a flag beats the
// environment, which beats the file, which beats the defaults.
//
// Keys are case-insensitive. Unknown keys, values of the wrong type and values
// out of range are all errors: Load and Parse report every problem at once in
// a *ValidationError, each Problem naming the field's path (as in
// "listeners[0].balance.policy") and the bad value.
package config

import (
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// Config is longhaul's whole configuration.
type Config struct {
	// Admin is the admin HTTP server (metrics, probes, debug views).
	Admin Admin `mapstructure:"admin"`
	// Log says how longhaul logs.
	Log Log `mapstructure:"log"`
	// Gateway, with a Class, makes longhaul a Gateway API gateway: it
	// serves the listeners that the Gateways of that GatewayClass call for,
	// beside the file's own (which may then be none).
	Gateway Gateway `mapstructure:"gateway"`
	// Listeners are the proxy's listeners; at least one is required.
	Listeners []Listener `mapstructure:"listeners"`
}

// Admin configures longhaul's two admin servers: one for what the kubelet
// and Prometheus read, one for the debug views. Changing any of it needs a
// restart.
type Admin struct {
	// Address is the host:port of /healthz, /readyz and /metrics. It names
	// no client, so it may listen where the kubelet and Prometheus reach it
	// (0.0.0.0:9901 in a cluster).
	Address string `mapstructure:"address"`
	// DebugAddress is the host:port of /debug/endpoints, /debug/sessions
	// (every client's address) and, with Pprof, /debug/pprof/; empty (the
	// default) serves none of them. It must be a loopback address (reached
	// in a cluster with kubectl port-forward) unless DebugTokenFile is set.
	DebugAddress string `mapstructure:"debugAddress"`
	// DebugTokenFile, if set, names a file holding a bearer token (at least
	// 16 characters, read at start) that every request to DebugAddress must
	// send as "Authorization: Bearer TOKEN"; others get 401.
	DebugTokenFile string `mapstructure:"debugTokenFile"`
	// Pprof serves Go's profiles under /debug/pprof/ on DebugAddress, which
	// it needs. Off by default: profiles show memory contents and cost CPU
	// while they run.
	Pprof bool `mapstructure:"pprof"`
	// MaxConnections caps the connections of each admin server, at least
	// 2. The last slot is kept for a newcomer: taking it closes the
	// connection idle the longest (and one turning idle when all are taken
	// is closed), so idle connections never lock probes out; only requests
	// in progress make newcomers wait.
	MaxConnections int `mapstructure:"maxConnections"`
	// Timeouts bound each admin connection.
	Timeouts AdminTimeouts `mapstructure:"timeouts"`
}

// AdminTimeouts bound the connections of the admin servers. All are
// positive, and Read is at least ReadHeader.
type AdminTimeouts struct {
	// ReadHeader bounds reading a request's headers; a connection that
	// sends nothing is closed after it.
	ReadHeader time.Duration `mapstructure:"readHeader"`
	// Read bounds reading a whole request.
	Read time.Duration `mapstructure:"read"`
	// Write bounds writing a response (a timed pprof profile adds its
	// duration).
	Write time.Duration `mapstructure:"write"`
	// Idle closes a keep-alive connection idle for this long.
	Idle time.Duration `mapstructure:"idle"`
}

// Gateway configures the Gateway API role.
type Gateway struct {
	// Class is the GatewayClass served ("" for none): its
	// spec.controllerName must be GatewayController. AnyGatewayClass
	// serves every class of that controllerName, as the Gateway API
	// expects of an implementation (its conformance suite makes classes of
	// its own).
	Class string `mapstructure:"class"`
	// Address is the IP address every Gateway's listeners bind; empty
	// means 0.0.0.0. A prefix (say 127.1.0.0/16) gives each Gateway an
	// address of its own in it, by a hash of its namespace and name (the
	// same on every replica), so that Gateways may share ports: for tests
	// and for nodes with addresses to spare. Gateways report the
	// addresses of StatusAddresses, or their bind address when that is
	// empty and it is not 0.0.0.0.
	Address string `mapstructure:"address"`
	// StatusAddresses are the addresses Gateways report in their status
	// (the Service in front of longhaul, say).
	StatusAddresses []string `mapstructure:"statusAddresses"`
}

// AnyGatewayClass as Gateway.Class serves every GatewayClass of
// GatewayController.
const AnyGatewayClass = "*"

// GatewayController is the spec.controllerName of the GatewayClasses
// longhaul serves.
const GatewayController = "longhaul.dev/gateway"

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `mapstructure:"level"`
	// Format is json or console.
	Format string `mapstructure:"format"`
}

// Listener is one address longhaul accepts connections on, and how it
// spreads them over its endpoints.
type Listener struct {
	// Name identifies the listener in logs, metrics and the admin views; it
	// is unique and DNS-label-like.
	Name string `mapstructure:"name"`
	// Address is the host:port to listen on; unique among listeners.
	Address string `mapstructure:"address"`
	// Protocol is tcp, http or grpc.
	Protocol string `mapstructure:"protocol"`
	// Endpoints says where the backends come from; left out when the
	// listener has Routes (each of its Backends has endpoints of its own).
	Endpoints Endpoints `mapstructure:"endpoints"`
	// Backends are the named endpoint sets Routes send to (http and grpc
	// listeners); each starts from the listener's Balance and Drain.
	Backends []Backend `mapstructure:"backends"`
	// Routes, if set, route each request to a backend by host, path,
	// method, headers and query (HTTPRoute) or by gRPC service and method
	// (GRPCRoute), as the Gateway API defines them.
	Routes Routes `mapstructure:"routes"`
	// Balance says how a backend is chosen.
	Balance Balance `mapstructure:"balance"`
	// Timeouts bound connecting to a backend and idle connections.
	Timeouts Timeouts `mapstructure:"timeouts"`
	// MaxConnections bounds the listener's concurrent client connections:
	// at the bound the listener stops accepting, and new connections wait
	// in the kernel's backlog until a slot frees.
	MaxConnections int `mapstructure:"maxConnections"`
	// MaxConnectionsPerClient bounds the concurrent connections of one
	// client IP address (for tcp listeners with proxyProtocol.accept, the
	// address the PROXY header gives); one above it is closed at once. 0
	// means no bound.
	MaxConnectionsPerClient int `mapstructure:"maxConnectionsPerClient"`
	// ProxyProtocol says whether PROXY protocol headers are accepted from
	// clients and sent to backends.
	ProxyProtocol ProxyProtocol `mapstructure:"proxyProtocol"`
	// Drain says how sessions leave a terminating endpoint.
	Drain Drain `mapstructure:"drain"`
	// HTTP holds the options of http and grpc listeners; it must be left
	// empty on a tcp listener.
	HTTP HTTP `mapstructure:"http"`
	// AccessLog turns on one log line per HTTP request, gRPC call,
	// WebSocket and TCP session of the listener.
	AccessLog AccessLog `mapstructure:"accessLog"`
}

// AccessLog configures a listener's access log: one structured line (on
// the logger named "access") per request, call or session, sampled and
// capped per second so that logging never holds traffic back. Lines left
// out are counted in longhaul_access_log_dropped_total by reason.
type AccessLog struct {
	Enabled bool `mapstructure:"enabled"`
	// Sample is the share of requests and sessions logged, 0 to 1; 1 (the
	// default) logs every one.
	Sample float64 `mapstructure:"sample"`
	// MaxPerSecond caps the lines written per second (with a burst of as
	// many); those over it are dropped. 0 means no cap; default 1000.
	MaxPerSecond int `mapstructure:"maxPerSecond"`
}

// Endpoints names exactly one source of backend endpoints.
type Endpoints struct {
	// Static is a fixed list of ip:port addresses.
	Static []string `mapstructure:"static"`
	// File is a YAML endpoints file, watched for changes.
	File string `mapstructure:"file"`
	// Kubernetes selects the EndpointSlices of a Service.
	Kubernetes *Kubernetes `mapstructure:"kubernetes"`
}

// Kubernetes selects the endpoints of one port of a Kubernetes Service.
type Kubernetes struct {
	Namespace string `mapstructure:"namespace"`
	Service   string `mapstructure:"service"`
	// Port is the Service port's name or number.
	Port string `mapstructure:"port"`
	// Coalesce is the longest an EndpointSlice change waits before it is
	// published; changes within it make one snapshot (a rollout of 100
	// pods is a few picker builds, not hundreds). 0 means 50ms; at most 10s.
	Coalesce time.Duration `mapstructure:"coalesce"`
	// Identity is where an endpoint's hash identity comes from, the one
	// Maglev builds its table by (discovery.Endpoint.ID): "" or "address"
	// (the default: a pod replaced under a new IP moves its keys) or
	// "pod-name" (the pod's name: a StatefulSet pod, which keeps its name,
	// keeps its keys under a new IP) or "label:KEY" or "annotation:KEY"
	// (the value of that label or annotation of the pod, read with the
	// optional pods permission: a replacement pod that carries the same
	// value takes its predecessor's keys). It is the name
	// discovery.ParseIdentity takes.
	Identity string `mapstructure:"identity"`
}

// Balance configures the load balancer of a listener.
type Balance struct {
	// Policy is maglev or least-connections.
	Policy string `mapstructure:"policy"`
	// Key is what is hashed for maglev: client-ip or client-ip-port; http
	// and grpc listeners also accept path, header:NAME, cookie:NAME,
	// query:NAME and grpc-metadata:NAME.
	Key string `mapstructure:"key"`
	// BoundedLoad caps an endpoint's load at this multiple of the mean
	// (maglev only); 0 turns bounded loads off, otherwise 1 to 10.
	BoundedLoad float64 `mapstructure:"boundedLoad"`
	// TableSize is the Maglev lookup table's size, a prime.
	TableSize uint64 `mapstructure:"tableSize"`
	// LoadFloor is how many sessions an endpoint may carry above its
	// bounded share before it is skipped, so that replicas agree on keys
	// while nothing is overloaded (balancer.Policy.LoadFloor); 0 is none.
	LoadFloor int `mapstructure:"loadFloor"`
}

// BalancerPolicy returns the balancing policy as the balancer takes it. It
// cannot fail on a Balance that passed Validate (Load and Parse validate);
// on a policy name Validate refuses it panics, as that is a caller's bug.
func (b Balance) BalancerPolicy() balancer.Policy {
	kind, err := balancer.ParseKind(b.Policy)
	if err != nil {
		panic("config: BalancerPolicy of a Balance that did not pass Validate: " + err.Error())
	}
	floor := b.LoadFloor
	if floor == 0 {
		floor = balancer.NoLoadFloor
	}
	return balancer.Policy{Kind: kind, TableSize: b.TableSize, BoundedLoad: b.BoundedLoad, LoadFloor: floor}
}

// KeySpec returns the balancing key as the balancer and proxy take it; on a
// tcp listener that passed Validate it is FromConnection. It cannot fail on
// a Balance that passed Validate; on a key Validate refuses it panics, as
// that is a caller's bug.
func (b Balance) KeySpec() balancer.KeySpec {
	k, err := balancer.ParseKeySpec(b.Key)
	if err != nil {
		panic("config: KeySpec of a Balance that did not pass Validate: " + err.Error())
	}
	return k
}

// Timeouts of a listener: one for every state a peer can leave a
// connection in. All must be positive, except TCPKeepAlive, which may be 0.
type Timeouts struct {
	// Connect bounds dialling a backend.
	Connect time.Duration `mapstructure:"connect"`
	// Idle closes raw TCP sessions with nothing moving either way for this
	// long.
	Idle time.Duration `mapstructure:"idle"`
	// KeepAliveIdle closes an HTTP/1 client connection that waits this long
	// for its next request (NGINX's keepalive_timeout), and an HTTP/2
	// client connection with no stream open for this long (GOAWAY).
	KeepAliveIdle time.Duration `mapstructure:"keepAliveIdle"`
	// RequestBody bounds the wait between two reads of a request body
	// (NGINX's client_body_timeout): a body trickling slower is cut, the
	// client answered 408 and its connection closed.
	RequestBody time.Duration `mapstructure:"requestBody"`
	// ResponseHeader bounds the wait for an endpoint's response headers,
	// from the request sent (NGINX's proxy_read_timeout); the client is
	// answered 504 (gRPC: UNAVAILABLE).
	ResponseHeader time.Duration `mapstructure:"responseHeader"`
	// WebSocketIdle closes a WebSocket with no frame either way for this
	// long (HAProxy's timeout tunnel), with Close 1001 to both sides.
	WebSocketIdle time.Duration `mapstructure:"webSocketIdle"`
	// StreamIdle ends an HTTP/2 stream of the frame relay (h2c endpoints)
	// with no frame either way for this long: gRPC UNAVAILABLE, 504 before
	// a response, else RST_STREAM; the endpoint's stream is cancelled.
	// Long by default: long-lived gRPC streams are the point.
	StreamIdle time.Duration `mapstructure:"streamIdle"`
	// HalfClosed ends a raw TCP session once one side has half-closed (sent
	// its FIN) and nothing moved either way for this long (HAProxy's
	// client-fin and server-fin).
	HalfClosed time.Duration `mapstructure:"halfClosed"`
	// TCPKeepAlive is the TCP keep-alive probe period on client and
	// endpoint sockets: the first probe after this long without traffic,
	// then one every period; 0 sends no probes. At least 1s.
	TCPKeepAlive time.Duration `mapstructure:"tcpKeepAlive"`
	// Park is how long a direction of a raw TCP session, or of a
	// WebSocket with a TLS side, waits for bytes on a goroutine of its own
	// before its socket is parked: an idle session then holds no goroutine
	// and no buffer, only its state (a few KiB), until bytes come. A
	// direction woken soon after it parked waits longer before the next
	// park (up to 100 times), so that a steady stream does not pay for
	// parking. A WebSocket direction between two plain sockets parks at
	// each frame boundary without waiting: its small frames are relayed
	// as they come on the parker's goroutine.
	Park time.Duration `mapstructure:"park"`
}

// ProxyProtocol configures the PROXY protocol.
type ProxyProtocol struct {
	// Accept reads a PROXY v1 or v2 header from each client connection (sent
	// by a front load balancer).
	Accept bool `mapstructure:"accept"`
	// Send writes a PROXY v2 header on each backend connection.
	Send bool `mapstructure:"send"`
}

// Drain configures how sessions leave a terminating endpoint, and how they
// are rebalanced after a scale-up.
type Drain struct {
	// Timeout is the time sessions get to move; 0 closes them at once.
	Timeout time.Duration `mapstructure:"timeout"`
	// Window spreads the start of migrations over this long, with jitter,
	// so that the other endpoints do not take every reconnect at once; 0
	// means half of Timeout. At most Timeout.
	Window time.Duration `mapstructure:"window"`
	// Rate caps the migrations started per second per listener; 0 means no
	// cap. The deadline wins over the cap.
	Rate float64 `mapstructure:"rate"`
	// KillMargin: when the pod behind a terminating endpoint can be read
	// (Kubernetes endpoints, with the optional permission to get pods),
	// sessions must be gone this long before its kill time (its deletion
	// timestamp), if that comes before Timeout. At least 0.
	KillMargin time.Duration `mapstructure:"killMargin"`
	// TCP is what a raw TCP session does when its endpoint drains:
	// deadline (keep relaying until Timeout, then close) or immediate
	// (close at its paced turn). Bytes already read are always delivered.
	TCP string `mapstructure:"tcp"`
	// Rebalance moves sessions off endpoints that carry far more than the
	// mean, so that long-lived sessions follow a scale-up.
	Rebalance Rebalance `mapstructure:"rebalance"`
}

// Rebalance configures the rebalancing of long-lived sessions after a
// scale-up. It is on by default with balance.policy least-connections
// (factor 1.25), where moving a session cannot break an affinity, and off
// otherwise: maglev needs balance.boundedLoad and an explicit factor. Once
// the busiest endpoint has stayed above max(factor × mean, ceil(mean) + 1)
// for sustain, sessions move off the busiest endpoints, at most perMinute
// of them a minute and maxPerRound a second, until none is above
// max(floor(target × mean), ceil(mean)); a session is never moved twice
// within cooldown. Only sessions that leave without loss move: WebSocket
// (close handshake) and HTTP connection pins (GOAWAY); raw TCP sessions
// only with tcp: true (for clients that reconnect and resend).
type Rebalance struct {
	// Factor starts rebalancing when the busiest endpoint has more than
	// Factor times the mean of sessions; 0 turns it off, else > 1.
	Factor float64 `mapstructure:"factor"`
	// Target stops rebalancing when no endpoint has more than Target
	// times the mean (rounded for small numbers); from 1 to 100, and a
	// Target above Factor counts as Factor.
	Target float64 `mapstructure:"target"`
	// Sustain is how long an imbalance must last before sessions move.
	Sustain time.Duration `mapstructure:"sustain"`
	// PerMinute is the share of the sessions moved per minute at most
	// (and at least one a second while rebalancing); above 0, at most 10.
	PerMinute float64 `mapstructure:"perMinute"`
	// MaxPerRound bounds the sessions moved per round; rounds are a
	// second apart.
	MaxPerRound int `mapstructure:"maxPerRound"`
	// Cooldown: a session moved is not moved again for this long.
	Cooldown time.Duration `mapstructure:"cooldown"`
	// TCP lets rebalancing move raw TCP sessions too (closed at their
	// turn, as drain.tcp says); false leaves them where they are.
	TCP bool `mapstructure:"tcp"`
}

// HTTP holds the options of an http or grpc listener.
type HTTP struct {
	// Upstream is how requests go to endpoints: http1 (HTTP/1.1 keep-alive)
	// or h2c (HTTP/2 without TLS). Empty means by protocol: h2c for grpc,
	// http1 for http.
	Upstream string `mapstructure:"upstream"`
	// Affinity is none (each request balanced on its own, the default) or
	// connection: each client connection is pinned to one endpoint, picked
	// by the balance key on its first request, for apps that keep
	// per-connection state; drain then moves whole connections.
	Affinity string `mapstructure:"affinity"`
	// WebSocket configures upgraded WebSocket connections.
	WebSocket WebSocket `mapstructure:"webSocket"`
	// TLS, if it names a certificate, serves TLS (ALPN h2, http/1.1).
	TLS TLS `mapstructure:"tls"`
}

// WebSocket configures the WebSocket relay of an http listener.
type WebSocket struct {
	// MaxFrame bounds a frame's payload in bytes; 0 means the proxy's
	// default (16 MiB).
	MaxFrame int64 `mapstructure:"maxFrame"`
	// CloseCode is sent to clients whose endpoint drains: 1012 (service
	// restart) or 1001 (going away); 0 means 1012.
	CloseCode int `mapstructure:"closeCode"`
}

// TLS is the certificates a TLS listener serves. certFile and keyFile
// name the default pair; certificates adds pairs chosen by the client's
// server name (SNI), as proxy/certs orders them. Files are read again when
// they change.
type TLS struct {
	CertFile     string        `mapstructure:"certFile"`
	KeyFile      string        `mapstructure:"keyFile"`
	Certificates []Certificate `mapstructure:"certificates"`
}

// Enabled reports whether the listener serves TLS.
func (t *TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" || len(t.Certificates) > 0 }

// Certificate is one certificate and key, from PEM files or inline PEM
// (the gateway controller fills those from Secrets), for the hostnames it
// names: exact or "*.example.com", lower-case; none makes it a default.
type Certificate struct {
	Hostnames []string `mapstructure:"hostnames"`
	CertFile  string   `mapstructure:"certFile"`
	KeyFile   string   `mapstructure:"keyFile"`
	CertPEM   string   `mapstructure:"certPEM"`
	KeyPEM    string   `mapstructure:"keyPEM"`
}

// Defaults applied by Load and Parse where the file leaves a key out.
const (
	DefaultAdminAddress          = "127.0.0.1:9901"
	DefaultLogLevel              = "info"
	DefaultLogFormat             = "json"
	DefaultProtocol              = "tcp"
	DefaultPolicy                = "maglev"
	DefaultKey                   = "client-ip"
	DefaultBoundedLoad           = 1.25 // for maglev; least-connections defaults to 0
	DefaultTableSize             = balancer.DefaultTableSize
	DefaultLoadFloor             = balancer.DefaultLoadFloor
	DefaultConnectTimeout        = 2 * time.Second
	DefaultIdleTimeout           = time.Hour
	DefaultKeepAliveIdle         = 75 * time.Second
	DefaultRequestBody           = 60 * time.Second
	DefaultResponseHeader        = 60 * time.Second
	DefaultWebSocketIdle         = time.Hour
	DefaultStreamIdle            = time.Hour
	DefaultHalfClosed            = 60 * time.Second
	DefaultTCPKeepAlive          = 60 * time.Second
	DefaultPark                  = 100 * time.Millisecond
	DefaultMaxConnections        = 100000
	DefaultDrainTimeout          = 25 * time.Second
	DefaultDrainTCP              = "deadline"
	DefaultKillMargin            = 2 * time.Second
	DefaultAccessLogSample       = 1.0
	DefaultAccessLogMaxPerSecond = 1000

	DefaultRebalanceFactor      = 1.25 // for least-connections; others default to 0 (off)
	DefaultRebalanceTarget      = 1.1
	DefaultRebalanceSustain     = 10 * time.Second
	DefaultRebalancePerMinute   = 1.0
	DefaultRebalanceMaxPerRound = 10
	DefaultRebalanceCooldown    = 10 * time.Minute
)

// Defaults of the admin servers' limits (see Admin).
const (
	DefaultAdminMaxConnections    = 64
	DefaultAdminReadHeaderTimeout = 5 * time.Second
	DefaultAdminReadTimeout       = 10 * time.Second
	DefaultAdminWriteTimeout      = 10 * time.Second
	DefaultAdminIdleTimeout       = time.Minute
)

// Default returns the configuration's defaults: the admin server on
// 127.0.0.1:9901 (64 connections; timeouts readHeader 5s, read 10s, write
// 10s, idle 1m), no debug server, logs at info in JSON, and no listeners. Each listener's
// own defaults (protocol tcp, policy maglev, key client-ip, boundedLoad 1.25
// for maglev, tableSize 65537, the timeouts of DefaultTimeouts,
// maxConnections 100000, drain timeout 25s, killMargin 2s) are applied by Load and Parse.
func Default() *Config {
	return &Config{
		Admin: Admin{Address: DefaultAdminAddress, MaxConnections: DefaultAdminMaxConnections, Timeouts: AdminTimeouts{
			ReadHeader: DefaultAdminReadHeaderTimeout, Read: DefaultAdminReadTimeout,
			Write: DefaultAdminWriteTimeout, Idle: DefaultAdminIdleTimeout}},
		Log: Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}

// defaultListener is the starting point of every decoded listener.
func defaultListener() Listener {
	return Listener{
		Protocol: DefaultProtocol,
		Balance: Balance{
			Policy:      DefaultPolicy,
			Key:         DefaultKey,
			BoundedLoad: DefaultBoundedLoad,
			TableSize:   DefaultTableSize,
			LoadFloor:   DefaultLoadFloor,
		},
		Timeouts:       DefaultTimeouts(),
		MaxConnections: DefaultMaxConnections,
		Drain: Drain{Timeout: DefaultDrainTimeout, TCP: DefaultDrainTCP, KillMargin: DefaultKillMargin,
			Rebalance: defaultRebalance()},
		AccessLog: AccessLog{Sample: DefaultAccessLogSample, MaxPerSecond: DefaultAccessLogMaxPerSecond},
	}
}

// defaultRebalance returns a listener's rebalancing where the file sets
// none, but for Factor, which depends on the policy (applyListenerDefaults).
func defaultRebalance() Rebalance {
	return Rebalance{Target: DefaultRebalanceTarget, Sustain: DefaultRebalanceSustain,
		PerMinute: DefaultRebalancePerMinute, MaxPerRound: DefaultRebalanceMaxPerRound,
		Cooldown: DefaultRebalanceCooldown}
}

// DefaultTimeouts returns a listener's timeouts where the file sets none:
// connect 2s, idle 1h, keepAliveIdle 75s, requestBody 60s, responseHeader
// 60s, webSocketIdle 1h, streamIdle 1h, halfClosed 60s, tcpKeepAlive 60s.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		Connect: DefaultConnectTimeout, Idle: DefaultIdleTimeout,
		KeepAliveIdle: DefaultKeepAliveIdle, RequestBody: DefaultRequestBody,
		ResponseHeader: DefaultResponseHeader, WebSocketIdle: DefaultWebSocketIdle, StreamIdle: DefaultStreamIdle,
		HalfClosed: DefaultHalfClosed, TCPKeepAlive: DefaultTCPKeepAlive, Park: DefaultPark,
	}
}
