package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// exampleConfig is testdata/example.yaml as a struct.
func exampleConfig() *Config {
	return &Config{
		Admin: defaultAdmin("127.0.0.1:9901"),
		Log:   Log{Level: "info", Format: "json"},
		Listeners: []Listener{{
			Name:           "echo",
			Address:        "127.0.0.1:7000",
			Protocol:       "tcp",
			Endpoints:      Endpoints{Static: []string{"127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"}},
			Balance:        Balance{Policy: "maglev", Key: "client-ip", BoundedLoad: 1.25, TableSize: 65537, LoadFloor: 16},
			Timeouts:       DefaultTimeouts(),
			MaxConnections: 100000,
			ProxyProtocol:  ProxyProtocol{Accept: false, Send: false},
			Drain:          defaultDrain(25 * time.Second),
			AccessLog:      AccessLog{Sample: 1, MaxPerSecond: 1000},
		}},
	}
}

func readExample(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// problemStrings returns the problems of err, which must hold a
// *ValidationError, as their Error strings.
func problemStrings(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got error %v (%T), want a *ValidationError", err, err)
	}
	out := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		out[i] = p.Error()
	}
	return out
}

func TestParseExample(t *testing.T) {
	got, err := Parse(readExample(t))
	if err != nil {
		t.Fatalf("Parse(example.yaml): %v", err)
	}
	if want := exampleConfig(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestLoadExample(t *testing.T) {
	got, err := Load("testdata/example.yaml", nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := exampleConfig(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseValid(t *testing.T) {
	defaults := defaultListener()
	tests := []struct {
		name string
		yaml string
		want *Config
	}{
		{
			name: "minimal listener gets every default",
			yaml: `
listeners:
  - {name: a, address: ":7000", endpoints: {file: eps.yaml}}
`,
			want: &Config{
				Admin: defaultAdmin("127.0.0.1:9901"),
				Log:   Log{Level: "info", Format: "json"},
				Listeners: []Listener{{
					Name: "a", Address: ":7000", Protocol: "tcp",
					Endpoints: Endpoints{File: "eps.yaml"},
					Balance:   Balance{Policy: "maglev", Key: "client-ip", BoundedLoad: 1.25, TableSize: 65537, LoadFloor: 16},
					// Every timeout's production default, written out.
					Timeouts: Timeouts{Connect: 2 * time.Second, Idle: time.Hour,
						KeepAliveIdle: 75 * time.Second, RequestBody: 60 * time.Second,
						ResponseHeader: 60 * time.Second, WebSocketIdle: time.Hour, StreamIdle: time.Hour,
						HalfClosed: 60 * time.Second, TCPKeepAlive: 60 * time.Second, Park: 100 * time.Millisecond},
					MaxConnections:          100000,
					MaxConnectionsPerClient: 0,
					Drain:                   defaultDrain(25 * time.Second),
					AccessLog:               AccessLog{Sample: 1, MaxPerSecond: 1000},
				}},
			},
		},
		{
			name: "every key set, kubernetes port by number, http block",
			yaml: `
admin:
  address: "[::1]:9000"
  debugAddress: "[::1]:9001"
  debugTokenFile: /run/secrets/debug-token
  pprof: true
  maxConnections: 8
  timeouts: {readHeader: 1s, read: 2s, write: 3s, idle: 4s}
log: {level: debug, format: console}
listeners:
  - name: web
    address: 0.0.0.0:8443
    protocol: http
    endpoints: {kubernetes: {namespace: shop, service: cart, port: 8080, identity: pod-name}}
    balance: {policy: least-connections, key: "header:X-User", boundedLoad: 2, tableSize: 101, loadFloor: 4}
    timeouts: {connect: 500ms, idle: 1m30s, keepAliveIdle: 10s, requestBody: 11s, responseHeader: 12s, webSocketIdle: 13m, streamIdle: 16m, halfClosed: 14s, tcpKeepAlive: 15s, park: 250ms}
    maxConnections: 10
    maxConnectionsPerClient: 3
    drain: {timeout: 0s}
    accessLog: {enabled: true, sample: 0.25, maxPerSecond: 50}
    http:
      upstream: h2c
      webSocket: {maxFrame: 1048576, closeCode: 1001}
      tls: {certFile: tls.crt, keyFile: tls.key}
`,
			want: &Config{
				Admin: Admin{Address: "[::1]:9000", DebugAddress: "[::1]:9001", DebugTokenFile: "/run/secrets/debug-token",
					Pprof: true, MaxConnections: 8,
					Timeouts: AdminTimeouts{ReadHeader: time.Second, Read: 2 * time.Second, Write: 3 * time.Second, Idle: 4 * time.Second}},
				Log: Log{Level: "debug", Format: "console"},
				Listeners: []Listener{{
					Name: "web", Address: "0.0.0.0:8443", Protocol: "http",
					Endpoints: Endpoints{Kubernetes: &Kubernetes{Namespace: "shop", Service: "cart", Port: "8080", Identity: "pod-name"}},
					Balance:   Balance{Policy: "least-connections", Key: "header:X-User", BoundedLoad: 2, TableSize: 101, LoadFloor: 4},
					Timeouts: Timeouts{Connect: 500 * time.Millisecond, Idle: 90 * time.Second,
						KeepAliveIdle: 10 * time.Second, RequestBody: 11 * time.Second,
						ResponseHeader: 12 * time.Second, WebSocketIdle: 13 * time.Minute, StreamIdle: 16 * time.Minute,
						HalfClosed: 14 * time.Second, TCPKeepAlive: 15 * time.Second, Park: 250 * time.Millisecond},
					MaxConnections:          10,
					MaxConnectionsPerClient: 3,
					Drain: func() Drain {
						d := defaultDrain(0)
						d.Rebalance.Factor = DefaultRebalanceFactor // least-connections
						return d
					}(),
					AccessLog: AccessLog{Enabled: true, Sample: 0.25, MaxPerSecond: 50},
					HTTP: HTTP{
						Upstream:  "h2c",
						WebSocket: WebSocket{MaxFrame: 1 << 20, CloseCode: 1001},
						TLS:       TLS{CertFile: "tls.crt", KeyFile: "tls.key"},
					},
				}},
			},
		},
		{
			name: "least-connections turns bounded loads off and rebalancing on by default",
			yaml: `
listeners:
  - {name: a, address: ":7000", endpoints: {static: ["10.0.0.1:80"]}, balance: {policy: least-connections}}
`,
			want: &Config{
				Admin: defaultAdmin("127.0.0.1:9901"),
				Log:   Log{Level: "info", Format: "json"},
				Listeners: []Listener{func() Listener {
					l := defaults
					l.Name, l.Address = "a", ":7000"
					l.Endpoints = Endpoints{Static: []string{"10.0.0.1:80"}}
					l.Balance.Policy, l.Balance.BoundedLoad = "least-connections", 0
					l.Drain.Rebalance.Factor = DefaultRebalanceFactor
					return l
				}()},
			},
		},
		{
			name: "maglev with boundedLoad 0 keeps it off; keys in any case",
			yaml: `
LOG: {Level: warn}
listeners:
  - NAME: a
    Address: ":7000"
    endpoints: {STATIC: ["10.0.0.1:80"]}
    Balance: {BOUNDEDLOAD: 0, tablesize: 1009}
    MAXCONNECTIONS: 7
    ProxyProtocol: {Accept: TRUE}
`,
			want: &Config{
				Admin: defaultAdmin("127.0.0.1:9901"),
				Log:   Log{Level: "warn", Format: "json"},
				Listeners: []Listener{func() Listener {
					l := defaults
					l.Name, l.Address = "a", ":7000"
					l.Endpoints = Endpoints{Static: []string{"10.0.0.1:80"}}
					l.Balance.BoundedLoad, l.Balance.TableSize = 0, 1009
					l.MaxConnections = 7
					l.ProxyProtocol.Accept = true
					return l
				}()},
			},
		},
		{
			name: "numbers written as floats or strings, null values keep defaults",
			yaml: `
log: {level: , format: console}
listeners:
  - name: a
    address: ":7000"
    endpoints: {static: ["10.0.0.1:80"]}
    maxConnections: 1e3
    balance: {tableSize: "65537", boundedLoad: "1.5"}
    timeouts: {connect: , idle: 0h5m}
`,
			want: &Config{
				Admin: defaultAdmin("127.0.0.1:9901"),
				Log:   Log{Level: "info", Format: "console"},
				Listeners: []Listener{func() Listener {
					l := defaults
					l.Name, l.Address = "a", ":7000"
					l.Endpoints = Endpoints{Static: []string{"10.0.0.1:80"}}
					l.MaxConnections = 1000
					l.Balance.BoundedLoad = 1.5
					l.Timeouts.Idle = 5 * time.Minute
					return l
				}()},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestParseDecodeProblems covers unknown keys and values of the wrong type:
// each is reported with its full path, all of them at once, and no
// follow-on problem is reported for the field that could not be decoded.
func TestParseDecodeProblems(t *testing.T) {
	const listener = `
  - name: a
    address: ":7000"
    endpoints: {static: ["10.0.0.1:80"]}
`
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown top-level key", "admn: {address: x}\nlisteners:" + listener,
			[]string{"admn: unknown key"}},
		{"unknown key with odd characters", "log: {\"le vel\": debug, \"\": 1}\nlisteners:" + listener,
			[]string{`log."": unknown key`, `log."le vel": unknown key`}},
		{"unknown key in listener", "listeners:" + listener + "    balence: {policy: maglev}\n",
			[]string{"listeners[0].balence: unknown key"}},
		{"unknown key two levels down", "listeners:" + listener + "    timeouts: {conect: 2s}\n",
			[]string{"listeners[0].timeouts.conect: unknown key"}},
		{"unknown key three levels down", `
listeners:
  - name: a
    address: ":7000"
    endpoints: {kubernetes: {namespace: shop, service: cart, port: grpc, portName: x}}
`, []string{"listeners[0].endpoints.kubernetes.portname: unknown key"}},
		{"unknown key in second listener", "listeners:" + listener + `
  - name: b
    address: ":7001"
    endpoints: {static: ["10.0.0.1:80"]}
    drain: {timeout: 1s, mode: close}
`, []string{"listeners[1].drain.mode: unknown key"}},
		{"integer given a word", "listeners:" + listener + "    maxConnections: lots\n",
			[]string{`listeners[0].maxConnections: "lots": must be an integer`}},
		{"integer given a fraction", "listeners:" + listener + "    maxConnections: 1.5\n",
			[]string{`listeners[0].maxConnections: 1.5: must be an integer`}},
		{"duration without unit", "listeners:" + listener + "    timeouts: {connect: 2}\n",
			[]string{`listeners[0].timeouts.connect: 2: must be a duration with a unit, such as 2s`}},
		{"duration given a word", "listeners:" + listener + "    drain: {timeout: soon}\n",
			[]string{`listeners[0].drain.timeout: "soon": must be a duration such as 2s, 500ms or 1h`}},
		{"bool given a word", "listeners:" + listener + "    proxyProtocol: {accept: maybe}\n",
			[]string{`listeners[0].proxyProtocol.accept: "maybe": must be true or false`}},
		{"float given a word", "listeners:" + listener + "    balance: {boundedLoad: high}\n",
			[]string{`listeners[0].balance.boundedLoad: "high": must be a number`}},
		{"negative table size", "listeners:" + listener + "    balance: {tableSize: -7}\n",
			[]string{`listeners[0].balance.tableSize: -7: must be a non-negative integer`}},
		{"string given a list", "log: {level: [debug]}\nlisteners:" + listener,
			[]string{`log.level: [debug]: must be a string`}},
		{"string given a date", "listeners:" + listener + "    protocol: 2024-01-01\n",
			[]string{`listeners[0].protocol: 2024-01-01 00:00:00 +0000 UTC: must be a string (YAML read a date: quote it)`}},
		{"mapping given a scalar", "listeners:" + listener + "    balance: maglev\n",
			[]string{`listeners[0].balance: "maglev": must be a mapping`}},
		{"top-level mapping given a scalar", "admin: 5\nlisteners:" + listener,
			[]string{`admin: 5: must be a mapping`}},
		{"listeners given a mapping", "listeners: {name: a}\n",
			[]string{`listeners: map[name:a]: must be a list`}},
		{"empty listener", "listeners:\n  -\n",
			[]string{`listeners[0]: must be a mapping`}},
		{"kubernetes given a string", `
listeners:
  - {name: a, address: ":7000", endpoints: {kubernetes: shop/cart}}
`, []string{`listeners[0].endpoints.kubernetes: "shop/cart": must be a mapping`}},
		{"static entry given a mapping", `
listeners:
  - {name: a, address: ":7000", endpoints: {static: ["10.0.0.1:80", {ip: 10.0.0.2}]}}
`, []string{`listeners[0].endpoints.static[1]: map[ip:10.0.0.2]: must be a string`}},
		{"several problems at once", `
admin: {address: "127.0.0.1:99999"}
log: {level: verbose, format: json, colour: true}
listeners:
  - name: echo
    address: 127.0.0.1:7000
    endpoints: {static: ["127.0.0.1:7101"], file: eps.yaml}
    balance: {policy: magelv, tableSize: 65536}
    timeouts: {connect: 2s, idle: forever}
    maxConnections: lots
  - name: echo
    address: 127.0.0.1:7000
    protocol: udp
    endpoints: {static: ["127.0.0.1:7101"]}
    balence: {}
`, []string{
			`admin.address: "127.0.0.1:99999": port must be a number from 1 to 65535`,
			`log.level: "verbose": must be one of debug, info, warn, error`,
			`log.colour: unknown key`,
			`listeners[0].endpoints: sets static and file: must set exactly one of static, file, kubernetes`,
			`listeners[0].balance.policy: "magelv": must be one of maglev, least-connections`,
			`listeners[0].balance.tableSize: 65536: must be a prime from 101 to 10000019, such as 65537`,
			`listeners[0].timeouts.idle: "forever": must be a duration such as 2s, 500ms or 1h`,
			`listeners[0].maxConnections: "lots": must be an integer`,
			`listeners[1].name: "echo": duplicate of listeners[0].name`,
			`listeners[1].address: "127.0.0.1:7000": conflicts with listeners[0].address "127.0.0.1:7000"`,
			`listeners[1].protocol: "udp": must be one of tcp, http, grpc`,
			`listeners[1].balence: unknown key`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("got config %+v, want an error", cfg)
			}
			if got := problemStrings(t, err); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"YAML syntax", "listeners: [", "config: parse YAML: "},
		{"not a mapping", "- a\n- b\n", "config: parse YAML: "},
		{"empty", "", "config: listeners: at least one listener is required (or gateway.class)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error starting %q", err, tt.want)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		p    Problem
		want string
	}{
		{"string value", Problem{"listeners[0].balance.policy", "magelv", "must be one of maglev, least-connections"},
			`listeners[0].balance.policy: "magelv": must be one of maglev, least-connections`},
		{"number value", Problem{"listeners[0].maxConnections", 0, "must be at least 1"},
			`listeners[0].maxConnections: 0: must be at least 1`},
		{"duration value", Problem{"listeners[0].drain.timeout", -time.Second, "must not be negative"},
			`listeners[0].drain.timeout: -1s: must not be negative`},
		{"no value", Problem{"listeners[0].balence", nil, "unknown key"}, `listeners[0].balence: unknown key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Error(); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	ve := &ValidationError{Problems: []Problem{tests[0].p, tests[3].p}}
	if got, want := ve.Error(), tests[0].want+"\n"+tests[3].want; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	_, err := Parse([]byte("log: {level: x, format: y}\nlisteners: []"))
	if got, want := err.Error(), "config: 3 problems:\n"+
		`log.level: "x": must be one of debug, info, warn, error`+"\n"+
		`log.format: "y": must be one of json, console`+"\n"+
		"listeners: at least one listener is required (or gateway.class)"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", "listeners: []\n")
	if _, err := Load("", nil); err == nil {
		t.Fatalf("Load(\"\"): got no error, want one")
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want an error wrapping fs.ErrNotExist", err)
	}
	_, err := Load(bad, nil)
	if got, want := problemStrings(t, err), []string{"listeners: at least one listener is required (or gateway.class)"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if !strings.Contains(err.Error(), bad) {
		t.Fatalf("got %q, want the file's path in it", err)
	}
}

// TestOverrides checks the precedence flag > environment > file > default.
func TestOverrides(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "c.yaml", `
admin: {address: "127.0.0.1:9000"}
log: {level: error}
listeners:
  - {name: a, address: ":7000", endpoints: {file: eps.yaml}}
`)
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		noFS  bool // Load with a nil FlagSet
		want  Log
		admin string
		debug string
	}{
		{name: "file and defaults", want: Log{"error", "json"}, admin: "127.0.0.1:9000"},
		{name: "file and defaults, nil flags", noFS: true, want: Log{"error", "json"}, admin: "127.0.0.1:9000"},
		{name: "environment beats file", env: map[string]string{"LONGHAUL_LOG_LEVEL": "debug", "LONGHAUL_LOG_FORMAT": "console", "LONGHAUL_ADMIN_ADDRESS": ":9999"},
			want: Log{"debug", "console"}, admin: ":9999"},
		{name: "environment with nil flags", noFS: true, env: map[string]string{"LONGHAUL_LOG_LEVEL": "debug"},
			want: Log{"debug", "json"}, admin: "127.0.0.1:9000"},
		{name: "flag beats file", args: []string{"--log-level=warn", "--admin-address", "0.0.0.0:9901"},
			want: Log{"warn", "json"}, admin: "0.0.0.0:9901"},
		{name: "debug address from the environment", env: map[string]string{"LONGHAUL_ADMIN_DEBUGADDRESS": "127.0.0.1:9902"},
			want: Log{"error", "json"}, admin: "127.0.0.1:9000", debug: "127.0.0.1:9902"},
		{name: "debug address flag beats environment", env: map[string]string{"LONGHAUL_ADMIN_DEBUGADDRESS": "127.0.0.1:9902"},
			args: []string{"--admin-debug-address=[::1]:9903"}, want: Log{"error", "json"}, admin: "127.0.0.1:9000", debug: "[::1]:9903"},
		{name: "flag beats environment", env: map[string]string{"LONGHAUL_LOG_LEVEL": "debug", "LONGHAUL_LOG_FORMAT": "console"},
			args: []string{"--log-level=warn"}, want: Log{"warn", "console"}, admin: "127.0.0.1:9000"},
		{name: "flag equal to its default still beats file", args: []string{"--log-level=info"},
			want: Log{"info", "json"}, admin: "127.0.0.1:9000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var flags *pflag.FlagSet
			if !tt.noFS {
				flags = pflag.NewFlagSet("test", pflag.ContinueOnError)
				BindFlags(flags)
				if err := flags.Parse(tt.args); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Load(file, flags)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.Log != tt.want {
				t.Errorf("log: got %v, want %v", c.Log, tt.want)
			}
			if c.Admin.Address != tt.admin {
				t.Errorf("admin.address: got %v, want %v", c.Admin.Address, tt.admin)
			}
			if c.Admin.DebugAddress != tt.debug {
				t.Errorf("admin.debugAddress: got %v, want %v", c.Admin.DebugAddress, tt.debug)
			}
		})
	}
}

func TestOverrideValidated(t *testing.T) {
	t.Setenv("LONGHAUL_LOG_LEVEL", "verbose")
	flags := pflag.NewFlagSet("test", pflag.ContinueOnError)
	BindFlags(flags)
	if err := flags.Parse([]string{"--admin-address=nowhere"}); err != nil {
		t.Fatal(err)
	}
	_, err := Load("testdata/example.yaml", flags)
	want := []string{`admin.address: "nowhere": must be host:port`, `log.level: "verbose": must be one of debug, info, warn, error`}
	if got := problemStrings(t, err); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestParseIgnoresEnvironment(t *testing.T) {
	t.Setenv("LONGHAUL_LOG_LEVEL", "debug")
	c, err := Parse(readExample(t))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Log.Level, "info"; got != want {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestBindFlags(t *testing.T) {
	flags := pflag.NewFlagSet("test", pflag.ContinueOnError)
	BindFlags(flags)
	for name, want := range map[string]string{"admin-address": "127.0.0.1:9901", "admin-debug-address": "", "log-level": "info", "log-format": "json"} {
		f := flags.Lookup(name)
		if f == nil {
			t.Fatalf("--%s: not registered", name)
		}
		if f.DefValue != want {
			t.Errorf("--%s default: got %v, want %v", name, f.DefValue, want)
		}
	}
	BindFlags(flags) // a second call must not panic on redefinition
}

func TestDefault(t *testing.T) {
	want := &Config{Admin: defaultAdmin("127.0.0.1:9901"), Log: Log{Level: "info", Format: "json"}}
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// Defaults are valid but for the listeners, which have none.
	err := Default().Validate()
	if got, want := problemStrings(t, err), []string{"listeners: at least one listener is required (or gateway.class)"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestComparePaths(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"listeners[2].name", "listeners[10].name", -1},
		{"listeners[10].name", "listeners[2].name", 1},
		{"listeners[0].name", "listeners[0].address", -1},
		{"listeners[0].balance.tableSize", "listeners[0].timeouts.connect", -1},
		{"listeners[0].endpoints.static[2]", "listeners[0].endpoints.kubernetes.port", -1},
		{"admin.address", "log.level", -1},
		{"log.level", "listeners", -1},
		{"listeners", "listeners[0]", -1},
		{"log.format", "log.colour", -1},
		{"log.colour", "log.format", 1},
		{"listeners[0].drain.timeout", "listeners[0].balence", -1},
		{"listeners[0].balence", "listeners[0].bxx", -1},
		{"listeners", "zzz", -1},
		{"listeners[1].maxConnections", "listeners[1].maxconnections", 0},
		{"a.static[9]", "a.static[09]", 0},
	}
	for _, tt := range tests {
		if got := compareKeys(pathKey(tt.a), pathKey(tt.b)); got != tt.want {
			t.Errorf("compare %q, %q: got %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// defaultAdmin is the admin block a file gets when it sets only the
// address.
func defaultAdmin(address string) Admin {
	return Admin{Address: address, MaxConnections: 64,
		Timeouts: AdminTimeouts{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 10 * time.Second, Idle: time.Minute}}
}

// defaultDrain is the drain block a listener gets when the file sets only
// its timeout.
func defaultDrain(timeout time.Duration) Drain {
	return Drain{Timeout: timeout, TCP: "deadline", KillMargin: 2 * time.Second,
		Rebalance: Rebalance{Target: 1.1, Sustain: 10 * time.Second, PerMinute: 1, MaxPerRound: 10, Cooldown: 10 * time.Minute}}
}

// TestParseTCPOnlyKeys: the keys an HTTP listener refuses decode on a TCP
// listener, and admin.pprof decodes.
func TestParseTCPOnlyKeys(t *testing.T) {
	c, err := Parse([]byte(`
admin: {address: "127.0.0.1:9000", debugAddress: "127.0.0.1:9002", pprof: true}
listeners:
  - {name: db, address: ":5432", endpoints: {static: ["10.0.0.1:5432"]}, proxyProtocol: {accept: true, send: true}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Listeners[0].ProxyProtocol; got != (ProxyProtocol{Accept: true, Send: true}) {
		t.Errorf("proxyProtocol = %+v", got)
	}
	if !c.Admin.Pprof {
		t.Error("admin.pprof not decoded")
	}
}

// TestRebalanceDefaultsByPolicy: rebalancing is on by default with
// least-connections only, and a file's factor 0 turns it off.
func TestRebalanceDefaultsByPolicy(t *testing.T) {
	for _, tc := range []struct {
		balance, drain string
		want           float64
	}{
		{"{policy: least-connections}", "{}", DefaultRebalanceFactor},
		{"{policy: least-connections}", "{rebalance: {factor: 0}}", 0},
		{"{policy: least-connections}", "{rebalance: {factor: 1.5, tcp: true}}", 1.5},
		{"{policy: maglev}", "{}", 0},
		{"{policy: maglev, boundedLoad: 1.25}", "{rebalance: {factor: 1.3}}", 1.3},
	} {
		c, err := Parse([]byte("listeners:\n  - {name: a, address: \":7000\", endpoints: {static: [\"10.0.0.1:80\"]}, balance: " +
			tc.balance + ", drain: " + tc.drain + "}\n"))
		if err != nil {
			t.Fatalf("balance %s, drain %s: %v", tc.balance, tc.drain, err)
		}
		if got := c.Listeners[0].Drain.Rebalance.Factor; got != tc.want {
			t.Errorf("balance %s, drain %s: factor %v, want %v", tc.balance, tc.drain, got, tc.want)
		}
	}
}
