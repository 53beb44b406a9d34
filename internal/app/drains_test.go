package app

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// TestDrainLedgerFromFile: an endpoint of the endpoints file turns
// terminating with a kill time closer than drain's least time (MinLeft):
// its 5 sessions are asked to move with a deadline past the kill time and,
// raw TCP clients that stay, are forced at it. /metrics and /debug/drains
// show the drain (5 forced, none left, a negative kill margin) after it
// finished, and one warning says it was projected to finish late.
func TestDrainLedgerFromFile(t *testing.T) {
	b1, b2 := echoServer(t), echoServer(t)
	file, write := endpointsFile(t)
	write(fmt.Sprintf("- {address: %q}\n", b2))
	admin, debug, lis := testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t)
	core, logs := observer.New(zapcore.WarnLevel)
	startWith(t, fmt.Sprintf(`
admin: {address: %q, debugAddress: %q}
listeners:
  - name: echo
    address: %q
    endpoints: {file: %q}
    drain: {timeout: 20s, window: 100ms, killMargin: 0s}
`, admin, debug, lis, file), Options{Logger: zap.New(core)})
	openSessions(t, lis, 5)
	kill := time.Now().Add(100 * time.Millisecond).Truncate(time.Millisecond)
	write(fmt.Sprintf("- {address: %q}\n- {address: %q, ready: false, serving: true, terminating: true, killTime: %q}\n",
		b1, b2, kill.Format(time.RFC3339Nano)))

	series := func(m, name, state string) (float64, bool) {
		labels := fmt.Sprintf(`endpoint="%s",listener="echo"`, b2)
		if state != "" {
			labels += fmt.Sprintf(`,state="%s"`, state)
		}
		re := regexp.MustCompile(regexp.QuoteMeta(name+"{"+labels+"}") + ` (\S+)`)
		sm := re.FindStringSubmatch(m)
		if sm == nil {
			return 0, false
		}
		v, err := strconv.ParseFloat(sm[1], 64)
		return v, err == nil
	}
	var m string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, m = get(t, "http://"+admin+"/metrics")
		if n, ok := series(m, "longhaul_drain_sessions", "forced"); ok && n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after %s turned terminating, /metrics has no 5 forced sessions of its drain:\n%s", b2, grepLines(m, "longhaul_drain_"))
		}
	}
	t.Logf("/metrics:\n%s", grepLines(m, "longhaul_drain_"))
	for state, want := range map[string]float64{"left": 0, "moved": 0, "closed": 0} {
		if n, ok := series(m, "longhaul_drain_sessions", state); !ok || n != want {
			t.Errorf("longhaul_drain_sessions{state=%q} = %v (present %v), want %v", state, n, ok, want)
		}
	}
	if v, ok := series(m, "longhaul_drain_projected_finish_seconds", ""); !ok || v >= 0 {
		t.Errorf("projected finish %v s from now (present %v), want negative: finished", v, ok)
	}
	// The sessions had MinLeft (200ms) where the kill time gave 100ms.
	if v, ok := series(m, "longhaul_drain_kill_margin_seconds", ""); !ok || v >= 0 || v < -5 {
		t.Errorf("kill margin %v s (present %v), want between -5s and 0", v, ok)
	}

	_, body := get(t, "http://"+debug+"/debug/drains")
	var views []drainsView
	if err := json.Unmarshal([]byte(body), &views); err != nil {
		t.Fatalf("/debug/drains: %v: %s", err, body)
	}
	if len(views) != 1 || views[0].Listener != "echo" || len(views[0].Drains) != 1 {
		t.Fatalf("/debug/drains: %s, want listener echo with one drain", body)
	}
	d := views[0].Drains[0]
	switch {
	case d.Endpoint != b2 || d.AtStart != 5 || d.Asked != 5 || d.Forced != 5 || d.Left != 0:
		t.Errorf("drain %+v, want %s: 5 at the start, asked and forced, none left", d, b2)
	case d.KillTime == nil || !d.KillTime.Equal(kill) || !d.Late || d.Finished == nil:
		t.Errorf("drain %+v, want kill time %v, late, finished", d, kill)
	case d.Finished.Before(kill):
		t.Errorf("finished %v, before the kill time %v: the deadline was MinLeft after it left", d.Finished, kill)
	}

	warns := logs.FilterMessage("drain projected to finish after the endpoint's kill time").All()
	if len(warns) != 1 {
		t.Fatalf("%d late warnings, want 1: %v", len(warns), logs.All())
	}
	if f := warns[0].ContextMap(); f["endpoint"] != b2 || f["listener"] != "echo" {
		t.Errorf("late warning fields %v, want endpoint %s of listener echo", f, b2)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string { return filterLines(s, sub, true) }

// withoutLines returns the lines of s that do not contain sub.
func withoutLines(s, sub string) string { return filterLines(s, sub, false) }

func filterLines(s, sub string, keep bool) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) == keep {
			b.WriteString(line)
		}
	}
	return b.String()
}
