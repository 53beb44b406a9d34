package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/proxy/certs"
	"github.com/longhaul-proxy/longhaul/proxy/route"
)

// MaxBoundedLoad bounds balance.boundedLoad. The range of balance.tableSize
// is the balancer's (balancer.ValidTableSize).
const MaxBoundedLoad = 10

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path names the field, as in "listeners[0].balance.policy".
	Path string
	// Value is the bad value, or nil when there is none to show (an unknown
	// key, a missing value).
	Value any
	// Message says what is wrong or what is expected.
	Message string
}

// Error formats the problem as `path: value: message`, as in
// `listeners[0].balance.policy: "magelv": must be one of maglev, least-connections`.
func (p Problem) Error() string {
	if p.Value == nil {
		return p.Path + ": " + p.Message
	}
	return p.Path + ": " + formatValue(p.Value) + ": " + p.Message
}

func formatValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case time.Duration:
		return x.String()
	}
	return fmt.Sprintf("%v", v)
}

// ValidationError holds every problem found in a configuration.
type ValidationError struct {
	Problems []Problem
}

// Error lists the problems, one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Validate checks every field of c and returns a *ValidationError listing all
// the problems found, or nil. It does not apply defaults: Load and Parse do,
// before they validate.
func (c *Config) Validate() error {
	if c == nil {
		return &ValidationError{Problems: []Problem{{Path: "config", Message: "missing"}}}
	}
	var v validator
	v.admin(&c.Admin)
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "console")
	if len(c.Listeners) == 0 && c.Gateway.Class == "" {
		v.add("listeners", nil, "at least one listener is required (or gateway.class)")
	}
	if g := c.Gateway; g.Class != "" {
		if g.Class != AnyGatewayClass && !isDNSSubdomain(g.Class) {
			v.add("gateway.class", g.Class, `must be a GatewayClass name (a DNS subdomain), or "*"`)
		}
		if g.Address != "" {
			ip, err := netip.ParseAddr(g.Address)
			if err != nil {
				var pfx netip.Prefix
				if pfx, err = netip.ParsePrefix(g.Address); err == nil && pfx.Bits() == pfx.Addr().BitLen() {
					err = fmt.Errorf("a single address")
				}
			} else if ip.Zone() != "" {
				err = fmt.Errorf("zoned")
			}
			if err != nil {
				v.add("gateway.address", g.Address, "must be an IP address or a prefix of more than one")
			}
		}
		for i, a := range g.StatusAddresses {
			if a == "" {
				v.add(fmt.Sprintf("gateway.statusAddresses[%d]", i), a, "must not be empty")
			}
		}
	}
	names := map[string]string{}
	type bound struct{ path, addr string }
	addrs := []bound{{"admin.address", c.Admin.Address}}
	if c.Admin.DebugAddress != "" {
		addrs = append(addrs, bound{"admin.debugAddress", c.Admin.DebugAddress})
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		p := fmt.Sprintf("listeners[%d]", i)
		v.listener(p, l)
		if l.Name != "" {
			if first, dup := names[l.Name]; dup {
				v.add(p+".name", l.Name, "duplicate of "+first)
			} else {
				names[l.Name] = p + ".name"
			}
		}
		for _, b := range addrs {
			if addrConflict(l.Address, b.addr) {
				v.add(p+".address", l.Address, "conflicts with "+b.path+" "+strconv.Quote(b.addr))
				break
			}
		}
		addrs = append(addrs, bound{p + ".address", l.Address})
	}
	if len(v.problems) == 0 {
		return nil
	}
	sortProblems(v.problems)
	return &ValidationError{Problems: v.problems}
}

type validator struct {
	problems []Problem
}

func (v *validator) add(path string, value any, msg string) {
	v.problems = append(v.problems, Problem{Path: path, Value: value, Message: msg})
}

func (v *validator) oneOf(path, value string, allowed ...string) bool {
	if slices.Contains(allowed, value) {
		return true
	}
	v.add(path, value, "must be one of "+strings.Join(allowed, ", "))
	return false
}

func (v *validator) required(path, value string) bool {
	if value == "" {
		v.add(path, nil, "is required")
		return false
	}
	return true
}

// address checks a host:port to listen on: the host an IP address, a DNS
// name or empty (every interface), the port a number from 1 to 65535. It
// reports whether addr passed.
func (v *validator) address(path, addr string) bool {
	if !v.required(path, addr) {
		return false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(path, addr, "must be host:port")
		return false
	}
	ok := true
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		v.add(path, addr, "port must be a number from 1 to 65535")
		ok = false
	}
	if host != "" && !isIP(host) && !isDNSName(host) {
		v.add(path, addr, "host must be an IP address or a DNS name")
		ok = false
	}
	return ok
}

