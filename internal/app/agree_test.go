package app

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// TestReplicaAgreementOverHTTP: two longhaul replicas over the same five
// backends, Maglev on X-User with bounded loads 1.25, each sent 2,000 keys
// once with n requests in flight at the same time; the backends say which
// of them answered. With the default load floor the replicas send at least
// 99 % of keys to the same backend at 2, 4, 8 and 32 in flight; without a floor
// (loadFloor 0) they disagree on far more at 32, which shows the test sees
// what the floor fixes.
func TestReplicaAgreementOverHTTP(t *testing.T) {
	var backends []string
	for i := range 5 {
		name := fmt.Sprintf("b%d", i)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(2 * time.Millisecond) // holds requests in flight, as work would
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		backends = append(backends, strings.TrimPrefix(srv.URL, "http://"))
	}
	eps := `"` + strings.Join(backends, `", "`) + `"`
	const keys = 2000
	for _, floor := range []string{"", "loadFloor: 0, "} {
		cfg := func() string {
			return fmt.Sprintf(`
admin: {address: %q}
log: {level: warn}
listeners:
  - {name: web, protocol: http, address: %q, balance: {%spolicy: maglev, key: "header:X-User", boundedLoad: 1.25}, endpoints: {static: [%s]}}
`, testnet.FreeAddr(t), testnet.FreeAddr(t), floor, eps)
		}
		rs := []*running{start(t, cfg()), start(t, cfg())}
		for _, n := range []int{2, 4, 8, 32} {
			var got [2][keys]string
			var wg sync.WaitGroup
			for ri, r := range rs {
				url := "http://" + r.a.ListenerAddr("web").String() + "/"
				next := make(chan int)
				wg.Go(func() {
					defer close(next)
					for k := range keys {
						next <- k
					}
				})
				client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
				for range n {
					wg.Go(func() {
						for k := range next {
							req, _ := http.NewRequest("GET", url, nil)
							req.Header.Set("X-User", fmt.Sprintf("user-%d", k))
							resp, err := client.Do(req)
							if err != nil {
								t.Errorf("replica %d, key %d: %v", ri, k, err)
								continue
							}
							b, _ := io.ReadAll(resp.Body)
							resp.Body.Close()
							got[ri][k] = string(b)
						}
					})
				}
				t.Cleanup(client.CloseIdleConnections)
			}
			wg.Wait()
			agreed := 0
			for k := range keys {
				if got[0][k] != "" && got[0][k] == got[1][k] {
					agreed++
				}
			}
			share := float64(agreed) / keys
			what := map[string]string{"": "default floor 16", "loadFloor: 0, ": "no floor"}[floor]
			t.Logf("%s, %2d in flight per replica: %d of %d keys agreed (%.2f %%)", what, n, agreed, keys, 100*share)
			switch {
			case floor == "" && share < 0.99:
				t.Errorf("%s, %d in flight: replicas agree on %.2f %% of keys, want at least 99 %%", what, n, 100*share)
			case floor != "" && n == 32 && share >= 0.99:
				t.Errorf("%s, %d in flight: replicas agree on %.2f %%, want the test to show disagreement", what, n, 100*share)
			}
		}
	}
}
