package wsframe

import (
	"errors"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// TestPumpPanicEndsOneRelay: a panic in one relay's pump, taken while it
// holds its destination's lock and with a migration's close injection
// waiting for that lock, ends that relay (Run returns) with the injected
// Close delivered; a relay next to it carries on.
func TestPumpPanicEndsOneRelay(t *testing.T) {
	guard.SetLogger(zap.NewNop())
	defer guard.SetLogger(nil)
	var victim atomic.Pointer[Relay]
	testHookFrame = func(r *Relay, h Header) {
		if r == victim.Load() && h.Opcode == OpBinary {
			r.Migrate(1001, "going away") // its injectors now wait for the lock held here
			panic("test: pump bug")
		}
	}
	defer func() { testHookFrame = nil }()
	a := startRaw(t, Options{}, nil, nil)
	b := startRaw(t, Options{}, nil, nil)
	victim.Store(a.relay)
	before := guard.Count("websocket")

	write(t, a.client, fromClient(OpBinary, "boom"))
	expectClose(t, a.backend, 1001, true)
	expectClose(t, a.client, 1001, false)
	if err := a.wait(t); !errors.Is(err, guard.ErrPanicked) {
		t.Fatalf("victim's Run: %v, want guard.ErrPanicked", err)
	}
	if got := guard.Count("websocket") - before; got != 1 {
		t.Errorf("longhaul_panics_total{where=websocket} rose by %v, want 1", got)
	}
	for i := range 5 {
		up, down := fromClient(OpBinary, "still here"), fromServer(OpText, "and here")
		write(t, b.client, up)
		write(t, b.backend, down)
		if got := readExactly(t, b.backend, len(up)); string(got) != string(up) {
			t.Fatalf("round %d: the other relay's upstream frame differs", i)
		}
		if got := readExactly(t, b.client, len(down)); string(got) != string(down) {
			t.Fatalf("round %d: the other relay's downstream frame differs", i)
		}
	}
}