// admin checks the admin servers. A debug address that is not loopback
// without a token is refused, not warned about: /debug/sessions lists every
// client's address and pprof shows memory, to anyone who reaches the port,
// and a warning in a log is read after the fact.
func (v *validator) admin(a *Admin) {
	v.address("admin.address", a.Address)
	if a.DebugAddress != "" {
		switch {
		case !v.address("admin.debugAddress", a.DebugAddress):
			// Reported; whether it is loopback cannot be told.
		case addrConflict(a.DebugAddress, a.Address):
			v.add("admin.debugAddress", a.DebugAddress, "conflicts with admin.address "+strconv.Quote(a.Address))
		case a.DebugTokenFile == "" && !isLoopback(a.DebugAddress):
			v.add("admin.debugAddress", a.DebugAddress, "is not a loopback address: /debug/sessions lists every client and pprof shows memory; "+
				"listen on 127.0.0.1 or [::1] (kubectl port-forward reaches it), or set admin.debugTokenFile to require a bearer token")
		}
	} else {
		if a.Pprof {
			v.add("admin.pprof", a.Pprof, "needs admin.debugAddress: pprof is served there only")
		}
		if a.DebugTokenFile != "" {
			v.add("admin.debugTokenFile", a.DebugTokenFile, "needs admin.debugAddress: the token guards the debug server")
		}
	}
	if a.MaxConnections < 2 {
		v.add("admin.maxConnections", a.MaxConnections, "must be at least 2 (one slot is kept free for a newcomer)")
	}
	t := &a.Timeouts
	for _, d := range []struct {
		name string
		val  time.Duration
	}{{"readHeader", t.ReadHeader}, {"read", t.Read}, {"write", t.Write}, {"idle", t.Idle}} {
		if d.val <= 0 {
			v.add("admin.timeouts."+d.name, d.val, "must be greater than 0")
		}
	}
	if t.Read > 0 && t.Read < t.ReadHeader {
		v.add("admin.timeouts.read", t.Read, "must be at least admin.timeouts.readHeader ("+t.ReadHeader.String()+"): it bounds the headers too")
	}
}

// isLoopback reports whether a host:port names a loopback host: localhost
// or a loopback IP address.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

func (v *validator) listener(p string, l *Listener) {
	if v.required(p+".name", l.Name) && !isDNSLabel(l.Name, 63) {
		v.add(p+".name", l.Name, "must be a DNS label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit")
	}
	v.address(p+".address", l.Address)
	v.oneOf(p+".protocol", l.Protocol, "tcp", "http", "grpc")
	if l.HasRoutes() {
		v.routes(p, l)
	} else {
		v.endpoints(p+".endpoints", &l.Endpoints)
	}
	v.balance(p+".balance", l.Protocol, &l.Balance)
	v.timeouts(p+".timeouts", &l.Timeouts)
	if l.MaxConnections < 1 {
		v.add(p+".maxConnections", l.MaxConnections, "must be at least 1")
	}
	if l.MaxConnectionsPerClient < 0 {
		v.add(p+".maxConnectionsPerClient", l.MaxConnectionsPerClient, "must not be negative (0 means no bound)")
	}
	v.drain(p+".drain", l)
	v.http(p+".http", l.Protocol, &l.HTTP)
	if a := l.AccessLog; !(a.Sample >= 0 && a.Sample <= 1) {
		v.add(p+".accessLog.sample", a.Sample, "must be between 0 and 1")
	}
	if l.AccessLog.MaxPerSecond < 0 {
		v.add(p+".accessLog.maxPerSecond", l.AccessLog.MaxPerSecond, "must not be negative (0 means no cap)")
	}
	if l.Protocol != "tcp" && l.ProxyProtocol != (ProxyProtocol{}) {
		// An HTTP listener sets X-Forwarded-For and Forwarded instead; a
		// PROXY header there would be read as a request, so refuse it
		// rather than ignore it.
		v.add(p+".proxyProtocol", fmt.Sprintf("accept: %v, send: %v", l.ProxyProtocol.Accept, l.ProxyProtocol.Send), "is only for protocol tcp (http and grpc listeners pass the client address in X-Forwarded-For and Forwarded)")
	}
}

