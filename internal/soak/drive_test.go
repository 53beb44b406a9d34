package soak_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/soak"
)

// shortPlan is a plan of d with the samples off the ticks.
func shortPlan(d time.Duration) soak.Plan {
	p := soak.DefaultPlan(d)
	p.Interval = 200 * time.Millisecond
	p.WarmUp = time.Second + p.Interval/2
	p.SampleEvery = time.Second
	return p
}

// TestDriveDirect drives the clients straight at the backends for 3s: the
// harness alone finds no problem, and each lane's backend saw exactly the
// clients' connections.
func TestDriveDirect(t *testing.T) {
	be, err := soak.StartBackends()
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	res, err := soak.Drive(context.Background(), be.Addrs, be, shortPlan(3*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Problems(); len(p) > 0 {
		t.Errorf("problems: %q", p)
	}
	for _, c := range res.Conns {
		if c.Dialed != 1 || c.BackendEnd != 1 {
			t.Errorf("%s: dialled %d, backend accepted %d; want 1 and 1", c.Lane, c.Dialed, c.BackendEnd)
		}
	}
	for _, c := range res.Calls {
		if c.OK < 2 {
			t.Errorf("%s: %d ok in 3s", c.Kind.Name, c.OK)
		}
	}
}

// TestDriveSeesAReplacedConnection puts a relay in front of the TCP
// backend that cuts its first connection after a second: the client
// dials again, and Problems names the lane and the count.
func TestDriveSeesAReplacedConnection(t *testing.T) {
	be, err := soak.StartBackends()
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for first := true; ; first = false {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", be.Addrs[soak.TCP])
			if err != nil {
				c.Close()
				return
			}
			if first {
				time.AfterFunc(time.Second, func() { c.Close() })
			}
			wg.Go(func() { io.Copy(up, c); up.Close() })
			wg.Go(func() { io.Copy(c, up); c.Close() })
		}
	})
	targets := soak.Addrs{}
	for l, a := range be.Addrs {
		targets[l] = a
	}
	targets[soak.TCP] = ln.Addr().String()
	res, err := soak.Drive(context.Background(), targets, be, shortPlan(3*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	probs := strings.Join(res.Problems(), "\n")
	if !strings.Contains(probs, "tcp: clients opened 2 connections to longhaul, want 1") {
		t.Errorf("problems do not name the replaced TCP connection:\n%s", probs)
	}
	if !strings.Contains(probs, "tcp: longhaul opened 2 connections to the backend") {
		t.Errorf("problems do not name the second backend connection:\n%s", probs)
	}
}

func TestProblemsOfProbes(t *testing.T) {
	grow := 100.0
	res := &soak.Result{Series: []*soak.Series{
		{Probe: soak.Probe{Name: "flat", Bound: 5}, Points: []soak.Point{{At: time.Second, Value: 10}, {At: 2 * time.Second, Value: 14}}},
		{Probe: soak.Probe{Name: "grows", Bound: 5}, Points: []soak.Point{{At: time.Second, Value: 10}, {At: 2 * time.Second, Value: 10 + grow}}},
		{Probe: soak.Probe{Name: "empty"}},
	}}
	probs := strings.Join(res.Problems(), "\n")
	if strings.Contains(probs, "flat") || !strings.Contains(probs, "grows: ended at 110, 100 above its 10") || !strings.Contains(probs, "empty: no sample") {
		t.Errorf("problems:\n%s", probs)
	}
}

func TestSeriesSummary(t *testing.T) {
	s := &soak.Series{}
	for i := range 7 {
		// 3 per hour plus noise that averages out.
		s.Points = append(s.Points, soak.Point{At: time.Duration(i) * time.Hour, Value: 100 + 3*float64(i) + float64(i%2)})
	}
	sum := s.Summary()
	if sum.Start != 100 || sum.End != 118 || sum.Min != 100 || sum.Max != 118 || sum.N != 7 {
		t.Errorf("summary %+v", sum)
	}
	if sum.SlopePerHour < 2.9 || sum.SlopePerHour > 3.1 {
		t.Errorf("slope %.3f per hour, want 3", sum.SlopePerHour)
	}
}

func TestPlanValidate(t *testing.T) {
	if err := soak.DefaultPlan(200 * time.Second).Validate(); err != nil {
		t.Errorf("default plan: %v", err)
	}
	if g := soak.DefaultPlan(200 * time.Second).QuietGap; g != 100*time.Second {
		t.Errorf("quiet gap of a 3m20s run: %v, want 100s", g)
	}
	if g := soak.DefaultPlan(10 * time.Second).QuietGap; g != 2500*time.Millisecond {
		t.Errorf("quiet gap of a 10s run: %v, want 2.5s", g)
	}
	if g := soak.DefaultPlan(199 * time.Second).QuietGap; g != 49750*time.Millisecond {
		t.Errorf("quiet gap of a 3m19s run: %v, want 49.75s", g)
	}
	if g := soak.DefaultPlan(5 * time.Minute).QuietGap; g != 100*time.Second {
		t.Errorf("quiet gap of a 5m run: %v, want 100s", g)
	}
	p := soak.DefaultPlan(time.Hour)
	p.QuietGap = 77 * time.Second
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "keep-alive idle timeout 1m15s") {
		t.Errorf("Validate of a 77s quiet gap: %v", err)
	}
	p.QuietGap = 92 * time.Second
	p.TCPConns = 0
	err := p.Validate()
	if err == nil || !strings.Contains(err.Error(), "quiet gap 1m32s") || !strings.Contains(err.Error(), "TCP connections must be from 1 to 1000, got 0") {
		t.Errorf("Validate: %v", err)
	}
}

// TestConfigIsValid: the soak configuration passes longhaul's validation
// and leaves every timer at its default.
func TestConfigIsValid(t *testing.T) {
	addrs := soak.Addrs{}
	for i, l := range soak.Lanes {
		addrs[l] = fmt.Sprintf("127.0.0.1:%d", 7000+i)
	}
	cfg, err := config.Parse(soak.Config("127.0.0.1:9901", addrs, addrs))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listeners) != len(soak.Lanes) {
		t.Fatalf("%d listeners", len(cfg.Listeners))
	}
	for _, l := range cfg.Listeners {
		want := config.DefaultTimeouts()
		if l.Timeouts != want || l.Drain.Timeout != config.DefaultDrainTimeout || l.MaxConnections != config.DefaultMaxConnections {
			t.Errorf("listener %s: timeouts %+v, drain %v: not the defaults", l.Name, l.Timeouts, l.Drain.Timeout)
		}
	}
}
