package app

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// replicaConfig is a configuration of one replica: an HTTP listener keyed
// by X-User and a TCP listener keyed by client IP, both over the same four
// static endpoints (never dialled), with bounded loads.
func replicaConfig(t *testing.T, eps string) string {
	return fmt.Sprintf(`
admin: {address: %q, debugAddress: %q}
listeners:
  - {name: web, protocol: http, address: %q, balance: {policy: maglev, key: "header:X-User", boundedLoad: 1.25}, endpoints: {static: [%s]}}
  - {name: raw, address: %q, balance: {policy: maglev, boundedLoad: 1.25}, endpoints: {static: [%s]}}
`, testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t), eps, testnet.FreeAddr(t), eps)
}

type lookupAnswer struct {
	Listener, Key, KeySpec, Hash, Endpoint, Fingerprint string
}

func lookupKey(t *testing.T, r *running, listener, key string) (int, lookupAnswer) {
	t.Helper()
	code, body := get(t, "http://"+r.a.DebugAddr().String()+"/debug/lookup?listener="+url.QueryEscape(listener)+"&key="+url.QueryEscape(key))
	var v lookupAnswer
	if code == 200 {
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("lookup %s %q: body %q: %v", listener, key, body, err)
		}
	}
	return code, v
}

// fingerprintGauge returns longhaul_picker_fingerprint of listener as
// /metrics reports it.
func fingerprintGauge(t *testing.T, r *running, listener string) float64 {
	t.Helper()
	code, body := get(t, "http://"+r.a.AdminAddr().String()+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	prefix := `longhaul_picker_fingerprint{listener="` + listener + `"} `
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", prefix)
	return 0
}

// TestDebugLookupAndFingerprint runs two replicas of one configuration
// (their own ports) and asks them over HTTP: /debug/lookup answers the
// endpoint the listener's picker chooses for the key hashed as its key
// spec reads it (the same as a picker built here from the same endpoints
// and policy), both replicas answer alike for every key, and the
// fingerprint is the same in /debug/lookup, /debug/endpoints and the
// gauge (its low 52 bits), and on both replicas. Unknown listeners are
// 404, a key a client-ip listener cannot read 400.
func TestDebugLookupAndFingerprint(t *testing.T) {
	addrs := []string{"127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103", "127.0.0.1:9104"}
	eps := `"` + strings.Join(addrs, `", "`) + `"`
	rs := []*running{start(t, replicaConfig(t, eps)), start(t, replicaConfig(t, eps))}

	snap, err := staticSnapshot("web", addrs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := balancer.Build(snap, balancer.Policy{BoundedLoad: 1.25}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantFP := fmt.Sprintf("%016x", want.Fingerprint())
	seen := map[string]bool{}
	for i := range 50 {
		user := fmt.Sprintf("user-%d", i)
		wantEP := want.Pick(balancer.HashString(user), nil).Endpoint.Address
		seen[wantEP] = true
		for j, r := range rs {
			code, v := lookupKey(t, r, "web", user)
			if code != 200 || v.Endpoint != wantEP || v.Fingerprint != wantFP || v.KeySpec != "header:X-User" ||
				v.Hash != fmt.Sprintf("%016x", balancer.HashString(user)) {
				t.Fatalf("replica %d: lookup web %q: %d %+v, want endpoint %s, fingerprint %s", j, user, code, v, wantEP, wantFP)
			}
		}
	}
	if len(seen) < 2 {
		t.Errorf("50 keys all map to %v: the lookup does not tell keys apart", seen)
	}

	// client-ip: the key is an address, hashed as the TCP listener does.
	ip := "192.0.2.44"
	wantEP := want.Pick(balancer.HashAddr(netip.MustParseAddr(ip)), nil).Endpoint.Address
	if code, v := lookupKey(t, rs[0], "raw", ip); code != 200 || v.Endpoint != wantEP || v.KeySpec != "client-ip" {
		t.Errorf("lookup raw %s: %d %+v, want endpoint %s", ip, code, v, wantEP)
	}
	if code, _ := lookupKey(t, rs[0], "raw", "alice"); code != 400 {
		t.Errorf("lookup raw alice: %d, want 400 (not an IP address)", code)
	}
	if code, _ := lookupKey(t, rs[0], "nosuch", "alice"); code != 404 {
		t.Errorf("lookup of an unknown listener: %d, want 404", code)
	}

	for j, r := range rs {
		code, body := get(t, "http://"+r.a.DebugAddr().String()+"/debug/endpoints")
		var views []struct {
			Listener, Fingerprint string
		}
		if err := json.Unmarshal([]byte(body), &views); code != 200 || err != nil {
			t.Fatalf("replica %d: /debug/endpoints: %d %v %q", j, code, err, body)
		}
		for _, v := range views {
			// Both listeners have the same endpoints and policy, so the
			// same fingerprint: the key spec is not part of the table.
			if v.Fingerprint != wantFP {
				t.Errorf("replica %d: /debug/endpoints %s: fingerprint %q, want %s", j, v.Listener, v.Fingerprint, wantFP)
			}
		}
		if got, wantG := fingerprintGauge(t, r, "web"), float64(want.Fingerprint()&(1<<52-1)); got != wantG {
			t.Errorf("replica %d: longhaul_picker_fingerprint{listener=web} = %v, want %v", j, got, wantG)
		}
	}
}

// TestDebugEndpointsShowsRollout: with an endpoints file whose terminating
// entry runs revision v1, /debug/endpoints marks the other v1 entry
// outgoing and the v2 one not, and a Maglev key of the leaving endpoint
// is looked up on the new revision.
func TestDebugEndpointsShowsRollout(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "endpoints.yaml")
	if err := os.WriteFile(file, []byte(`endpoints:
  - {address: "127.0.0.1:9201", revision: v1, ready: false, serving: true, terminating: true}
  - {address: "127.0.0.1:9202", revision: v1}
  - {address: "127.0.0.1:9203", revision: v2}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := start(t, fmt.Sprintf(`
admin: {address: %q, debugAddress: %q}
listeners:
  - {name: web, protocol: http, address: %q, balance: {policy: maglev, key: "header:X-User"}, endpoints: {file: %q}}
`, testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t), file))
	code, body := get(t, "http://"+r.a.DebugAddr().String()+"/debug/endpoints")
	var views []struct {
		Listener  string
		Endpoints []struct {
			Address            string
			Revision           string
			Eligible, Outgoing bool
		}
	}
	if err := json.Unmarshal([]byte(body), &views); code != 200 || err != nil || len(views) != 1 {
		t.Fatalf("/debug/endpoints: %d %v %q", code, err, body)
	}
	got := map[string]string{}
	for _, e := range views[0].Endpoints {
		got[e.Address] = fmt.Sprintf("%s eligible=%v outgoing=%v", e.Revision, e.Eligible, e.Outgoing)
	}
	want := map[string]string{
		"127.0.0.1:9201": "v1 eligible=false outgoing=false",
		"127.0.0.1:9202": "v1 eligible=true outgoing=true",
		"127.0.0.1:9203": "v2 eligible=true outgoing=false",
	}
	if !maps.Equal(got, want) {
		t.Errorf("/debug/endpoints shows %v, want %v", got, want)
	}
	// Keys whose slot is the leaving endpoint's go to the new revision; the
	// others stay where the table without the rollout put them.
	full, err := staticSnapshot("web", []string{"127.0.0.1:9201", "127.0.0.1:9202", "127.0.0.1:9203"})
	if err != nil {
		t.Fatal(err)
	}
	before, err := balancer.Build(full, balancer.Policy{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	leavingKeys := 0
	for i := range 60 {
		user := fmt.Sprintf("user-%d", i)
		was := before.Pick(balancer.HashString(user), nil).Endpoint.Address
		wantEP := was
		if was == "127.0.0.1:9201" {
			wantEP, leavingKeys = "127.0.0.1:9203", leavingKeys+1
		}
		if code, v := lookupKey(t, r, "web", user); code != 200 || v.Endpoint != wantEP {
			t.Errorf("lookup %q: %d %s, want %s (was %s before the rollout)", user, code, v.Endpoint, wantEP, was)
		}
	}
	if leavingKeys == 0 {
		t.Error("no key of 60 was the leaving endpoint's: the test checks nothing")
	}
}