func (v *validator) timeouts(p string, t *Timeouts) {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"connect", t.Connect}, {"idle", t.Idle}, {"keepAliveIdle", t.KeepAliveIdle},
		{"requestBody", t.RequestBody}, {"responseHeader", t.ResponseHeader},
		{"webSocketIdle", t.WebSocketIdle}, {"streamIdle", t.StreamIdle}, {"halfClosed", t.HalfClosed},
		{"park", t.Park},
	} {
		if f.d <= 0 {
			v.add(p+"."+f.name, f.d, "must be greater than 0")
		}
	}
	// Keep-alive probe times are whole seconds on the socket.
	if t.TCPKeepAlive != 0 && (t.TCPKeepAlive < time.Second || t.TCPKeepAlive%time.Second != 0) {
		v.add(p+".tcpKeepAlive", t.TCPKeepAlive, "must be 0 (no probes) or a whole number of seconds")
	}
}

func (v *validator) endpoints(p string, e *Endpoints) {
	var set []string
	if len(e.Static) > 0 {
		set = append(set, "static")
	}
	if e.File != "" {
		set = append(set, "file")
	}
	if e.Kubernetes != nil {
		set = append(set, "kubernetes")
	}
	switch len(set) {
	case 0:
		v.add(p, nil, "must set one of static, file, kubernetes")
	case 1:
	default:
		v.add(p, nil, "sets "+strings.Join(set, " and ")+": must set exactly one of static, file, kubernetes")
	}
	seen := map[string]int{}
	for i, s := range e.Static {
		sp := fmt.Sprintf("%s.static[%d]", p, i)
		canon, err := discovery.CanonicalAddress(s)
		if err != nil {
			v.add(sp, s, "must be ip:port: "+err.Error())
			continue
		}
		if j, dup := seen[canon]; dup {
			v.add(sp, s, fmt.Sprintf("duplicate of %s.static[%d]", p, j))
			continue
		}
		seen[canon] = i
	}
	if k := e.Kubernetes; k != nil {
		kp := p + ".kubernetes"
		if v.required(kp+".namespace", k.Namespace) && !isDNSLabel(k.Namespace, 63) {
			v.add(kp+".namespace", k.Namespace, "must be a Kubernetes namespace name (a DNS label)")
		}
		if v.required(kp+".service", k.Service) && (!isDNSLabel(k.Service, 63) || !isLetter(k.Service[0])) {
			v.add(kp+".service", k.Service, "must be a Kubernetes Service name (a DNS label starting with a letter)")
		}
		if v.required(kp+".port", k.Port) && !isPort(k.Port) {
			v.add(kp+".port", k.Port, "must be a port number from 1 to 65535 or a port name (at most 15 lowercase letters, digits and '-', with a letter)")
		}
		if k.Coalesce < 0 || k.Coalesce > 10*time.Second {
			v.add(kp+".coalesce", k.Coalesce, "must be from 0 (the default, 50ms) to 10s")
		}
		if _, err := discovery.ParseIdentity(k.Identity); err != nil {
			v.add(kp+".identity", k.Identity, "must be address, pod-name, label:KEY or annotation:KEY (KEY a label or annotation key)")
		}
	}
}

func (v *validator) balance(p, protocol string, b *Balance) {
	v.oneOf(p+".policy", b.Policy, balancer.Maglev.String(), balancer.LeastConnections.String())
	v.key(p+".key", protocol, b.Key)
	if lb := b.BoundedLoad; lb != 0 && !(lb >= 1 && lb <= MaxBoundedLoad) {
		v.add(p+".boundedLoad", lb, fmt.Sprintf("must be 0 (off) or from 1 to %d", MaxBoundedLoad))
	}
	if f := b.LoadFloor; f < 0 || f > balancer.MaxLoadFloor {
		v.add(p+".loadFloor", f, fmt.Sprintf("must be from 0 (none) to %d", balancer.MaxLoadFloor))
	}
	if ts := b.TableSize; balancer.ValidTableSize(ts) != nil {
		v.add(p+".tableSize", ts, fmt.Sprintf("must be a prime from %d to %d, such as %d",
			balancer.MinTableSize, balancer.MaxTableSize, balancer.DefaultTableSize))
	}
}

// key checks a balance key with balancer.ParseKeySpec: client-ip or
// client-ip-port; http and grpc listeners also hash on path, header:NAME,
// cookie:NAME, query:NAME or grpc-metadata:NAME.
func (v *validator) key(p, protocol, key string) {
	spec, err := balancer.ParseKeySpec(key)
	if protocol != "http" && protocol != "grpc" {
		if err != nil || !spec.FromConnection() {
			v.add(p, key, "must be one of client-ip, client-ip-port")
		}
		return
	}
	if err != nil {
		msg := err.Error()
		if ke := (*balancer.KeySpecError)(nil); errors.As(err, &ke) {
			msg = ke.Reason // the path and value are the Problem's
		}
		v.add(p, key, msg)
	}
}

