package app

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

const reloadConfig = `
admin: {address: %q}
listeners:
  - name: echo
    address: %q
    endpoints: {static: [%s]}
    balance: {policy: %s}
    drain: {timeout: %s}
`

// TestReloadInPlace: a new static list and policy take effect without a
// restart: new sessions go to the new endpoint, the removed endpoint's
// session is drained with the reloaded timeout.
func TestReloadInPlace(t *testing.T) {
	b1, b2 := echoServer(t), echoServer(t)
	admin, lis := testnet.FreeAddr(t), testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(reloadConfig, admin, lis, fmt.Sprintf("%q", b1), "maglev", "10s"))
	c, err := net.Dial("tcp", lis)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "before")

	next, err := config.Parse([]byte(fmt.Sprintf(reloadConfig, admin, lis, fmt.Sprintf("%q", b2), "least-connections", "200ms")))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.a.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	up := r.a.Upstream("echo")
	if s := up.Snapshot(); len(s.Endpoints) != 1 || s.Endpoints[0].Address != b2 {
		t.Fatalf("endpoints after reload: %+v", s.Endpoints)
	}
	if got := fmt.Sprintf("%T", up.Picker()); strings.Contains(strings.ToLower(got), "maglev") {
		t.Errorf("picker after reload is %s, want least-connections", got)
	}
	// The session on the removed endpoint is closed after the reloaded
	// drain timeout (200ms), not the old one (10s).
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("session on the removed endpoint still relays")
	}
	// The client sees the close before the session has left the registry.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.a.Sessions().Wait(ctx, func(i upstream.SessionInfo) bool { return i.Endpoint == b1 }); err != nil {
		t.Fatalf("the removed endpoint's session is still registered: %v", err)
	}
	c2, err := net.Dial("tcp", lis)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	roundTrip(t, c2, "after")
	infos := r.a.Sessions().Infos()
	if len(infos) != 1 || infos[0].Endpoint != b2 {
		t.Errorf("new session went to %+v, want %s", infos, b2)
	}
}

// TestReloadRefusesRestartChanges: changes that need a restart are refused
// whole, each named, and nothing is applied.
func TestReloadRefusesRestartChanges(t *testing.T) {
	b1, b2 := echoServer(t), echoServer(t)
	admin, lis := testnet.FreeAddr(t), testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(reloadConfig, admin, lis, fmt.Sprintf("%q", b1), "maglev", "10s"))
	other := testnet.FreeAddr(t)
	next, err := config.Parse([]byte(strings.Replace(
		fmt.Sprintf(reloadConfig, admin, other, fmt.Sprintf("%q", b2), "maglev", "1s"),
		"drain: {timeout: 1s}", "drain: {timeout: 1s}\n    timeouts: {idle: 5m}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	err = r.a.Reload(next)
	if err == nil {
		t.Fatal("Reload accepted a new address")
	}
	for _, want := range []string{"listeners[0].address", "listeners[0].timeouts", "needs a restart"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if s := r.a.Upstream("echo").Snapshot(); s.Endpoints[0].Address != b1 {
		t.Errorf("endpoints changed by a refused reload: %+v", s.Endpoints)
	}
}

// TestReloadRefusesAdminChanges: every admin key needs a restart, and the
// refusal names each changed one.
func TestReloadRefusesAdminChanges(t *testing.T) {
	b := echoServer(t)
	admin, lis := testnet.FreeAddr(t), testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(reloadConfig, admin, lis, fmt.Sprintf("%q", b), "maglev", "10s"))
	next, err := config.Parse([]byte(strings.Replace(fmt.Sprintf(reloadConfig, admin, lis, fmt.Sprintf("%q", b), "maglev", "10s"),
		"admin: {address: "+fmt.Sprintf("%q", admin)+"}",
		"admin: {address: "+fmt.Sprintf("%q", admin)+", debugAddress: 127.0.0.1:1, maxConnections: 10, timeouts: {idle: 5s}}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	err = r.a.Reload(next)
	if err == nil {
		t.Fatal("Reload accepted new admin settings")
	}
	for _, want := range []string{"admin.debugAddress", "admin.maxConnections", "admin.timeouts", "needs a restart"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "admin.address") {
		t.Errorf("error %q names admin.address, which did not change", err)
	}
}
