package podrunner

import (
	"encoding/json"
	"net"
)

// UDPEcho is a UDP echo's answer to a datagram.
type UDPEcho struct {
	Request   string `json:"request"` // the datagram received
	Namespace string `json:"namespace"`
	Ingress   string `json:"ingress"`
	Service   string `json:"service"`
	Pod       string `json:"pod"`
}

// udpEcho serves the suite's UDP echo (UDP_ECHO_SERVER): every datagram (up
// to 1,024 bytes) is answered to its sender with the UDPEcho JSON.
type udpEcho struct {
	pc   net.PacketConn
	done chan struct{} // closed when the serving goroutine has returned
}

func serveUDPEcho(pc net.PacketConn, id Identity) *udpEcho {
	u := &udpEcho{pc: pc, done: make(chan struct{})}
	go func() {
		defer close(u.done)
		buf := make([]byte, 1024)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			payload, err := json.Marshal(UDPEcho{Request: string(buf[:n]), Namespace: id.Namespace, Ingress: id.Ingress, Service: id.Service, Pod: id.Pod})
			if err == nil {
				pc.WriteTo(payload, from)
			}
		}
	}()
	return u
}

// Close closes the socket and waits for the serving goroutine.
func (u *udpEcho) Close() {
	u.pc.Close()
	<-u.done
}
