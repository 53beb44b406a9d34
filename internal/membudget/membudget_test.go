package membudget

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// holder holds n bytes until shed, when it gives them back.
type holder struct {
	b    *Budget
	mu   sync.Mutex
	n    int64
	shed chan struct{}
}

func (h *holder) Held() int64 { h.mu.Lock(); defer h.mu.Unlock(); return h.n }
func (h *holder) Shed() {
	h.mu.Lock()
	n := h.n
	h.n = 0
	h.mu.Unlock()
	h.b.Add(-n)
	close(h.shed)
}

// TestShedsGreediestFirst: over the limit, the greediest holders are shed
// until the total is under nine tenths of it; the others keep theirs.
func TestShedsGreediestFirst(t *testing.T) {
	b := New(10 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	sizes := []int64{1 << 20, 2 << 20, 3 << 20, 4 << 20} // 10 MiB: at the limit
	var hs []*holder
	for _, n := range sizes {
		h := &holder{b: b, n: n, shed: make(chan struct{})}
		defer b.Register(h)()
		b.Add(n)
		hs = append(hs, h)
	}
	if b.Shed() != 0 {
		t.Fatalf("shed %d at the limit; want none", b.Shed())
	}
	// 2 MiB more from the smallest: 12 MiB, over. The 4 MiB one goes (8 MiB
	// is under 9 MiB), nothing else.
	hs[0].mu.Lock()
	hs[0].n += 2 << 20
	hs[0].mu.Unlock()
	b.Add(2 << 20)
	select {
	case <-hs[3].shed:
	case <-time.After(5 * time.Second):
		t.Fatal("the greediest holder was not shed")
	}
	for i, h := range hs[:3] {
		select {
		case <-h.shed:
			t.Errorf("holder %d (%d MiB) shed too", i, h.Held()>>20)
		default:
		}
	}
	if got := b.Used(); got != 8<<20 {
		t.Errorf("used %d MiB after shedding; want 8", got>>20)
	}
	if b.Shed() != 1 {
		t.Errorf("shed %d; want 1", b.Shed())
	}
}

func TestLimit(t *testing.T) {
	for _, c := range []struct{ mem, want int64 }{{math.MaxInt64, 0}, {0, 0}, {1 << 30, 512 << 20}} {
		if got := Limit(c.mem); got != c.want {
			t.Errorf("Limit(%d) = %d, want %d", c.mem, got, c.want)
		}
	}
	var nb *Budget
	nb.Add(5)
	nb.Register(&holder{})()
	if nb.Used() != 0 || nb.Shed() != 0 {
		t.Error("a nil Budget counted")
	}
}
