package config

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/testcert"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// TestValidate has a case for every rule: each mutates a valid
// configuration and lists the problems Validate must report, exactly.
func TestValidate(t *testing.T) {
	l0 := func(c *Config) *Listener { return &c.Listeners[0] }
	second := func(c *Config) *Listener {
		l := c.Listeners[0]
		l.Name, l.Address = "second", "127.0.0.1:7001"
		c.Listeners = append(c.Listeners, l)
		return &c.Listeners[len(c.Listeners)-1]
	}
	k8s := func(ns, svc, port string) func(*Config) {
		return func(c *Config) {
			l0(c).Endpoints = Endpoints{Kubernetes: &Kubernetes{Namespace: ns, Service: svc, Port: port}}
		}
	}
	testPair := testcert.New(t, "a.example.com", "a.example.com")
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // nil: valid
	}{
		{"example is valid", func(*Config) {}, nil},

		// admin.address
		{"admin address missing", func(c *Config) { c.Admin.Address = "" },
			[]string{"admin.address: is required"}},
		{"admin address without port", func(c *Config) { c.Admin.Address = "127.0.0.1" },
			[]string{`admin.address: "127.0.0.1": must be host:port`}},
		{"admin port 0", func(c *Config) { c.Admin.Address = "127.0.0.1:0" },
			[]string{`admin.address: "127.0.0.1:0": port must be a number from 1 to 65535`}},
		{"admin port 65536", func(c *Config) { c.Admin.Address = "127.0.0.1:65536" },
			[]string{`admin.address: "127.0.0.1:65536": port must be a number from 1 to 65535`}},
		{"admin port by name", func(c *Config) { c.Admin.Address = "127.0.0.1:http" },
			[]string{`admin.address: "127.0.0.1:http": port must be a number from 1 to 65535`}},
		{"admin bad host", func(c *Config) { c.Admin.Address = "my_host:80" },
			[]string{`admin.address: "my_host:80": host must be an IP address or a DNS name`}},
		{"admin on every interface", func(c *Config) { c.Admin.Address = ":9901" }, nil},
		{"admin on a host name", func(c *Config) { c.Admin.Address = "localhost:9901" }, nil},
		{"admin on IPv6", func(c *Config) { c.Admin.Address = "[::1]:9901" }, nil},

		// admin.debugAddress, debugTokenFile, pprof
		{"debug on loopback", func(c *Config) { c.Admin.DebugAddress = "127.0.0.1:9902"; c.Admin.Pprof = true }, nil},
		{"debug on IPv6 loopback", func(c *Config) { c.Admin.DebugAddress = "[::1]:9902" }, nil},
		{"debug on localhost", func(c *Config) { c.Admin.DebugAddress = "localhost:9902" }, nil},
		{"debug on 127.0.0.2", func(c *Config) { c.Admin.DebugAddress = "127.0.0.2:9902" }, nil},
		{"debug on every interface without a token", func(c *Config) { c.Admin.DebugAddress = ":9902" },
			[]string{`admin.debugAddress: ":9902": ` + notLoopback}},
		{"debug on 0.0.0.0 without a token", func(c *Config) { c.Admin.DebugAddress = "0.0.0.0:9902" },
			[]string{`admin.debugAddress: "0.0.0.0:9902": ` + notLoopback}},
		{"debug on a pod IP without a token", func(c *Config) { c.Admin.DebugAddress = "10.1.2.3:9902" },
			[]string{`admin.debugAddress: "10.1.2.3:9902": ` + notLoopback}},
		{"debug on a host name without a token", func(c *Config) { c.Admin.DebugAddress = "longhaul.shop:9902" },
			[]string{`admin.debugAddress: "longhaul.shop:9902": ` + notLoopback}},
		{"debug on every interface with a token", func(c *Config) { c.Admin.DebugAddress = ":9902"; c.Admin.DebugTokenFile = "/run/token" }, nil},
		{"debug address bad", func(c *Config) { c.Admin.DebugAddress = "127.0.0.1" },
			[]string{`admin.debugAddress: "127.0.0.1": must be host:port`}},
		{"debug address same as admin", func(c *Config) { c.Admin.DebugAddress = "127.0.0.1:9901" },
			[]string{`admin.debugAddress: "127.0.0.1:9901": conflicts with admin.address "127.0.0.1:9901"`}},
		{"listener on the debug address", func(c *Config) { c.Admin.DebugAddress = "127.0.0.1:7000" },
			[]string{`listeners[0].address: "127.0.0.1:7000": conflicts with admin.debugAddress "127.0.0.1:7000"`}},
		{"pprof without a debug address", func(c *Config) { c.Admin.Pprof = true },
			[]string{`admin.pprof: true: needs admin.debugAddress: pprof is served there only`}},
		{"token without a debug address", func(c *Config) { c.Admin.DebugTokenFile = "/run/token" },
			[]string{`admin.debugTokenFile: "/run/token": needs admin.debugAddress: the token guards the debug server`}},

		// admin.maxConnections, admin.timeouts
		{"admin maxConnections 1", func(c *Config) { c.Admin.MaxConnections = 1 },
			[]string{`admin.maxConnections: 1: must be at least 2 (one slot is kept free for a newcomer)`}},
		{"admin maxConnections 2", func(c *Config) { c.Admin.MaxConnections = 2 }, nil},
		{"admin timeouts zero", func(c *Config) { c.Admin.Timeouts = AdminTimeouts{} }, []string{
			`admin.timeouts.readHeader: 0s: must be greater than 0`, `admin.timeouts.read: 0s: must be greater than 0`,
			`admin.timeouts.write: 0s: must be greater than 0`, `admin.timeouts.idle: 0s: must be greater than 0`}},
		{"admin read below readHeader", func(c *Config) { c.Admin.Timeouts.Read = time.Second },
			[]string{`admin.timeouts.read: 1s: must be at least admin.timeouts.readHeader (5s): it bounds the headers too`}},
		{"admin timeouts negative", func(c *Config) { c.Admin.Timeouts.Idle = -time.Second },
			[]string{`admin.timeouts.idle: -1s: must be greater than 0`}},

		// log
		{"log level", func(c *Config) { c.Log.Level = "verbose" },
			[]string{`log.level: "verbose": must be one of debug, info, warn, error`}},
		{"log format", func(c *Config) { c.Log.Format = "text" },
			[]string{`log.format: "text": must be one of json, console`}},
		{"log level and format are case-sensitive values", func(c *Config) { c.Log.Level, c.Log.Format = "INFO", "JSON" },
			[]string{`log.level: "INFO": must be one of debug, info, warn, error`, `log.format: "JSON": must be one of json, console`}},

		// listeners
		{"no listeners", func(c *Config) { c.Listeners = nil },
			[]string{"listeners: at least one listener is required (or gateway.class)"}},
		{"name missing", func(c *Config) { l0(c).Name = "" },
			[]string{"listeners[0].name: is required"}},
		{"name uppercase", func(c *Config) { l0(c).Name = "Echo" },
			[]string{`listeners[0].name: "Echo": must be a DNS label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`}},
		{"name starts with a hyphen", func(c *Config) { l0(c).Name = "-echo" },
			[]string{`listeners[0].name: "-echo": must be a DNS label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`}},
		{"name too long", func(c *Config) { l0(c).Name = strings.Repeat("a", 64) },
			[]string{`listeners[0].name: "` + strings.Repeat("a", 64) + `": must be a DNS label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`}},
		{"name of 63 with digits and hyphens", func(c *Config) { l0(c).Name = "9-" + strings.Repeat("a", 61) }, nil},
		{"duplicate name", func(c *Config) { second(c).Name = "echo" },
			[]string{`listeners[1].name: "echo": duplicate of listeners[0].name`}},
		{"address missing", func(c *Config) { l0(c).Address = "" },
			[]string{"listeners[0].address: is required"}},
		{"address bad port", func(c *Config) { l0(c).Address = "127.0.0.1:70000" },
			[]string{`listeners[0].address: "127.0.0.1:70000": port must be a number from 1 to 65535`}},
		{"address not host:port", func(c *Config) { l0(c).Address = "7000" },
			[]string{`listeners[0].address: "7000": must be host:port`}},
		{"duplicate address", func(c *Config) { second(c).Address = "127.0.0.1:7000" },
			[]string{`listeners[1].address: "127.0.0.1:7000": conflicts with listeners[0].address "127.0.0.1:7000"`}},
		{"address overlapping a wildcard", func(c *Config) { second(c).Address = "0.0.0.0:7000" },
			[]string{`listeners[1].address: "0.0.0.0:7000": conflicts with listeners[0].address "127.0.0.1:7000"`}},
		{"address same port other host", func(c *Config) { second(c).Address = "127.0.0.2:7000" }, nil},
		{"address same as admin", func(c *Config) { l0(c).Address = "127.0.0.1:9901" },
			[]string{`listeners[0].address: "127.0.0.1:9901": conflicts with admin.address "127.0.0.1:9901"`}},
		{"protocol", func(c *Config) { l0(c).Protocol = "udp" },
			[]string{`listeners[0].protocol: "udp": must be one of tcp, http, grpc`}},
		{"protocol http", func(c *Config) { l0(c).Protocol = "http" }, nil},
		{"protocol grpc", func(c *Config) { l0(c).Protocol = "grpc" }, nil},

		// endpoints
		{"no endpoint source", func(c *Config) { l0(c).Endpoints = Endpoints{} },
			[]string{"listeners[0].endpoints: must set one of static, file, kubernetes"}},
		{"empty static list is no source", func(c *Config) { l0(c).Endpoints = Endpoints{Static: []string{}} },
			[]string{"listeners[0].endpoints: must set one of static, file, kubernetes"}},
		{"two endpoint sources", func(c *Config) { l0(c).Endpoints.File = "eps.yaml" },
			[]string{"listeners[0].endpoints: sets static and file: must set exactly one of static, file, kubernetes"}},
		{"three endpoint sources", func(c *Config) {
			l0(c).Endpoints.File = "eps.yaml"
			l0(c).Endpoints.Kubernetes = &Kubernetes{Namespace: "shop", Service: "cart", Port: "grpc"}
		}, []string{"listeners[0].endpoints: sets static and file and kubernetes: must set exactly one of static, file, kubernetes"}},
		{"file source", func(c *Config) { l0(c).Endpoints = Endpoints{File: "eps.yaml"} }, nil},
		{"static host name", func(c *Config) { l0(c).Endpoints.Static[1] = "db:7102" },
			[]string{`listeners[0].endpoints.static[1]: "db:7102": must be ip:port: address "db:7102": "db" is not an IP address`}},
		{"static without port", func(c *Config) { l0(c).Endpoints.Static[0] = "127.0.0.1" },
			[]string{`listeners[0].endpoints.static[0]: "127.0.0.1": must be ip:port: address "127.0.0.1": want ip:port: address 127.0.0.1: missing port in address`}},
		{"static port 0", func(c *Config) { l0(c).Endpoints.Static[2] = "127.0.0.1:0" },
			[]string{`listeners[0].endpoints.static[2]: "127.0.0.1:0": must be ip:port: address "127.0.0.1:0": port 0`}},
		{"static duplicate in another form", func(c *Config) { l0(c).Endpoints.Static[2] = "[::ffff:127.0.0.1]:7101" },
			[]string{`listeners[0].endpoints.static[2]: "[::ffff:127.0.0.1]:7101": duplicate of listeners[0].endpoints.static[0]`}},
		{"static IPv6", func(c *Config) { l0(c).Endpoints.Static = []string{"[fd00::1]:80"} }, nil},
		{"kubernetes by port name", k8s("shop", "cart", "grpc"), nil},
		{"kubernetes by port number", k8s("shop", "cart", "8080"), nil},
		{"kubernetes empty", k8s("", "", ""), []string{
			"listeners[0].endpoints.kubernetes.namespace: is required",
			"listeners[0].endpoints.kubernetes.service: is required",
			"listeners[0].endpoints.kubernetes.port: is required",
		}},
		{"kubernetes bad names", k8s("Shop", "9cart", "99999"), []string{
			`listeners[0].endpoints.kubernetes.namespace: "Shop": must be a Kubernetes namespace name (a DNS label)`,
			`listeners[0].endpoints.kubernetes.service: "9cart": must be a Kubernetes Service name (a DNS label starting with a letter)`,
			`listeners[0].endpoints.kubernetes.port: "99999": must be a port number from 1 to 65535 or a port name (at most 15 lowercase letters, digits and '-', with a letter)`,
		}},
		{"kubernetes port name too long", k8s("shop", "cart", "a-very-long-port-name"), []string{
			`listeners[0].endpoints.kubernetes.port: "a-very-long-port-name": must be a port number from 1 to 65535 or a port name (at most 15 lowercase letters, digits and '-', with a letter)`,
		}},
		{"kubernetes port 0", k8s("shop", "cart", "0"), []string{
			`listeners[0].endpoints.kubernetes.port: "0": must be a port number from 1 to 65535 or a port name (at most 15 lowercase letters, digits and '-', with a letter)`,
		}},

		// balance
		{"policy", func(c *Config) { l0(c).Balance.Policy = "magelv" },
			[]string{`listeners[0].balance.policy: "magelv": must be one of maglev, least-connections`}},
		{"policy least-connections", func(c *Config) { l0(c).Balance.Policy = "least-connections" }, nil},
		{"key", func(c *Config) { l0(c).Balance.Key = "source-ip" },
			[]string{`listeners[0].balance.key: "source-ip": must be one of client-ip, client-ip-port`}},
		{"key client-ip-port", func(c *Config) { l0(c).Balance.Key = "client-ip-port" }, nil},
		{"key of http only on tcp", func(c *Config) { l0(c).Balance.Key = "header:x-user" },
			[]string{`listeners[0].balance.key: "header:x-user": must be one of client-ip, client-ip-port`}},
		{"key header on http", func(c *Config) { l0(c).Protocol, l0(c).Balance.Key = "http", "header:x-user" }, nil},
		{"key grpc-metadata on grpc", func(c *Config) { l0(c).Protocol, l0(c).Balance.Key = "grpc", "grpc-metadata:tenant" }, nil},
		{"key path on http", func(c *Config) { l0(c).Protocol, l0(c).Balance.Key = "http", "path" }, nil},
		{"key header without name", func(c *Config) { l0(c).Protocol, l0(c).Balance.Key = "http", "header:" },
			[]string{`listeners[0].balance.key: "header:": header needs a name, as in header:NAME`}},
		{"key header name with a space", func(c *Config) { l0(c).Protocol, l0(c).Balance.Key = "http", "header:x user" },
			[]string{`listeners[0].balance.key: "header:x user": header name "x user" must be an HTTP token (letters, digits and !#$%&'*+-.^_` + "`|~)"}},
		{"key cookie name with a control character", func(c *Config) { l0(c).Protocol, l0(c).Balance.Key = "http", "cookie:a\x7f" },
			[]string{`listeners[0].balance.key: "cookie:a\x7f": cookie name "a\x7f" must be printable ASCII without spaces`}},
		{"key client-ip with a name on http", func(c *Config) { l0(c).Protocol, l0(c).Balance.Key = "http", "client-ip:x" },
			[]string{`listeners[0].balance.key: "client-ip:x": must be one of client-ip, client-ip-port, path, header:NAME, cookie:NAME, query:NAME, grpc-metadata:NAME`}},
		{"key empty on tcp", func(c *Config) { l0(c).Balance.Key = "" },
			[]string{`listeners[0].balance.key: "": must be one of client-ip, client-ip-port`}},
		{"key unknown on http", func(c *Config) { l0(c).Protocol, l0(c).Balance.Key = "http", "body" },
			[]string{`listeners[0].balance.key: "body": must be one of client-ip, client-ip-port, path, header:NAME, cookie:NAME, query:NAME, grpc-metadata:NAME`}},
		{"boundedLoad 0 is off", func(c *Config) { l0(c).Balance.BoundedLoad = 0 }, nil},
		{"loadFloor 0 is none", func(c *Config) { l0(c).Balance.LoadFloor = 0 }, nil},
		{"loadFloor negative", func(c *Config) { l0(c).Balance.LoadFloor = -1 },
			[]string{"listeners[0].balance.loadFloor: -1: must be from 0 (none) to 1048576"}},
		{"boundedLoad 1", func(c *Config) { l0(c).Balance.BoundedLoad = 1 }, nil},
		{"boundedLoad 10", func(c *Config) { l0(c).Balance.BoundedLoad = 10 }, nil},
		{"boundedLoad below 1", func(c *Config) { l0(c).Balance.BoundedLoad = 0.5 },
			[]string{`listeners[0].balance.boundedLoad: 0.5: must be 0 (off) or from 1 to 10`}},
		{"boundedLoad negative", func(c *Config) { l0(c).Balance.BoundedLoad = -1 },
			[]string{`listeners[0].balance.boundedLoad: -1: must be 0 (off) or from 1 to 10`}},
		{"boundedLoad above 10", func(c *Config) { l0(c).Balance.BoundedLoad = 10.5 },
			[]string{`listeners[0].balance.boundedLoad: 10.5: must be 0 (off) or from 1 to 10`}},
		{"boundedLoad NaN", func(c *Config) { l0(c).Balance.BoundedLoad = math.NaN() },
			[]string{`listeners[0].balance.boundedLoad: NaN: must be 0 (off) or from 1 to 10`}},
		{"tableSize not prime", func(c *Config) { l0(c).Balance.TableSize = 65536 },
			[]string{`listeners[0].balance.tableSize: 65536: must be a prime from 101 to 10000019, such as 65537`}},
		{"tableSize prime below 101", func(c *Config) { l0(c).Balance.TableSize = 97 },
			[]string{`listeners[0].balance.tableSize: 97: must be a prime from 101 to 10000019, such as 65537`}},
		{"tableSize 0", func(c *Config) { l0(c).Balance.TableSize = 0 },
			[]string{`listeners[0].balance.tableSize: 0: must be a prime from 101 to 10000019, such as 65537`}},
		{"tableSize prime above the maximum", func(c *Config) { l0(c).Balance.TableSize = 10000079 },
			[]string{`listeners[0].balance.tableSize: 10000079: must be a prime from 101 to 10000019, such as 65537`}},
		{"tableSize huge", func(c *Config) { l0(c).Balance.TableSize = math.MaxUint64 },
			[]string{`listeners[0].balance.tableSize: 18446744073709551615: must be a prime from 101 to 10000019, such as 65537`}},
		{"tableSize 101", func(c *Config) { l0(c).Balance.TableSize = 101 }, nil},
		{"tableSize maximum", func(c *Config) { l0(c).Balance.TableSize = 10000019 }, nil},

		// timeouts, limits, drain
		{"connect timeout 0", func(c *Config) { l0(c).Timeouts.Connect = 0 },
			[]string{`listeners[0].timeouts.connect: 0s: must be greater than 0`}},
		{"idle timeout negative", func(c *Config) { l0(c).Timeouts.Idle = -time.Second },
			[]string{`listeners[0].timeouts.idle: -1s: must be greater than 0`}},
		{"every timeout 0", func(c *Config) {
			l0(c).Timeouts = Timeouts{TCPKeepAlive: 0}
		}, []string{
			`listeners[0].timeouts.connect: 0s: must be greater than 0`,
			`listeners[0].timeouts.idle: 0s: must be greater than 0`,
			`listeners[0].timeouts.keepAliveIdle: 0s: must be greater than 0`,
			`listeners[0].timeouts.requestBody: 0s: must be greater than 0`,
			`listeners[0].timeouts.responseHeader: 0s: must be greater than 0`,
			`listeners[0].timeouts.webSocketIdle: 0s: must be greater than 0`,
			`listeners[0].timeouts.streamIdle: 0s: must be greater than 0`,
			`listeners[0].timeouts.halfClosed: 0s: must be greater than 0`,
			`listeners[0].timeouts.park: 0s: must be greater than 0`,
		}},
		{"halfClosed negative", func(c *Config) { l0(c).Timeouts.HalfClosed = -time.Second },
			[]string{`listeners[0].timeouts.halfClosed: -1s: must be greater than 0`}},
		{"tcpKeepAlive 0 turns probes off", func(c *Config) { l0(c).Timeouts.TCPKeepAlive = 0 }, nil},
		{"tcpKeepAlive below a second", func(c *Config) { l0(c).Timeouts.TCPKeepAlive = 500 * time.Millisecond },
			[]string{`listeners[0].timeouts.tcpKeepAlive: 500ms: must be 0 (no probes) or a whole number of seconds`}},
		{"tcpKeepAlive not whole seconds", func(c *Config) { l0(c).Timeouts.TCPKeepAlive = 1500 * time.Millisecond },
			[]string{`listeners[0].timeouts.tcpKeepAlive: 1.5s: must be 0 (no probes) or a whole number of seconds`}},
		{"tcpKeepAlive negative", func(c *Config) { l0(c).Timeouts.TCPKeepAlive = -time.Second },
			[]string{`listeners[0].timeouts.tcpKeepAlive: -1s: must be 0 (no probes) or a whole number of seconds`}},
		{"maxConnectionsPerClient negative", func(c *Config) { l0(c).MaxConnectionsPerClient = -1 },
			[]string{`listeners[0].maxConnectionsPerClient: -1: must not be negative (0 means no bound)`}},
		{"maxConnectionsPerClient 1", func(c *Config) { l0(c).MaxConnectionsPerClient = 1 }, nil},
		{"accessLog sampled, capped", func(c *Config) { l0(c).AccessLog = AccessLog{Enabled: true, Sample: 0.5, MaxPerSecond: 0} }, nil},
		{"accessLog sample and cap out of range", func(c *Config) { l0(c).AccessLog = AccessLog{Enabled: true, Sample: 1.5, MaxPerSecond: -1} },
			[]string{`listeners[0].accessLog.sample: 1.5: must be between 0 and 1`,
				`listeners[0].accessLog.maxPerSecond: -1: must not be negative (0 means no cap)`}},
		{"maxConnections 0", func(c *Config) { l0(c).MaxConnections = 0 },
			[]string{`listeners[0].maxConnections: 0: must be at least 1`}},
		{"maxConnections 1", func(c *Config) { l0(c).MaxConnections = 1 }, nil},
		{"drain timeout negative", func(c *Config) { l0(c).Drain.Timeout = -time.Second },
			[]string{`listeners[0].drain.timeout: -1s: must not be negative`}},
		{"drain timeout 0", func(c *Config) { l0(c).Drain.Timeout = 0 }, nil},
		{"http affinity", func(c *Config) { l0(c).Protocol = "http"; l0(c).HTTP.Affinity = "cookie" },
			[]string{`listeners[0].http.affinity: "cookie": must be one of , none, connection`}},
		{"http affinity connection", func(c *Config) { l0(c).Protocol = "http"; l0(c).HTTP.Affinity = "connection" }, nil},
		{"kubernetes coalesce", func(c *Config) {
			l0(c).Endpoints = Endpoints{Kubernetes: &Kubernetes{Namespace: "shop", Service: "cart", Port: "grpc", Coalesce: time.Minute}}
		}, []string{"listeners[0].endpoints.kubernetes.coalesce: 1m0s: must be from 0 (the default, 50ms) to 10s"}},
		{"kubernetes identity", func(c *Config) {
			l0(c).Endpoints = Endpoints{Kubernetes: &Kubernetes{Namespace: "shop", Service: "cart", Port: "grpc", Identity: "podname"}}
		}, []string{`listeners[0].endpoints.kubernetes.identity: "podname": must be address, pod-name, label:KEY or annotation:KEY (KEY a label or annotation key)`}},
		{"kubernetes identity bad label key", func(c *Config) {
			l0(c).Endpoints = Endpoints{Kubernetes: &Kubernetes{Namespace: "shop", Service: "cart", Port: "grpc", Identity: "label:bad key"}}
		}, []string{`listeners[0].endpoints.kubernetes.identity: "label:bad key": must be address, pod-name, label:KEY or annotation:KEY (KEY a label or annotation key)`}},
		{"kubernetes identity label", func(c *Config) {
			l0(c).Endpoints = Endpoints{Kubernetes: &Kubernetes{Namespace: "shop", Service: "cart", Port: "grpc", Identity: "label:example.com/shard"}}
		}, nil},
		{"kubernetes identity annotation", func(c *Config) {
			l0(c).Endpoints = Endpoints{Kubernetes: &Kubernetes{Namespace: "shop", Service: "cart", Port: "grpc", Identity: "annotation:hash-id"}}
		}, nil},
		{"kubernetes identity pod-name", func(c *Config) {
			l0(c).Endpoints = Endpoints{Kubernetes: &Kubernetes{Namespace: "shop", Service: "cart", Port: "grpc", Identity: "pod-name"}}
		}, nil},
		{"kubernetes identity address", func(c *Config) {
			l0(c).Endpoints = Endpoints{Kubernetes: &Kubernetes{Namespace: "shop", Service: "cart", Port: "grpc", Identity: "address"}}
		}, nil},
		{"drain window beyond timeout", func(c *Config) { l0(c).Drain.Window = time.Hour },
			[]string{"listeners[0].drain.window: 1h0m0s: must be between 0 and drain.timeout (25s)"}},
		{"drain tcp mode", func(c *Config) { l0(c).Drain.TCP = "later"; l0(c).Drain.Rate = -1 },
			[]string{"listeners[0].drain.rate: -1: must not be negative (0 means no cap)",
				"listeners[0].drain.tcp: \"later\": must be one of deadline, immediate"}},
		{"drain kill margin", func(c *Config) { l0(c).Drain.KillMargin = -time.Second },
			[]string{"listeners[0].drain.killMargin: -1s: must not be negative"}},
		{"drain kill margin 0", func(c *Config) { l0(c).Drain.KillMargin = 0 }, nil},
		{"rebalance factor", func(c *Config) { l0(c).Drain.Rebalance.Factor = 0.5 },
			[]string{"listeners[0].drain.rebalance.factor: 0.5: must be 0 (off) or greater than 1 and at most 100"}},
		{"rebalance with plain maglev", func(c *Config) {
			l0(c).Balance.BoundedLoad = 0
			l0(c).Drain.Rebalance.Factor = 2
		}, []string{"listeners[0].drain.rebalance.factor: 2: needs balance.policy least-connections or balance.boundedLoad: plain consistent hashing sends a moved session back to the same endpoint"}},
		{"rebalance with bounded maglev", func(c *Config) { l0(c).Drain.Rebalance.Factor = 2 }, nil},
		{"rebalance budget and target", func(c *Config) {
			r := &l0(c).Drain.Rebalance
			r.Target, r.PerMinute, r.Cooldown = 0.9, 11, -time.Second
		}, []string{"listeners[0].drain.rebalance.target: 0.9: must be 0 (the default, 1.1) or from 1 to 100",
			"listeners[0].drain.rebalance.perMinute: 11: must be from 0 (the default, 1) to 10",
			"listeners[0].drain.rebalance.cooldown: -1s: must not be negative (0 means the default, 10m)"}},

		// http
		{"http block on tcp", func(c *Config) { l0(c).HTTP.Upstream = "h2c" },
			[]string{`listeners[0].http: is only for protocol http or grpc`}},
		{"proxy protocol on http", func(c *Config) { l0(c).Protocol, l0(c).ProxyProtocol.Accept = "http", true },
			[]string{`listeners[0].proxyProtocol: "accept: true, send: false": is only for protocol tcp (http and grpc listeners pass the client address in X-Forwarded-For and Forwarded)`}},
		{"proxy protocol on tcp", func(c *Config) { l0(c).ProxyProtocol.Accept, l0(c).ProxyProtocol.Send = true, true }, nil},
		{"http upstream", func(c *Config) { l0(c).Protocol, l0(c).HTTP.Upstream = "http", "h3" },
			[]string{`listeners[0].http.upstream: "h3": must be one of , http1, h2c`}},
		{"grpc over http1", func(c *Config) { l0(c).Protocol, l0(c).HTTP.Upstream = "grpc", "http1" },
			[]string{`listeners[0].http.upstream: "http1": grpc needs h2c`}},
		{"websocket limits", func(c *Config) {
			l0(c).Protocol = "http"
			l0(c).HTTP.WebSocket = WebSocket{MaxFrame: -1, CloseCode: 1000}
		}, []string{
			`listeners[0].http.webSocket.maxFrame: -1: must not be negative`,
			`listeners[0].http.webSocket.closeCode: 1000: must be 1012 (service restart) or 1001 (going away)`,
		}},
		{"tls cert without key", func(c *Config) { l0(c).Protocol, l0(c).HTTP.TLS.CertFile = "http", "tls.crt" },
			[]string{`listeners[0].http.tls.keyFile: is required with certFile`}},
		{"tls key without cert", func(c *Config) { l0(c).Protocol, l0(c).HTTP.TLS.KeyFile = "http", "tls.key" },
			[]string{`listeners[0].http.tls.certFile: is required with keyFile`}},
		{"tls certificates", func(c *Config) {
			l0(c).Protocol = "http"
			l0(c).HTTP.TLS.Certificates = []Certificate{
				{Hostnames: []string{"a.example.com", "*.b.example.com"}, CertPEM: string(testPair.CertPEM), KeyPEM: string(testPair.KeyPEM)},
				{CertFile: "c.crt", KeyFile: "c.key"},
				{},
				{CertFile: "c.crt", CertPEM: "x"},
				{KeyPEM: "k"},
				{CertPEM: "Hello world", KeyPEM: "Hello world", Hostnames: []string{"UPPER.example.com", "10.0.0.1"}},
			}
		}, []string{
			`listeners[0].http.tls.certificates[2]: needs certFile and keyFile, or certPEM and keyPEM`,
			`listeners[0].http.tls.certificates[3]: takes certFile and keyFile or certPEM and keyPEM, not both`,
			`listeners[0].http.tls.certificates[4].certPEM: is required with keyPEM`,
			`listeners[0].http.tls.certificates[5].hostnames: hostname "UPPER.example.com": not a lower-case RFC 1123 name, optionally prefixed by a "*." label
hostname "10.0.0.1": IP addresses are not allowed`,
			`listeners[0].http.tls.certificates[5].certPEM: parse certificate and key: tls: failed to find any PEM data in certificate input`,
		}},
		{"http block complete", func(c *Config) {
			l0(c).Protocol = "http"
			l0(c).HTTP = HTTP{Upstream: "http1", WebSocket: WebSocket{MaxFrame: 1 << 20, CloseCode: 1001}, TLS: TLS{CertFile: "c", KeyFile: "k"}}
		}, nil},

		// several at once, across listeners, in path order
		{"several problems in order", func(c *Config) {
			c.Log.Level = "trace"
			l0(c).Timeouts.Connect = 0
			l := second(c)
			l.Balance.Policy = "random"
			l.MaxConnections = -5
			for range 9 {
				n := second(c)
				n.Name, n.Address = "", ""
			}
			c.Listeners[10].Address = "127.0.0.1:7010"
		}, []string{
			`log.level: "trace": must be one of debug, info, warn, error`,
			`listeners[0].timeouts.connect: 0s: must be greater than 0`,
			`listeners[1].balance.policy: "random": must be one of maglev, least-connections`,
			`listeners[1].timeouts.connect: 0s: must be greater than 0`,
			`listeners[1].maxConnections: -5: must be at least 1`,
			`listeners[2].name: is required`, `listeners[2].address: is required`, `listeners[2].timeouts.connect: 0s: must be greater than 0`,
			`listeners[3].name: is required`, `listeners[3].address: is required`, `listeners[3].timeouts.connect: 0s: must be greater than 0`,
			`listeners[4].name: is required`, `listeners[4].address: is required`, `listeners[4].timeouts.connect: 0s: must be greater than 0`,
			`listeners[5].name: is required`, `listeners[5].address: is required`, `listeners[5].timeouts.connect: 0s: must be greater than 0`,
			`listeners[6].name: is required`, `listeners[6].address: is required`, `listeners[6].timeouts.connect: 0s: must be greater than 0`,
			`listeners[7].name: is required`, `listeners[7].address: is required`, `listeners[7].timeouts.connect: 0s: must be greater than 0`,
			`listeners[8].name: is required`, `listeners[8].address: is required`, `listeners[8].timeouts.connect: 0s: must be greater than 0`,
			`listeners[9].name: is required`, `listeners[9].address: is required`, `listeners[9].timeouts.connect: 0s: must be greater than 0`,
			`listeners[10].name: is required`, `listeners[10].timeouts.connect: 0s: must be greater than 0`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := exampleConfig()
			tt.mutate(c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			if got := problemStrings(t, err); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

const notLoopback = `is not a loopback address: /debug/sessions lists every client and pprof shows memory; ` +
	`listen on 127.0.0.1 or [::1] (kubectl port-forward reaches it), or set admin.debugTokenFile to require a bearer token`

func TestValidateNil(t *testing.T) {
	var c *Config
	if err := c.Validate(); err == nil {
		t.Fatalf("got no error, want one")
	}
}

// TestBalanceTyped: a validated listener's policy and key come out typed,
// as the balancer and proxy take them.
func TestBalanceTyped(t *testing.T) {
	cfg, err := Parse([]byte(`
listeners:
  - {name: a, address: ":7001", endpoints: {static: ["10.0.0.1:80"]}}
  - name: b
    address: ":7002"
    protocol: grpc
    endpoints: {static: ["10.0.0.1:80"]}
    balance: {policy: least-connections, key: "grpc-metadata:X-Tenant", tableSize: 101, loadFloor: 0}
  - name: c
    address: ":7003"
    endpoints: {static: ["10.0.0.1:80"]}
    balance: {key: client-ip-port, boundedLoad: 2}
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		policy balancer.Policy
		key    balancer.KeySpec
	}{
		{balancer.Policy{Kind: balancer.Maglev, TableSize: DefaultTableSize, BoundedLoad: DefaultBoundedLoad, LoadFloor: DefaultLoadFloor}, balancer.KeySpec{Source: balancer.ClientIP}},
		{balancer.Policy{Kind: balancer.LeastConnections, TableSize: 101, LoadFloor: balancer.NoLoadFloor}, balancer.KeySpec{Source: balancer.Header, Name: "x-tenant"}},
		{balancer.Policy{Kind: balancer.Maglev, TableSize: DefaultTableSize, BoundedLoad: 2, LoadFloor: DefaultLoadFloor}, balancer.KeySpec{Source: balancer.ClientIPPort}},
	}
	for i, tt := range tests {
		b := cfg.Listeners[i].Balance
		if got := b.BalancerPolicy(); got != tt.policy {
			t.Errorf("listener %s: BalancerPolicy %+v, want %+v", cfg.Listeners[i].Name, got, tt.policy)
		}
		if got := b.KeySpec(); got != tt.key {
			t.Errorf("listener %s: KeySpec %+v, want %+v", cfg.Listeners[i].Name, got, tt.key)
		}
	}
}

// TestBalanceTypedUnvalidated: the accessors panic, naming the value, on
// what Validate refuses, rather than hand a default on.
func TestBalanceTypedUnvalidated(t *testing.T) {
	for value, f := range map[string]func(){
		`"magelv"`:  func() { Balance{Policy: "magelv", Key: "client-ip"}.BalancerPolicy() },
		`"header:"`: func() { Balance{Policy: "maglev", Key: "header:"}.KeySpec() },
	} {
		func() {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, "did not pass Validate") || !strings.Contains(s, value) {
					t.Errorf("%s: recovered %v, want a panic naming it and saying the Balance did not pass Validate", value, r)
				}
			}()
			f()
		}()
	}
}
