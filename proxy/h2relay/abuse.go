package h2relay

import (
	"io"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Budgets that bound what one peer can make the relay do or hold. Each is
// per connection; going over one is a connection error
// ENHANCE_YOUR_CALM (GOAWAY, then close within closeFlushTimeout), never
// more than that connection.
const (
	// budgetSpan is the window over which received frames are counted.
	budgetSpan = 10 * time.Second
	// maxSettingsPerSpan, maxPingsPerSpan, maxEmptyPerSpan and
	// maxPriorityPerSpan bound frames that cost the relay work but carry
	// no request: SETTINGS and PING (each answered; one that follows a
	// request or response frame is free), DATA without payload
	// or END_STREAM and CONTINUATION without payload or END_HEADERS, and
	// PRIORITY (ignored, but parsed).
	maxSettingsPerSpan = 100
	maxPingsPerSpan    = 1000
	maxEmptyPerSpan    = 1000
	maxPriorityPerSpan = 10000
	// maxBlockFrames bounds the frames of one header block (HEADERS and
	// its CONTINUATIONs); maxBlockFactor times SETTINGS_MAX_HEADER_LIST_SIZE
	// bounds its encoded bytes (the Framer bounds the decoded size, which
	// empty or fully indexed fragments do not grow).
	maxBlockFrames = 64
	maxBlockFactor = 2
	// maxQueuedControl bounds the control frames (PING and SETTINGS
	// acknowledgements, RST_STREAM answers) queued for a peer and not yet
	// written, and maxControlOut the output they may sit on: a peer that
	// provokes answers without reading them is closed, not buffered for.
	maxQueuedControl = 10000
	maxControlOut    = 1 << 20
	// maxEarlyResets: a client that resets more than this many streams
	// before their response began, in one budgetSpan, and more than half
	// of the streams it opened in it, is attacking (rapid reset,
	// CVE-2023-44487), not cancelling. maxStreamsPerSpan bounds the
	// streams opened in one budgetSpan on one connection (20,000 a
	// second).
	maxEarlyResets    = 100
	maxStreamsPerSpan = 200000
	// heldHeaderFactor times SETTINGS_MAX_HEADER_LIST_SIZE bounds the
	// decoded header bytes a client connection's open streams hold (each
	// keeps its request header for retries): a small header block can
	// decode to a large list through the HPACK table. A stream above it is
	// refused (REFUSED_STREAM), and retried by the client later.
	heldHeaderFactor = 16
)

// headerListSize is the size of fields as SETTINGS_MAX_HEADER_LIST_SIZE
// counts it (RFC 9113 section 6.5.2): each field's name and value and 32.
func headerListSize(fields []hpack.HeaderField) int {
	n := 0
	for i := range fields {
		n += len(fields[i].Name) + len(fields[i].Value) + 32
	}
	return n
}

// streamBudget counts a client connection's streams opened and reset
// early in the current budgetSpan. Reader goroutine only.
type streamBudget struct {
	start         time.Time
	opened, early int
}

func (b *streamBudget) roll(now time.Time) {
	if now.Sub(b.start) >= budgetSpan {
		b.start, b.opened, b.early = now, 0, 0
	}
}

// open counts a new stream at now.
func (b *streamBudget) open(now time.Time) error {
	b.roll(now)
	b.opened++
	if b.opened > maxStreamsPerSpan {
		return &calmError{"too many new streams"}
	}
	return nil
}

// reset counts a stream the client reset before its response began.
func (b *streamBudget) reset(now time.Time) error {
	b.roll(now)
	b.early++
	if b.early > maxEarlyResets && 2*b.early > b.opened {
		return &calmError{"too many streams reset before their response"}
	}
	return nil
}

// calmError is a connection error ENHANCE_YOUR_CALM, with the reason sent
// as the GOAWAY's debug data.
type calmError struct{ reason string }

func (e *calmError) Error() string { return "enhance your calm: " + e.reason }

// spanCounter counts events in fixed windows of budgetSpan. Its owner is
// one goroutine (a connection's reader).
type spanCounter struct {
	start time.Time
	n     int
}

// add counts one event at now and reports whether the window holds more
// than max.
func (c *spanCounter) add(now time.Time, max int) bool {
	if now.Sub(c.start) >= budgetSpan {
		c.start, c.n = now, 0
	}
	c.n++
	return c.n > max
}

// frameGuard sits between a connection's buffered reader and its Framer:
// it sees each frame header before the Framer parses the frame, and
// refuses (with a *calmError, before the Framer sees it) a frame that goes
// over a budget: the frames and bytes of one header block, and the rate of
// frames that carry no request. The Framer reads a frame header and then
// its payload with io.ReadFull, so between two ReadFrame calls the guard
// is at a frame boundary. It belongs to the connection's reader goroutine.
type frameGuard struct {
	r   io.Reader
	now func() time.Time
	// maxBlockBytes bounds one header block's encoded bytes.
	maxBlockBytes int

	hdr    [frameHeaderLen]byte
	hn     int // bytes of hdr read so far
	remain int // payload bytes of the current frame still to pass

	// work: a frame that carries a request or response (HEADERS, or DATA
	// with payload) came since the last PING or SETTINGS counted. Those
	// that follow work are not counted: gRPC's BDP estimation sends a
	// PING (and now and then a SETTINGS) after receiving data, as often as
	// every round trip under load.
	work bool

	inBlock     bool // a header block is open (no END_HEADERS yet)
	blockFrames int
	blockBytes  int

	settings, pings, empty, priority spanCounter
}

func (g *frameGuard) Read(p []byte) (int, error) {
	if g.remain > 0 {
		if len(p) > g.remain {
			p = p[:g.remain]
		}
		n, err := g.r.Read(p)
		g.remain -= n
		return n, err
	}
	if len(p) > frameHeaderLen-g.hn {
		p = p[:frameHeaderLen-g.hn]
	}
	n, err := g.r.Read(p)
	copy(g.hdr[g.hn:], p[:n])
	g.hn += n
	if g.hn == frameHeaderLen {
		g.hn = 0
		if cerr := g.check(); cerr != nil {
			return 0, cerr
		}
	}
	return n, err
}

// check applies the budgets to the frame whose header is in hdr and sets
// remain to its payload length.
func (g *frameGuard) check() error {
	h := g.hdr
	length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	t, flags := http2.FrameType(h[3]), http2.Flags(h[4])
	g.remain = length
	switch t {
	case http2.FrameHeaders, http2.FramePushPromise:
		g.work = true
		g.inBlock = !flags.Has(http2.FlagHeadersEndHeaders)
		g.blockFrames, g.blockBytes = 1, length
	case http2.FrameContinuation:
		if !g.inBlock {
			return nil // the Framer's protocol error
		}
		g.blockFrames++
		g.blockBytes += length
		end := flags.Has(http2.FlagContinuationEndHeaders)
		g.inBlock = !end
		if g.blockFrames > maxBlockFrames {
			return &calmError{"header block of too many CONTINUATION frames"}
		}
		if g.blockBytes > g.maxBlockBytes {
			return &calmError{"header block too large"}
		}
		if length == 0 && !end && g.empty.add(g.now(), maxEmptyPerSpan) {
			return &calmError{"too many empty frames"}
		}
	case http2.FrameData:
		if length > 0 {
			g.work = true
		}
		if length == 0 && !flags.Has(http2.FlagDataEndStream) && g.empty.add(g.now(), maxEmptyPerSpan) {
			return &calmError{"too many empty frames"}
		}
	case http2.FrameSettings:
		if !flags.Has(http2.FlagSettingsAck) && !g.takeWork() && g.settings.add(g.now(), maxSettingsPerSpan) {
			return &calmError{"SETTINGS flood"}
		}
	case http2.FramePing:
		if !flags.Has(http2.FlagPingAck) && !g.takeWork() && g.pings.add(g.now(), maxPingsPerSpan) {
			return &calmError{"PING flood"}
		}
	case http2.FramePriority:
		if g.priority.add(g.now(), maxPriorityPerSpan) {
			return &calmError{"PRIORITY flood"}
		}
	}
	return nil
}

// takeWork reports whether work came since the last PING or SETTINGS,
// and starts over.
func (g *frameGuard) takeWork() bool {
	w := g.work
	g.work = false
	return w
}

// controlQueued accounts a control frame just appended to the output in
// answer to the peer, and reports whether the peer is over its budget of
// unanswered ones. Called with mu held.
func (c *frameConn) controlQueued() error {
	c.queuedControl++
	if c.queuedControl > maxQueuedControl || len(c.out) > maxControlOut {
		return &calmError{"control frames queued and not read"}
	}
	return nil
}

// answer appends a control frame with fn (unless the connection is
// closed) for a reader goroutine holding batch b, within the control
// budget.
func (c *frameConn) answer(b *batch, fn func([]byte) []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.out = fn(c.out)
	c.kickB(b)
	return c.controlQueued()
}
