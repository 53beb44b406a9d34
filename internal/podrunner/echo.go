package podrunner

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Identity is what an echo server says about itself in every echo: the
// environment variables NAMESPACE, INGRESS_NAME, SERVICE_NAME and POD_NAME
// of the container, and the port of its plain HTTP listener (HTTP_PORT).
type Identity struct {
	Namespace string
	Ingress   string
	Service   string
	Pod       string
	HTTPPort  string
}

// Echo is the JSON body of an echo: the request as the server received it
// and the server's identity. Its fields and their JSON names are those the
// Gateway API conformance suite decodes (its roundtripper's
// CapturedRequest).
type Echo struct {
	Path      string              `json:"path"` // the request URI: path and query, as sent
	Host      string              `json:"host"`
	Method    string              `json:"method"`
	Proto     string              `json:"proto"` // HTTP/1.1 or HTTP/2.0
	Headers   map[string][]string `json:"headers"`
	HTTPPort  string              `json:"httpPort"`
	Namespace string              `json:"namespace"`
	Ingress   string              `json:"ingress"`
	Service   string              `json:"service"`
	Pod       string              `json:"pod"`
	TLS       *EchoTLS            `json:"tls,omitempty"` // only over TLS
}

// EchoTLS describes the TLS connection a request came on.
type EchoTLS struct {
	Version            string   `json:"version"` // TLSv1.2, TLSv1.3
	PeerCertificates   []string `json:"peerCertificates,omitempty"`
	ServerName         string   `json:"serverName"`
	NegotiatedProtocol string   `json:"negotiatedProtocol,omitempty"`
	CipherSuite        string   `json:"cipherSuite"`
}

// EchoHandler answers as the conformance suite's echo backend does:
//
//   - /health: 200 "OK".
//   - /ws (WebSocketPath): a WebSocket upgrade, then every message echoed
//     back; the upgrade's answer names the pod (HeaderEchoPod,
//     HeaderEchoNamespace).
//   - /status/NNN: an empty response with status NNN (400 for anything else
//     under /status/).
//   - /retry/?uuid=U&succeedAfter=N[&responseCode=C][&delayRetry=D]: the
//     first N requests with a given uuid fail (the connection is reset, or
//     status C), after D each; later ones are echoed.
//   - anything else: the Echo JSON, after the duration in the query
//     parameter delay if any. Every "name:value" in the comma-separated
//     X-Echo-Set-Header request headers becomes a response header.
//
// Double slashes in the path are collapsed before routing, and nothing is
// ever redirected. The handler keeps the retry counts; it is safe for
// concurrent use.
func EchoHandler(id Identity) http.Handler { return newEchoHandler(id) }

func newEchoHandler(id Identity) *echoHandler {
	return &echoHandler{id: id, ws: newWSEcho(id), attempts: map[string]int{}}
}

type echoHandler struct {
	id Identity
	ws *wsEcho

	mu       sync.Mutex
	attempts map[string]int // retry uuid -> failed attempts so far
}

var statusPath = regexp.MustCompile(`^/status/(\d\d\d)$`)

func (h *echoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.ReplaceAll(r.URL.Path, "//", "/")
	switch {
	case path == WebSocketPath:
		h.ws.ServeHTTP(w, r)
	case path == "/health":
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("OK"))
	case strings.HasPrefix(path, "/status/"):
		code := http.StatusBadRequest
		if m := statusPath.FindStringSubmatch(r.RequestURI); m != nil {
			code, _ = strconv.Atoi(m[1])
		}
		w.WriteHeader(code)
	case strings.HasPrefix(path, "/retry/"):
		h.retry(w, r)
	default:
		h.echo(w, r)
	}
}

// closeWebSockets ends the handler's WebSocket connections (wsEcho.Close).
func (h *echoHandler) closeWebSockets() { h.ws.Close() }

func (h *echoHandler) retry(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	uuid := q.Get("uuid")
	if uuid == "" {
		http.Error(w, "uuid is required", http.StatusBadRequest)
		return
	}
	after, err := strconv.Atoi(q.Get("succeedAfter"))
	if err != nil {
		http.Error(w, "succeedAfter is required", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	fail := h.attempts[uuid] < after
	if fail {
		h.attempts[uuid]++
	}
	h.mu.Unlock()
	if !fail {
		h.echo(w, r)
		return
	}
	if err := delay(r, "delayRetry"); err != nil {
		jsonError(w, err, http.StatusInternalServerError)
		return
	}
	if code, err := strconv.Atoi(q.Get("responseCode")); err == nil {
		w.WriteHeader(code)
		return
	}
	// No response code: reset the connection.
	hj, ok := w.(http.Hijacker)
	if !ok {
		jsonError(w, fmt.Errorf("cannot reset an %s connection", r.Proto), http.StatusInternalServerError)
		return
	}
	c, _, err := hj.Hijack()
	if err != nil {
		jsonError(w, err, http.StatusInternalServerError)
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func (h *echoHandler) echo(w http.ResponseWriter, r *http.Request) {
	if err := delay(r, "delay"); err != nil {
		jsonError(w, err, http.StatusInternalServerError)
		return
	}
	body, err := json.MarshalIndent(Echo{
		Path:      r.RequestURI,
		Host:      r.Host,
		Method:    r.Method,
		Proto:     r.Proto,
		Headers:   r.Header,
		HTTPPort:  h.id.HTTPPort,
		Namespace: h.id.Namespace,
		Ingress:   h.id.Ingress,
		Service:   h.id.Service,
		Pod:       h.id.Pod,
		TLS:       tlsState(r.TLS),
	}, "", " ")
	if err != nil {
		jsonError(w, err, http.StatusInternalServerError)
		return
	}
	for _, list := range r.Header["X-Echo-Set-Header"] {
		for kv := range strings.SplitSeq(list, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(kv), ":")
			if name == "" {
				continue
			}
			// The name is kept as sent, not canonicalised; repeated names
			// join into one comma-separated value.
			value = strings.TrimSpace(value)
			if v := w.Header()[name]; len(v) > 0 {
				v[0] += "," + value
			} else {
				w.Header()[name] = []string{value}
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(body)
}

// delay sleeps for the duration in query or form parameter key, if any.
func delay(r *http.Request, key string) error {
	s := r.FormValue(key)
	if s == "" {
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("parameter %s: %w", key, err)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.Context().Done():
		return r.Context().Err()
	}
}

func jsonError(w http.ResponseWriter, err error, code int) {
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(body)
}

func tlsState(cs *tls.ConnectionState) *EchoTLS {
	if cs == nil {
		return nil
	}
	s := &EchoTLS{
		ServerName:         cs.ServerName,
		NegotiatedProtocol: cs.NegotiatedProtocol,
		CipherSuite:        tls.CipherSuiteName(cs.CipherSuite),
	}
	switch cs.Version {
	case tls.VersionTLS13:
		s.Version = "TLSv1.3"
	case tls.VersionTLS12:
		s.Version = "TLSv1.2"
	case tls.VersionTLS11:
		s.Version = "TLSv1.1"
	case tls.VersionTLS10:
		s.Version = "TLSv1.0"
	}
	for _, c := range cs.PeerCertificates {
		s.PeerCertificates = append(s.PeerCertificates, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	return s
}

// h2cOnly wraps h to refuse, with 400, HTTP/1 requests that do not ask to
// upgrade to h2c, as the echo backend's h2c port does.
func h2cOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 && r.Header.Get("Upgrade") != "h2c" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, "Expected h2c request")
			return
		}
		h.ServeHTTP(w, r)
	})
}
