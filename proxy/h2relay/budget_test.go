package h2relay

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// Unit tests of the per-connection budgets with a fake clock: each limit
// is pushed one past, and a new window (budgetSpan later) starts over.

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// guardRead runs frames (written with write) through a frameGuard and a
// Framer, and returns how many frames were read before the first error.
func guardRead(t *testing.T, clk *fakeClock, maxHeaderList int, write func(fr *http2.Framer)) (int, error) {
	t.Helper()
	var buf bytes.Buffer
	write(http2.NewFramer(&buf, nil))
	g := &frameGuard{r: &buf, now: clk.now, maxBlockBytes: maxBlockFactor * maxHeaderList}
	fr := http2.NewFramer(nil, g)
	fr.SetMaxReadFrameSize(1 << 20)
	n := 0
	for {
		if _, err := fr.ReadFrame(); err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		n++
	}
}

func wantCalm(t *testing.T, what string, n, wantN int, err error) {
	t.Helper()
	var calm *calmError
	if !errors.As(err, &calm) {
		t.Fatalf("%s: %d frames read, then %v; want a calm error", what, n, err)
	}
	if n != wantN {
		t.Errorf("%s: refused after %d frames, want %d", what, n, wantN)
	}
}

func TestFrameGuardRates(t *testing.T) {
	for _, c := range []struct {
		name  string
		max   int
		frame func(fr *http2.Framer, i int)
	}{
		{"ping", maxPingsPerSpan, func(fr *http2.Framer, i int) { fr.WritePing(false, [8]byte{byte(i)}) }},
		{"settings", maxSettingsPerSpan, func(fr *http2.Framer, i int) { fr.WriteSettings() }},
		{"empty data", maxEmptyPerSpan, func(fr *http2.Framer, i int) { fr.WriteData(1, false, nil) }},
		{"priority", maxPriorityPerSpan, func(fr *http2.Framer, i int) {
			fr.WritePriority(3, http2.PriorityParam{StreamDep: 1, Weight: 1})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Unix(1000, 0)}
			// At the limit: every frame read.
			n, err := guardRead(t, clk, 64<<10, func(fr *http2.Framer) {
				for i := range c.max {
					c.frame(fr, i)
				}
			})
			if err != nil || n != c.max {
				t.Fatalf("%d of %d frames at the limit: %v", n, c.max, err)
			}
			// One past it within the window: refused at the one past.
			n, err = guardRead(t, clk, 64<<10, func(fr *http2.Framer) {
				for i := range c.max + 1 {
					c.frame(fr, i)
				}
			})
			wantCalm(t, c.name, n, c.max, err)
		})
	}
}

// TestFrameGuardWindowRolls: the count starts over budgetSpan later.
func TestFrameGuardWindowRolls(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	for range 2 * maxSettingsPerSpan {
		fr.WriteSettings()
	}
	g := &frameGuard{r: &buf, now: clk.now, maxBlockBytes: 1 << 20}
	rd := http2.NewFramer(nil, g)
	for i := range 2 * maxSettingsPerSpan {
		if i == maxSettingsPerSpan {
			clk.t = clk.t.Add(budgetSpan)
		}
		if _, err := rd.ReadFrame(); err != nil {
			t.Fatalf("frame %d: %v (the window should have rolled)", i, err)
		}
	}
}

func TestFrameGuardHeaderBlock(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	t.Run("frames", func(t *testing.T) {
		// HEADERS and maxBlockFrames-1 CONTINUATIONs of one byte are taken
		// (a Framer without ReadMetaHeaders returns each); one more is
		// refused.
		n, err := guardRead(t, clk, 64<<10, func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82}, EndStream: true})
			for range maxBlockFrames {
				fr.WriteContinuation(1, false, []byte{0x82})
			}
		})
		wantCalm(t, "CONTINUATION frames", n, maxBlockFrames, err)
	})
	t.Run("bytes", func(t *testing.T) {
		// Twice the header list limit in fragments is taken; a byte more
		// is refused.
		const maxList = 1 << 10
		n, err := guardRead(t, clk, maxList, func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: bytes.Repeat([]byte{0x82}, maxList), EndStream: true})
			fr.WriteContinuation(1, false, bytes.Repeat([]byte{0x82}, maxList))
			fr.WriteContinuation(1, true, []byte{0x82})
		})
		wantCalm(t, "header block bytes", n, 2, err)
	})
}

func TestStreamBudget(t *testing.T) {
	start := time.Unix(1000, 0)
	t.Run("early resets", func(t *testing.T) {
		var b streamBudget
		// Resets of fewer than half the streams opened never trip.
		for i := range 3 * maxEarlyResets {
			b.open(start)
			if i%3 == 0 {
				if err := b.reset(start); err != nil {
					t.Fatalf("reset %d of %d opened: %v", b.early, b.opened, err)
				}
			}
		}
		// Every new stream reset: trips once early resets pass both bounds.
		var err error
		for i := 0; err == nil && i < 10*maxEarlyResets; i++ {
			b.open(start)
			err = b.reset(start)
		}
		var calm *calmError
		if !errors.As(err, &calm) || b.early <= maxEarlyResets || 2*b.early <= b.opened {
			t.Fatalf("early %d of %d opened: %v", b.early, b.opened, err)
		}
		// A new window starts over.
		if err := b.reset(start.Add(budgetSpan)); err != nil {
			t.Errorf("first reset of a new window: %v", err)
		}
	})
	t.Run("new streams", func(t *testing.T) {
		var b streamBudget
		for i := range maxStreamsPerSpan {
			if err := b.open(start); err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
		}
		var calm *calmError
		if err := b.open(start); !errors.As(err, &calm) {
			t.Fatalf("stream %d: %v, want a calm error", maxStreamsPerSpan+1, err)
		}
		if err := b.open(start.Add(budgetSpan)); err != nil {
			t.Errorf("first stream of a new window: %v", err)
		}
	})
}

// FuzzFrameGuard: any byte stream read through a frameGuard reaches the
// Framer unchanged up to the guard's refusal, with no panic.
func FuzzFrameGuard(f *testing.F) {
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82}})
	fr.WriteContinuation(1, false, nil)
	fr.WriteContinuation(1, true, []byte{0x84})
	fr.WritePing(false, [8]byte{})
	fr.WriteData(1, true, []byte("x"))
	f.Add(seed.Bytes())
	f.Add([]byte{0, 0, 0, 9, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		clk := &fakeClock{t: time.Unix(1000, 0)}
		g := &frameGuard{r: bytes.NewReader(data), now: clk.now, maxBlockBytes: 64}
		var got []byte
		buf := make([]byte, 7)
		for {
			n, err := g.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if !bytes.HasPrefix(data, got) {
			t.Fatalf("the guard passed bytes that were not read")
		}
		fr := http2.NewFramer(nil, &frameGuard{r: bytes.NewReader(data), now: clk.now, maxBlockBytes: 64})
		for range 1000 {
			if _, err := fr.ReadFrame(); err != nil {
				return
			}
		}
	})
}
