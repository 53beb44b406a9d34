package podrunner

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/longhaul-proxy/longhaul/internal/netns"
)

// start gives pod p a namespace and an address and starts its servers.
func (r *Runner) start(ctx context.Context, p *corev1.Pod) (*pod, error) {
	slot := -1
	for i, used := range r.slots {
		if !used {
			slot = i
			break
		}
	}
	if slot < 0 {
		return nil, fmt.Errorf("all %d addresses of %v are taken", len(r.slots), r.subnet)
	}
	hostIP, addr := netns.Slot(r.subnet, slot)
	h, err := netns.Create(fmt.Sprintf("%s%d", r.NamespacePrefix(), slot),
		fmt.Sprintf("%s%d", r.LinkPrefix(), slot), fmt.Sprintf("pr%sn%d", r.run, slot), hostIP, addr)
	if err != nil {
		return nil, err
	}
	st := &pod{uid: p.UID, slot: slot, host: h, started: metav1.Now()}
	fail := func(err error) (*pod, error) {
		stopAll(st.stops)
		return nil, errors.Join(err, h.Delete())
	}
	for _, c := range p.Spec.Containers {
		env := containerEnv(p, c, addr)
		id := Identity{
			Namespace: env["NAMESPACE"], Ingress: env["INGRESS_NAME"],
			Service: env["SERVICE_NAME"], Pod: env["POD_NAME"],
			HTTPPort: withDefault(env["HTTP_PORT"], "3000"),
		}
		if env["UDP_ECHO_SERVER"] != "" {
			port := withDefault(env["UDP_PORT"], "8080")
			n, err := strconv.Atoi(port)
			if err != nil {
				return fail(fmt.Errorf("container %s: port %q: %w", c.Name, port, err))
			}
			pc, err := h.ListenUDP(n)
			if err != nil {
				return fail(fmt.Errorf("container %s: listen on %v UDP port %d: %w", c.Name, h.Addr, n, err))
			}
			st.stops = append(st.stops, serveUDPEcho(pc, id).Close)
			continue
		}
		if env["TCP_ECHO_SERVER"] != "" {
			if err := r.startTCP(ctx, p, c, env, h, st, id); err != nil {
				return fail(fmt.Errorf("container %s: %w", c.Name, err))
			}
			continue
		}
		if env["GRPC_ECHO_SERVER"] != "" {
			if err := r.startGRPC(ctx, p, c, env, h, st, id); err != nil {
				return fail(fmt.Errorf("container %s: %w", c.Name, err))
			}
			continue
		}
		eh := newEchoHandler(id)
		var echo http.Handler = eh
		type listener struct {
			port    string
			handler http.Handler
			tls     *tls.Config
		}
		ls := []listener{{id.HTTPPort, echo, nil}, {withDefault(env["H2C_PORT"], "3001"), h2cOnly(echo), nil}}
		if env["TLS_SERVER_CERT"] != "" && env["TLS_SERVER_PRIVKEY"] != "" {
			cfg, err := r.tlsConfig(ctx, p, c, env, "TLS_SERVER_PRIVKEY")
			if err != nil {
				return fail(fmt.Errorf("container %s: %w", c.Name, err))
			}
			ls = append(ls, listener{withDefault(env["HTTPS_PORT"], "8443"), echo, cfg})
		}
		// Upgraded connections outlive their server's Close: end them
		// with the pod (wsEcho refuses upgrades from then on).
		st.stops = append(st.stops, eh.closeWebSockets)
		for _, l := range ls {
			srv, err := serve(h, l.port, l.handler, l.tls)
			if err != nil {
				return fail(fmt.Errorf("container %s: %w", c.Name, err))
			}
			st.stops = append(st.stops, func() { srv.Close() })
		}
	}
	r.slots[slot] = true
	return st, nil
}

// startGRPC starts the gRPC echo of container c (GRPC_ECHO_SERVER): in
// plaintext on HTTP_PORT and, when TLS_SERVER_CERT and TLS_SERVER_PRIV_KEY
// are set, over TLS on HTTPS_PORT.
func (r *Runner) startGRPC(ctx context.Context, p *corev1.Pod, c corev1.Container, env map[string]string, h *netns.Host, st *pod, id Identity) error {
	type listener struct {
		port string
		tls  *tls.Config
	}
	ls := []listener{{id.HTTPPort, nil}}
	if env["TLS_SERVER_CERT"] != "" && env["TLS_SERVER_PRIV_KEY"] != "" {
		cfg, err := r.tlsConfig(ctx, p, c, env, "TLS_SERVER_PRIV_KEY")
		if err != nil {
			return err
		}
		ls = append(ls, listener{withDefault(env["HTTPS_PORT"], "8443"), cfg})
	}
	for _, l := range ls {
		n, err := strconv.Atoi(l.port)
		if err != nil {
			return fmt.Errorf("port %q: %w", l.port, err)
		}
		ln, err := h.Listen(n)
		if err != nil {
			return fmt.Errorf("listen on %v port %d: %w", h.Addr, n, err)
		}
		srv := NewGRPCEcho(id, l.tls)
		go srv.Serve(ln) // returns once Stop closed ln
		st.stops = append(st.stops, srv.Stop)
	}
	return nil
}

