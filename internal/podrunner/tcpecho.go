package podrunner

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"sync"
)

// TCPWelcome is the line a TCP echo sends first on every connection.
const TCPWelcome = "Gateway API Test TCP Server\n"

// TCPEcho is the JSON line a TCP echo answers TEST with.
type TCPEcho struct {
	Namespace string      `json:"namespace"`
	Ingress   string      `json:"ingress"`
	Service   string      `json:"service"`
	Pod       string      `json:"pod"`
	TCPPort   string      `json:"tcpport"`
	TLSPort   string      `json:"tlsport,omitempty"`
	IsTLS     bool        `json:"isTLS"`
	TLS       *TCPEchoTLS `json:"tls,omitempty"`
}

// TCPEchoTLS describes a TCP echo's TLS connection.
type TCPEchoTLS struct {
	Version            string `json:"version"` // as tls.VersionName: "TLS 1.3"
	ServerName         string `json:"serverName"`
	NegotiatedProtocol string `json:"negotiatedProtocol,omitempty"`
	Curves             string `json:"curves,omitempty"`
	CipherSuite        string `json:"cipherSuite"`
}

// tcpEcho serves the suite's TCP echo (TCP_ECHO_SERVER) on a listener: each
// connection (TLS-terminated first with a TLS config) gets TCPWelcome, then
// answers the lines TEST (the TCPEcho JSON), IS_TLS (true or false) and PING
// (PONG); other lines are ignored.
type tcpEcho struct {
	ln   net.Listener
	base TCPEcho
	tls  *tls.Config
	wg   sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

func serveTCPEcho(ln net.Listener, base TCPEcho, cfg *tls.Config) *tcpEcho {
	s := &tcpEcho{ln: ln, base: base, tls: cfg, conns: map[net.Conn]bool{}}
	s.wg.Go(s.accept)
	return s
}

func (s *tcpEcho) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.handle(c)
		})
	}
}

func (s *tcpEcho) handle(raw net.Conn) {
	conn, echo := raw, s.base
	if s.tls != nil {
		tc := tls.Server(raw, s.tls)
		if err := tc.Handshake(); err != nil {
			return
		}
		st := tc.ConnectionState()
		echo.IsTLS = true
		echo.TLS = &TCPEchoTLS{
			Version:            tls.VersionName(st.Version),
			ServerName:         st.ServerName,
			NegotiatedProtocol: st.NegotiatedProtocol,
			Curves:             st.CurveID.String(),
			CipherSuite:        tls.CipherSuiteName(st.CipherSuite),
		}
		conn = tc
	}
	payload, err := json.Marshal(echo)
	if err != nil {
		return
	}
	if _, err := fmt.Fprint(conn, TCPWelcome); err != nil {
		return
	}
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		switch sc.Text() {
		case "TEST":
			_, err = fmt.Fprintf(conn, "%s\n", payload)
		case "IS_TLS":
			_, err = fmt.Fprintf(conn, "%t\n", echo.IsTLS)
		case "PING":
			_, err = fmt.Fprint(conn, "PONG\n")
		}
		if err != nil {
			return
		}
	}
}

// Close stops accepting, closes every connection and waits for their
// goroutines.
func (s *tcpEcho) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}
