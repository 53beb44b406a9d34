// Package membudget caps the bytes that connections hold in user space
// (queued output, buffered stream data) across the whole process. Each
// connection that holds bytes is a Holder registered with the Budget and
// reports its changes with Add; when the total goes over the limit, the
// Budget's goroutine sheds the greediest holders until the total is back
// under the low-water mark (nine tenths of the limit). A connection is
// closed, never the process.
//
// Limit derives the limit from GOMEMLIMIT when it is set.
package membudget

import (
	"context"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// Holder is a connection that holds bytes against a Budget.
type Holder interface {
	// Held is what the holder holds now (its own count of what it Added).
	Held() int64
	// Shed closes the holder (with whatever its protocol says first:
	// HTTP/2 GOAWAY ENHANCE_YOUR_CALM). Held and Shed are called with the
	// Budget's lock held: they must not block, nor Register or unregister;
	// Add is fine.
	Shed()
}

// Budget is a process-wide byte budget. The zero value is not usable; a nil
// *Budget is: every method does nothing.
type Budget struct {
	limit int64
	used  atomic.Int64
	over  chan struct{} // a token when used went over limit

	mu sync.Mutex
	// holders maps each registered holder to whether it was shed (and is
	// closing: it is not shed again, and what it holds counts as freed).
	holders map[Holder]bool
	shed    atomic.Int64 // holders shed so far
}

// New returns a Budget of limit bytes (at least 1 MiB); its Run must be
// started for it to shed.
func New(limit int64) *Budget {
	return &Budget{limit: max(limit, 1<<20), over: make(chan struct{}, 1), holders: map[Holder]bool{}}
}

// Limit returns the budget for a process with memory limit memLimit (as
// debug.SetMemoryLimit reports it): half of it, the rest being the Go
// heap's own objects, goroutine stacks and the runtime. 0 when no limit is
// set (math.MaxInt64).
func Limit(memLimit int64) int64 {
	if memLimit <= 0 || memLimit == math.MaxInt64 {
		return 0
	}
	return memLimit / 2
}

// FromGOMEMLIMIT returns a Budget derived from the process's memory limit
// (GOMEMLIMIT), or nil when none is set.
func FromGOMEMLIMIT() *Budget {
	l := Limit(debug.SetMemoryLimit(-1))
	if l == 0 {
		return nil
	}
	return New(l)
}

// Register adds h; it must Add nothing before, and call the returned
// function once when it is gone (after its last Add).
func (b *Budget) Register(h Holder) (unregister func()) {
	if b == nil {
		return func() {}
	}
	b.mu.Lock()
	b.holders[h] = false
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.holders, h)
		b.mu.Unlock()
	}
}

// Add accounts n bytes (negative: given back). It does not block: going
// over the limit wakes the Budget's goroutine.
func (b *Budget) Add(n int64) {
	if b == nil || n == 0 {
		return
	}
	if b.used.Add(n) > b.limit && n > 0 {
		select {
		case b.over <- struct{}{}:
		default:
		}
	}
}

// Limit is the budget's limit in bytes.
func (b *Budget) Limit() int64 {
	if b == nil {
		return 0
	}
	return b.limit
}

// Used is the total accounted now.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Shed is the number of holders shed so far.
func (b *Budget) Shed() int64 {
	if b == nil {
		return 0
	}
	return b.shed.Load()
}

// Run sheds holders whenever the total goes over the limit, until ctx
// ends. It is the Budget's one goroutine.
func (b *Budget) Run(ctx context.Context) {
	if b == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.over:
			b.reclaim()
		}
	}
}

// reclaim sheds the greediest holders until the total, less what the shed
// ones still hold (given back as they close), is under nine tenths of the
// limit. A holder is shed once.
func (b *Budget) reclaim() {
	low := b.limit / 10 * 9
	b.mu.Lock()
	defer b.mu.Unlock()
	var freed int64
	for h, shed := range b.holders {
		if shed {
			freed += h.Held()
		}
	}
	for b.used.Load()-freed > low {
		var worst Holder
		var most int64
		for h, shed := range b.holders {
			if n := h.Held(); !shed && n > most {
				worst, most = h, n
			}
		}
		if worst == nil {
			return
		}
		b.holders[worst] = true
		freed += most
		b.shed.Add(1)
		worst.Shed()
	}
}