// startTCP starts the TCP echo of container c (TCP_ECHO_SERVER) on
// TCP_PORT and, when TLS_SERVER_CERT and TLS_SERVER_PRIV_KEY are set, over
// TLS on TLS_PORT.
func (r *Runner) startTCP(ctx context.Context, p *corev1.Pod, c corev1.Container, env map[string]string, h *netns.Host, st *pod, id Identity) error {
	base := TCPEcho{
		Namespace: id.Namespace, Ingress: id.Ingress, Service: id.Service, Pod: id.Pod,
		TCPPort: withDefault(env["TCP_PORT"], "3000"), TLSPort: withDefault(env["TLS_PORT"], "8443"),
	}
	type listener struct {
		port string
		tls  *tls.Config
	}
	ls := []listener{{base.TCPPort, nil}}
	if env["TLS_SERVER_CERT"] != "" && env["TLS_SERVER_PRIV_KEY"] != "" {
		cfg, err := r.tlsConfig(ctx, p, c, env, "TLS_SERVER_PRIV_KEY")
		if err != nil {
			return err
		}
		cfg.MinVersion = tls.VersionTLS12
		ls = append(ls, listener{base.TLSPort, cfg})
	}
	for _, l := range ls {
		n, err := strconv.Atoi(l.port)
		if err != nil {
			return fmt.Errorf("port %q: %w", l.port, err)
		}
		ln, err := h.Listen(n)
		if err != nil {
			return fmt.Errorf("listen on %v port %d: %w", h.Addr, n, err)
		}
		st.stops = append(st.stops, serveTCPEcho(ln, base, l.tls).Close)
	}
	return nil
}

// tlsConfig is the TLS configuration of an echo server with the
// certificate and key at the paths TLS_SERVER_CERT and keyVar (files of the
// pod's secret or config map volumes) and, with TLS_CLIENT_CACERTS,
// verifying client certificates when given.
func (r *Runner) tlsConfig(ctx context.Context, p *corev1.Pod, c corev1.Container, env map[string]string, keyVar string) (*tls.Config, error) {
	certPEM, err := r.readFile(ctx, p, c, env["TLS_SERVER_CERT"])
	if err != nil {
		return nil, err
	}
	keyPEM, err := r.readFile(ctx, p, c, env[keyVar])
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if path := env["TLS_CLIENT_CACERTS"]; path != "" {
		caPEM, err := r.readFile(ctx, p, c, path)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("no certificate in %s", path)
		}
		cfg.ClientAuth, cfg.ClientCAs = tls.VerifyClientCertIfGiven, pool
	}
	return cfg, nil
}

// serve serves handler on port of h, over HTTP/1.1 and h2c, or with cfg
// over TLS with HTTP/1.1 and HTTP/2, until the server is closed.
func serve(h *netns.Host, port string, handler http.Handler, cfg *tls.Config) (*http.Server, error) {
	n, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", port, err)
	}
	ln, err := h.Listen(n)
	if err != nil {
		return nil, fmt.Errorf("listen on %v port %d: %w", h.Addr, n, err)
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	if cfg != nil {
		protos.SetHTTP2(true)
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{Handler: handler, Protocols: protos, TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second}
	// Serve and ServeTLS return once Close closed ln.
	if cfg != nil {
		go srv.ServeTLS(ln, "", "")
	} else {
		go srv.Serve(ln)
	}
	return srv, nil
}

func stopAll(stops []func()) {
	for _, stop := range stops {
		stop()
	}
}

// containerEnv is c's environment: literal values and the downward API's
// pod fields (others are left out).
func containerEnv(p *corev1.Pod, c corev1.Container, addr netip.Addr) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				env[e.Name] = p.Name
			case "metadata.namespace":
				env[e.Name] = p.Namespace
			case "metadata.uid":
				env[e.Name] = string(p.UID)
			case "spec.nodeName":
				env[e.Name] = p.Spec.NodeName
			case "spec.serviceAccountName":
				env[e.Name] = p.Spec.ServiceAccountName
			case "status.podIP":
				env[e.Name] = addr.String()
			case "status.hostIP":
				env[e.Name] = "127.0.0.1"
			}
		}
	}
	return env
}

func withDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
