package podrunner

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestTCPEcho speaks the suite's TCP echo protocol over loopback, in
// plaintext and over TLS.
func TestTCPEcho(t *testing.T) {
	certPEM, keyPEM, pool := selfSigned(t, "tcp.example.com")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	base := TCPEcho{Namespace: "ns", Service: "svc", Pod: "pod-1", TCPPort: "3000", TLSPort: "8443"}
	for _, overTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("TLS=%v", overTLS), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var cfg *tls.Config
			if overTLS {
				cfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			s := serveTCPEcho(ln, base, cfg)
			defer s.Close()
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if overTLS {
				c = tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "tcp.example.com"})
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			line := func(send string) string {
				t.Helper()
				if send != "" {
					if _, err := fmt.Fprintf(c, "%s\n", send); err != nil {
						t.Fatal(err)
					}
				}
				l, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("after %q: %v", send, err)
				}
				return l
			}
			if got := line(""); got != TCPWelcome {
				t.Fatalf("welcome %q", got)
			}
			if got := line("PING"); got != "PONG\n" {
				t.Errorf("PING: %q", got)
			}
			if got := line("IS_TLS"); got != fmt.Sprintf("%t\n", overTLS) {
				t.Errorf("IS_TLS: %q", got)
			}
			var e TCPEcho
			if err := json.Unmarshal([]byte(line("NOPE\nTEST")), &e); err != nil {
				t.Fatal(err)
			}
			if e.Pod != "pod-1" || e.Namespace != "ns" || e.Service != "svc" || e.TCPPort != "3000" || e.IsTLS != overTLS || (e.TLS != nil) != overTLS {
				t.Errorf("TEST: %+v", e)
			}
			if overTLS && (e.TLS.ServerName != "tcp.example.com" || e.TLS.Version != "TLS 1.3" || e.TLS.CipherSuite == "") {
				t.Errorf("TEST over TLS: %+v", e.TLS)
			}
		})
	}
}

// TestUDPEcho: each datagram is answered with the UDPEcho JSON.
func TestUDPEcho(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := serveUDPEcho(pc, Identity{Namespace: "ns", Service: "svc", Pod: "pod-1"})
	defer u.Close()
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, msg := range []string{"hello", "again"} {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		var e UDPEcho
		if err := json.Unmarshal(buf[:n], &e); err != nil {
			t.Fatalf("%v: %s", err, buf[:n])
		}
		if e != (UDPEcho{Request: msg, Namespace: "ns", Service: "svc", Pod: "pod-1"}) {
			t.Errorf("answer to %q: %+v", msg, e)
		}
	}
}