func (v *validator) http(p, protocol string, h *HTTP) {
	if protocol != "http" && protocol != "grpc" {
		if !reflect.DeepEqual(*h, HTTP{}) {
			v.add(p, nil, "is only for protocol http or grpc")
		}
		return
	}
	if v.oneOf(p+".upstream", h.Upstream, "", "http1", "h2c") && protocol == "grpc" && h.Upstream == "http1" {
		v.add(p+".upstream", h.Upstream, "grpc needs h2c")
	}
	v.oneOf(p+".affinity", h.Affinity, "", "none", "connection")
	if h.WebSocket.MaxFrame < 0 {
		v.add(p+".webSocket.maxFrame", h.WebSocket.MaxFrame, "must not be negative")
	}
	if c := h.WebSocket.CloseCode; c != 0 && c != 1001 && c != 1012 {
		v.add(p+".webSocket.closeCode", c, "must be 1012 (service restart) or 1001 (going away)")
	}
	v.pair(p+".tls", "", h.TLS.CertFile, h.TLS.KeyFile)
	for i, c := range h.TLS.Certificates {
		cp := fmt.Sprintf("%s.tls.certificates[%d]", p, i)
		files := c.CertFile != "" || c.KeyFile != ""
		inline := c.CertPEM != "" || c.KeyPEM != ""
		switch {
		case files && inline:
			v.add(cp, nil, "takes certFile and keyFile or certPEM and keyPEM, not both")
		case files:
			v.pair(cp, "", c.CertFile, c.KeyFile)
		case inline:
			if v.pair(cp, "PEM", c.CertPEM, c.KeyPEM) {
				if _, err := certs.FromPEM([]byte(c.CertPEM), []byte(c.KeyPEM)); err != nil {
					v.add(cp+".certPEM", nil, err.Error())
				}
			}
		default:
			v.add(cp, nil, "needs certFile and keyFile, or certPEM and keyPEM")
		}
		if _, err := route.CheckHostnames(c.Hostnames); err != nil {
			v.add(cp+".hostnames", nil, err.Error())
		}
	}
}

// pair checks that a certificate and its key are both set or both left
// out (suffix "" for files, "PEM" for inline); it reports whether both
// are set.
func (v *validator) pair(p, suffix, cert, key string) bool {
	c, k := "certFile", "keyFile"
	if suffix != "" {
		c, k = "cert"+suffix, "key"+suffix
	}
	switch {
	case cert == "" && key != "":
		v.add(p+"."+c, nil, "is required with "+k)
	case cert != "" && key == "":
		v.add(p+"."+k, nil, "is required with "+c)
	}
	return cert != "" && key != ""
}

// addrConflict reports whether listening on a and b at once would fail: the
// same port on the same host, or on any host when either is a wildcard.
func addrConflict(a, b string) bool {
	ah, ap, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	bh, bp, err := net.SplitHostPort(b)
	if err != nil {
		return false
	}
	an, err1 := strconv.ParseUint(ap, 10, 16)
	bn, err2 := strconv.ParseUint(bp, 10, 16)
	if err1 != nil || err2 != nil || an != bn || an == 0 {
		return false
	}
	ah, bh = canonHost(ah), canonHost(bh)
	return ah == bh || ah == "" || bh == ""
}

// canonHost returns "" for a wildcard host, the canonical form of an IP
// address, or the lowercased name.
func canonHost(h string) string {
	if a, err := netip.ParseAddr(h); err == nil {
		if a.IsUnspecified() {
			return ""
		}
		return a.Unmap().String()
	}
	return strings.ToLower(h)
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// isDNSName reports whether s is a host name: dot-separated labels of
// letters, digits and '-', at most 253 characters.
func isDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(strings.ToLower(s), ".") {
		if !isDNSLabel(l, 63) {
			return false
		}
	}
	return true
}

// isDNSLabel reports whether s is an RFC 1123 label of at most max
// characters: lowercase letters, digits and '-', starting and ending with a
// letter or digit.
func isDNSLabel(s string, max int) bool {
	if s == "" || len(s) > max || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !isLetter(c) && !(c >= '0' && c <= '9') && c != '-' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' }

// isDNSSubdomain reports whether s is an RFC 1123 subdomain: at most 253
// characters, dot-separated labels.
func isDNSSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !isDNSLabel(l, 63) {
			return false
		}
	}
	return true
}

