package h2relay

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// connRouter is the Router OnConn gives one connection: it counts its
// routes and sends them to the shared router.
type connRouter struct {
	r      *testRouter
	routes atomic.Int32
}

func (c *connRouter) Route(h *RequestHead, tried []string) (string, func(), bool) {
	c.routes.Add(1)
	return c.r.Route(h, tried)
}

// handles starts a relay whose OnConn hands each connection's handle to
// the returned channel and routes its streams with a connRouter.
func handles(t *testing.T, r *testRouter) (*testRelay, chan *Conn, chan *connRouter) {
	conns := make(chan *Conn, 4)
	routers := make(chan *connRouter, 4)
	p := startRelay(t, Config{Router: r, OnConn: func(c *Conn) Router {
		cr := &connRouter{r: r}
		conns <- c
		routers <- cr
		return cr
	}})
	return p, conns, routers
}

var rawGET = []string{":method", "GET", ":scheme", "http", ":authority", "a", ":path"}

// TestConnGoAwayTwoStep: GoAway on one connection sends GOAWAY with the
// largest stream id and a PING; a stream opened before the client answers
// it is accepted; after the answer, GOAWAY with the last stream id. Both
// streams (the one in flight at GoAway and the one opened after) complete,
// then the connection closes, before the deadline.
func TestConnGoAwayTwoStep(t *testing.T) {
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		fmt.Fprint(w, "done")
	}))
	p, conns, routers := handles(t, &testRouter{addrs: []string{be}})
	rc := dialRaw(t, p.addr)
	rc.headers(1, true, append(rawGET, "/1")...)
	c, cr := <-conns, <-routers
	if c.RemoteAddr().String() != rc.c.LocalAddr().String() {
		t.Errorf("RemoteAddr %s, want the client's %s", c.RemoteAddr(), rc.c.LocalAddr())
	}
	time.Sleep(50 * time.Millisecond) // stream 1 is in flight
	c.GoAway(time.Now().Add(5 * time.Second))
	var goaways []uint32
	var events []string
	ended := map[uint32]bool{}
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			break
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				rc.fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			goaways = append(goaways, f.LastStreamID)
			events = append(events, "goaway")
			if f.ErrCode != http2.ErrCodeNo {
				t.Errorf("GOAWAY code %v", f.ErrCode)
			}
			if len(goaways) == 2 {
				rc.headers(5, true, append(rawGET, "/5")...) // after the final GOAWAY: ignored
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				events = append(events, "ping")
				// Not yet answered: a new stream is still accepted.
				rc.headers(3, true, append(rawGET, "/3")...)
				rc.fr.WritePing(true, f.Data)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 5 {
				t.Error("stream 5, opened after the final GOAWAY, was answered")
			}
			if v := f.PseudoValue("status"); v != "" && v != "200" {
				t.Errorf("stream %d: status %s", f.StreamID, v)
			}
		case *http2.DataFrame:
			if f.StreamEnded() {
				ended[f.StreamID] = true
			}
		case *http2.RSTStreamFrame:
			t.Errorf("stream %d reset: %v", f.StreamID, f.ErrCode)
		}
	}
	if len(goaways) != 2 || goaways[0] != 1<<31-1 || goaways[1] != 3 {
		t.Errorf("GOAWAY last stream ids %v, want [2147483647 3]", goaways)
	}
	if len(events) < 3 || events[0] != "goaway" || events[1] != "ping" || events[2] != "goaway" {
		t.Errorf("frames %v, want goaway, ping, goaway", events)
	}
	if !ended[1] || !ended[3] {
		t.Errorf("streams ended: %v, want 1 and 3", ended)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the connection closed")
	}
	if c.Forced() {
		t.Error("Forced: the connection ended before its deadline")
	}
	if n := cr.routes.Load(); n != 2 {
		t.Errorf("the connection's Router routed %d streams, want 2", n)
	}
}

// TestConnGoAwayDeadline: a stream still open at GoAway's deadline is
// reset (its response header was relayed, so no 502 can be sent), and the
// connection closes.
func TestConnGoAwayDeadline(t *testing.T) {
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	p, conns, _ := handles(t, &testRouter{addrs: []string{be}})
	rc := dialRaw(t, p.addr)
	rc.headers(1, true, append(rawGET, "/hang")...)
	c := <-conns
	for got := false; !got; {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			t.Fatalf("before stream 1's header: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				rc.fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			got = f.StreamID == 1
		}
	}
	start := time.Now()
	c.GoAway(start.Add(300 * time.Millisecond))
	var goaways []uint32
	var rst http2.ErrCode = 0xff
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			break
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			goaways = append(goaways, f.LastStreamID)
		case *http2.PingFrame:
			if !f.IsAck() {
				rc.fr.WritePing(true, f.Data)
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				rst = f.ErrCode
			}
		}
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("the connection closed after %v, before its deadline", took)
	}
	if len(goaways) != 2 || goaways[0] != 1<<31-1 || goaways[1] != 1 {
		t.Errorf("GOAWAY last stream ids %v, want [2147483647 1]", goaways)
	}
	if rst != http2.ErrCodeInternal {
		t.Errorf("stream 1 ended with RST_STREAM %v, want INTERNAL_ERROR", rst)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the deadline")
	}
	if !c.Forced() {
		t.Error("Forced is false: the deadline closed the connection")
	}
}

// TestConnGoAwayGRPC: with grpc-go as the client, a call that finishes
// before the deadline succeeds, one still open at the deadline fails with
// UNAVAILABLE, and the client's next call goes over a new connection.
func TestConnGoAwayGRPC(t *testing.T) {
	b := startBackend(t)
	p, conns, _ := handles(t, &testRouter{addrs: []string{b.addr}})
	cc := dialGRPC(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wait(ctx, cc, "0s"); err != nil {
		t.Fatal(err)
	}
	c := <-conns
	short, long := make(chan error, 1), make(chan error, 1)
	go func() { short <- wait(ctx, cc, "200ms") }()
	go func() { long <- wait(ctx, cc, "forever") }()
	eventually(t, 5*time.Second, func() bool { return b.calls.Load() >= 3 }, "both calls at the endpoint")
	c.GoAway(time.Now().Add(time.Second))
	if err := <-short; err != nil {
		t.Errorf("call finishing before the deadline: %v", err)
	}
	if err := <-long; status.Code(err) != codes.Unavailable {
		t.Errorf("call open at the deadline: %v, want UNAVAILABLE", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the deadline")
	}
	if !c.Forced() {
		t.Error("Forced is false")
	}
	if err := wait(ctx, cc, "0s"); err != nil {
		t.Errorf("call after the move: %v", err)
	}
	select {
	case <-conns:
	default:
		t.Error("the call after the move did not open a new connection")
	}
}
