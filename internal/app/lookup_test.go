package app

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
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