// isPort reports whether s is a port number (1-65535) or a Kubernetes port
// name (an IANA service name: at most 15 characters, a letter among them, no
// "--").
func isPort(s string) bool {
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		return n > 0
	}
	return isDNSLabel(s, 15) && strings.ContainsFunc(s, func(r rune) bool { return r >= 'a' && r <= 'z' }) &&
		!strings.Contains(s, "--")
}

// sortProblems orders problems as the fields are ordered in Config (list
// elements by index, unknown keys after the known ones of their mapping),
// keeping the order of problems at the same path.
func sortProblems(ps []Problem) {
	keys := make(map[string][]pathPart, len(ps))
	for _, p := range ps {
		if _, ok := keys[p.Path]; !ok {
			keys[p.Path] = pathKey(p.Path)
		}
	}
	slices.SortStableFunc(ps, func(a, b Problem) int { return compareKeys(keys[a.Path], keys[b.Path]) })
}

func compareKeys(a, b []pathPart) int {
	return slices.CompareFunc(a, b, func(x, y pathPart) int {
		return cmp.Or(cmp.Compare(x.rank, y.rank), strings.Compare(x.name, y.name))
	})
}

// pathPart is one step of a path: a field (ranked by its index in its
// struct; unknown keys rank after every field, by name) or a list index.
type pathPart struct {
	rank int
	name string
}

const unknownRank = 1 << 30

func pathKey(path string) []pathPart {
	var parts []pathPart
	t := reflect.TypeFor[Config]()
	for seg := range strings.SplitSeq(path, ".") {
		name, rest, _ := strings.Cut(seg, "[")
		part := pathPart{rank: unknownRank, name: name}
		if t != nil && t.Kind() == reflect.Struct {
			if i, _ := fieldFor(t, name); i >= 0 {
				part = pathPart{rank: i}
				t = t.Field(i).Type
			} else {
				t = nil
			}
		} else {
			t = nil
		}
		parts = append(parts, part)
		for rest != "" {
			idx, after, _ := strings.Cut(rest, "]")
			n, err := strconv.Atoi(idx)
			if err != nil {
				n = unknownRank
			}
			parts = append(parts, pathPart{rank: n})
			rest = strings.TrimPrefix(after, "[")
			if t != nil && t.Kind() == reflect.Slice {
				t = t.Elem()
			}
		}
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
	}
	return parts
}

func (v *validator) drain(p string, l *Listener) {
	d := &l.Drain
	if d.Timeout < 0 {
		v.add(p+".timeout", d.Timeout, "must not be negative")
	}
	if d.Window < 0 || d.Window > d.Timeout && d.Timeout >= 0 {
		v.add(p+".window", d.Window, "must be between 0 and drain.timeout ("+d.Timeout.String()+")")
	}
	if d.Rate < 0 {
		v.add(p+".rate", d.Rate, "must not be negative (0 means no cap)")
	}
	if d.KillMargin < 0 {
		v.add(p+".killMargin", d.KillMargin, "must not be negative")
	}
	if d.TCP != "" { // "" is the default, deadline
		v.oneOf(p+".tcp", d.TCP, "deadline", "immediate")
	}
	r := &d.Rebalance
	if r.Factor != 0 && (r.Factor <= 1 || r.Factor > 100) {
		v.add(p+".rebalance.factor", r.Factor, "must be 0 (off) or greater than 1 and at most 100")
	}
	if r.Factor > 0 && l.Balance.Policy == balancer.Maglev.String() && l.Balance.BoundedLoad == 0 {
		v.add(p+".rebalance.factor", r.Factor, "needs balance.policy least-connections or balance.boundedLoad: plain consistent hashing sends a moved session back to the same endpoint")
	}
	if r.Target != 0 && (r.Target < 1 || r.Target > 100) { // above factor it counts as factor
		v.add(p+".rebalance.target", r.Target, "must be 0 (the default, 1.1) or from 1 to 100")
	}
	if r.Sustain < 0 {
		v.add(p+".rebalance.sustain", r.Sustain, "must not be negative (0 means the default, 10s)")
	}
	if r.PerMinute < 0 || r.PerMinute > 10 {
		v.add(p+".rebalance.perMinute", r.PerMinute, "must be from 0 (the default, 1) to 10")
	}
	if r.MaxPerRound < 0 {
		v.add(p+".rebalance.maxPerRound", r.MaxPerRound, "must not be negative (0 means the default, 10)")
	}
	if r.Cooldown < 0 {
		v.add(p+".rebalance.cooldown", r.Cooldown, "must not be negative (0 means the default, 10m)")
	}
}
