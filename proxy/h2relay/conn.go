package h2relay

import (
	"bufio"
	"bytes"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	// outDataLimit bounds the output a connection holds before DATA waits
	// (in its stream, flow-controlled): a peer that does not read stops
	// taking data, and its sender is not credited.
	outDataLimit = 256 << 10
	// outHardLimit bounds output of any kind (header blocks of many
	// streams for a peer that does not read): beyond it the connection is
	// closed. Control frames have a tighter budget (maxControlOut).
	outHardLimit = 4 << 20
	// keepSpare is the largest output buffer kept for reuse after a write.
	keepSpare = 256 << 10
	// closeFlushTimeout bounds the last write before a close.
	closeFlushTimeout = time.Second
)

// frameConn is the part common to client and upstream connections: the
// socket, the frame reader, and the output side with its writer goroutine.
//
// The reader goroutine alone uses fr and br. Everything below mu is
// protected by it; the writer goroutine only swaps out and writes it.
type frameConn struct {
	nc    net.Conn
	br    *bufio.Reader
	guard frameGuard // between br and fr
	fr    *http2.Framer

	mu   sync.Mutex
	cond sync.Cond // the writer waits on it for output
	out  []byte    // frames queued, not yet taken by the writer
	// queuedControl counts the control frames answered to the peer since
	// the output was last taken for a write (see controlQueued).
	queuedControl int
	spare         []byte // the buffer the writer last wrote, for reuse
	waiting       bool   // the writer waits on cond
	// closed: nothing more is written; closeAfter: close once out is
	// written.
	closed, closeAfter bool
	// writing: a goroutine (the writer, or a reader flushing its batch)
	// is writing to nc; nobody else may.
	writing bool
	// raw, when the connection is plain TCP, lets a reader goroutine write
	// its batch without blocking (see batch); nil sends all output
	// through the writer goroutine.
	raw       syscall.RawConn
	rw        rawWriter      // with raw, used by whoever set writing
	enc       *hpack.Encoder // writes into hbuf
	hbuf      bytes.Buffer
	streams   map[uint32]*stream
	active    int       // streams open or reserved
	idleSince time.Time // when active last became 0
	// Windows: sendWindow is what the peer lets us send on the
	// connection; recvWindow what we still let it send, recvUnacked what
	// it sent and we forwarded without crediting it yet.
	sendWindow     int64
	recvWindow     int64
	recvUnacked    int64
	connWindow     int32 // our connection window target
	streamWindow   int32 // the per-stream window we advertise
	peerInitWindow int32 // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxFrame   int
	// blocked are stream directions whose DATA waits for connection-level
	// room here (sendWindow or output space).
	blocked []blockedPipe

	// account, if set, is told of every change of the bytes the
	// connection holds (see recount); counted is len(out) as last told.
	account func(n int64)
	counted int

	// writeTimeout bounds one blocking write of the writer goroutine: a
	// peer that takes no byte for that long (it stopped reading its
	// socket) loses the connection. Zero means no bound.
	writeTimeout time.Duration

	writerDone chan struct{}
}

type blockedPipe struct {
	s *stream
	p *pipe
}

func (c *frameConn) init(nc net.Conn, now func() time.Time, maxHeaderList uint32, connWindow, streamWindow int32) {
	c.nc = nc
	c.br = bufio.NewReaderSize(nc, 16<<10)
	c.guard = frameGuard{r: c.br, now: now, maxBlockBytes: maxBlockFactor * int(maxHeaderList)}
	c.fr = http2.NewFramer(nil, &c.guard)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = maxHeaderList
	c.fr.SetReuseFrames()
	c.cond.L = &c.mu
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.streams = make(map[uint32]*stream)
	c.sendWindow = initialWindow
	c.recvWindow = initialWindow
	c.connWindow = connWindow
	c.streamWindow = streamWindow
	c.peerInitWindow = initialWindow
	c.peerMaxFrame = 16 << 10
	c.idleSince = time.Now()
	c.writerDone = make(chan struct{})
	if tc, ok := nc.(interface {
		SyscallConn() (syscall.RawConn, error)
	}); ok && IsPlainTCP(nc) {
		c.raw, _ = tc.SyscallConn()
	}
}

// IsPlainTCP reports whether bytes written to nc's descriptor are what the
// peer reads: a *net.TCPConn, or a wrapper of one whose PlainTCP method
// says so (it must then also expose the socket with SyscallConn).
func IsPlainTCP(nc net.Conn) bool {
	switch c := nc.(type) {
	case *net.TCPConn:
		return true
	case interface{ PlainTCP() bool }:
		return c.PlainTCP()
	}
	return false
}

// kick wakes the writer if it waits. Called with mu held.
func (c *frameConn) kick() { c.kickB(nil) }

// kickB is kick for output produced by a reader goroutine holding batch b:
// the connection joins b, which writes it when the reader has read all it
// had, instead of waking the writer now. b may be nil.
func (c *frameConn) kickB(b *batch) {
	c.recount()
	if b != nil && c.raw != nil {
		b.add(c)
	} else if c.waiting {
		c.cond.Signal()
	}
	if len(c.out) > outHardLimit {
		c.closed = true
		c.cond.Signal()
		c.nc.Close()
	}
}

// recount tells account of the change of len(out) since it was last told.
// Called with mu held.
func (c *frameConn) recount() {
	if c.account != nil && len(c.out) != c.counted {
		c.account(int64(len(c.out) - c.counted))
		c.counted = len(c.out)
	}
}

// dataRoom is how many DATA bytes the output takes now. Called with mu
// held.
func (c *frameConn) dataRoom() int {
	return outDataLimit - len(c.out)
}

// writeLoop is the writer goroutine: it writes whatever was queued, in one
// write, and then runs the streams that waited for room.
func (c *frameConn) writeLoop() {
	defer close(c.writerDone)
	c.mu.Lock()
	for {
		for (len(c.out) == 0 || c.writing) && !c.closed {
			if c.closeAfter {
				c.closed = true
				break
			}
			c.waiting = true
			c.cond.Wait()
			c.waiting = false
		}
		if c.closed {
			c.out = nil
			c.recount()
			c.mu.Unlock()
			c.nc.Close()
			return
		}
		buf := c.out
		c.out = c.spare[:0]
		c.spare = nil
		c.recount()
		c.queuedControl = 0
		c.writing = true
		bounded := false
		if c.closeAfter {
			c.nc.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		} else if c.writeTimeout > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
			bounded = true
		}
		c.mu.Unlock()
		_, err := c.nc.Write(buf)
		c.mu.Lock()
		c.writing = false
		if bounded && err == nil && !c.closeAfter {
			// The deadline bounded this write only: left in place it would
			// fail every later write (the readers' inline flushes too) once
			// it passed, however healthy the connection. A close pending
			// (closeAfter) keeps the deadline goAway set under mu.
			c.nc.SetWriteDeadline(time.Time{})
		}
		if cap(buf) <= keepSpare {
			c.spare = buf[:0]
		}
		if err != nil {
			c.closed = true
			continue
		}
		if len(c.blocked) > 0 && c.sendWindow > 0 {
			waiting := c.blocked
			c.blocked = nil
			c.mu.Unlock()
			runBlocked(waiting)
			c.mu.Lock()
		}
	}
}

// runBlocked lets stream directions that waited for connection-level room
// send. Called with no lock held.
func runBlocked(list []blockedPipe) {
	for _, b := range list {
		b.s.mu.Lock()
		b.p.blocked = false
		if !b.s.finished {
			b.s.pump(b.p, nil)
		}
		b.s.mu.Unlock()
	}
}

// abort closes the connection at once, dropping queued output.
func (c *frameConn) abort() {
	c.mu.Lock()
	c.closed = true
	c.cond.Signal()
	c.mu.Unlock()
	c.nc.Close()
}

// goAway queues a GOAWAY and closes the connection once it is written.
func (c *frameConn) goAway(last uint32, code http2.ErrCode, debug string) {
	c.mu.Lock()
	if !c.closed {
		c.out = appendGoAway(c.out, last, code, debug)
		c.closeAfter = true
		c.cond.Signal()
		// Bound the write under way too, if the peer does not read.
		c.nc.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
	}
	c.mu.Unlock()
}

// encodeFields queues fields (without hop-by-hop ones) as a header block
// in HEADERS and CONTINUATION frames. Called with mu held: blocks leave in
// the order they were encoded, as HPACK requires.
func (c *frameConn) encodeFields(b *batch, id uint32, end bool, fields []hpack.HeaderField) {
	c.hbuf.Reset()
	writeFields(c.enc, fields)
	c.out = appendHeaderBlock(c.out, id, c.hbuf.Bytes(), end, c.peerMaxFrame)
	c.kickB(b)
}

// encodeRequest queues the request header of s toward its endpoint. Called
// with mu held.
func (c *frameConn) encodeRequest(b *batch, id uint32, end bool, s *stream) {
	c.hbuf.Reset()
	writeRequest(c.enc, s)
	c.out = appendHeaderBlock(c.out, id, c.hbuf.Bytes(), end, c.peerMaxFrame)
	c.kickB(b)
}

// takeRecv accounts n bytes of DATA received on the connection; false
// means the peer overran its window.
func (c *frameConn) takeRecv(n int) bool {
	c.mu.Lock()
	c.recvWindow -= int64(n)
	ok := c.recvWindow >= 0
	c.mu.Unlock()
	return ok
}

// creditLocked returns n forwarded (or discarded) bytes to the peer's
// connection window, with a WINDOW_UPDATE once enough accumulated. Called
// with mu held.
func (c *frameConn) creditLocked(n int, b *batch) {
	c.recvUnacked += int64(n)
	target := int64(c.connWindow)
	if c.recvUnacked >= target/4 || c.recvWindow < target/2 {
		inc := c.recvUnacked
		if c.recvWindow+inc < target {
			inc = target - c.recvWindow
		}
		c.recvWindow += inc
		c.recvUnacked = 0
		if !c.closed {
			c.out = appendWindowUpdate(c.out, 0, uint32(inc))
			c.kickB(b)
		}
	}
}

// credit is creditLocked for callers without mu.
func (c *frameConn) credit(n int) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	c.creditLocked(n, nil)
	c.mu.Unlock()
}

// applySettings applies a peer's SETTINGS (not an ACK) and acknowledges
// them. It returns the change of the peer's initial stream window, which
// the caller applies to its streams, and the peer's
// SETTINGS_MAX_CONCURRENT_STREAMS if sent.
func (c *frameConn) applySettings(f *http2.SettingsFrame, b *batch) (delta int32, maxStreams uint32, hasMax bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err = f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta += int32(s.Val) - c.peerInitWindow
			c.peerInitWindow = int32(s.Val)
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = int(s.Val)
		case http2.SettingHeaderTableSize:
			c.enc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingMaxConcurrentStreams:
			maxStreams, hasMax = s.Val, true
		}
		return nil
	})
	if err != nil {
		return 0, 0, false, err
	}
	if !c.closed {
		c.out = appendSettingsAck(c.out)
		c.kickB(b)
		if err := c.controlQueued(); err != nil {
			return 0, 0, false, err
		}
	}
	return delta, maxStreams, hasMax, nil
}

// addSendWindow applies a connection-level WINDOW_UPDATE and runs the
// streams that waited for it. false: the window overflowed.
func (c *frameConn) addSendWindow(inc uint32) bool {
	c.mu.Lock()
	c.sendWindow += int64(inc)
	if c.sendWindow > maxWindow {
		c.mu.Unlock()
		return false
	}
	waiting := c.blocked
	c.blocked = nil
	c.mu.Unlock()
	runBlocked(waiting)
	return true
}

// snapshot returns the streams of the connection, for changes that apply
// to each (taken without mu held).
func (c *frameConn) snapshot() []*stream {
	c.mu.Lock()
	list := make([]*stream, 0, len(c.streams))
	for _, s := range c.streams {
		list = append(list, s)
	}
	c.mu.Unlock()
	return list
}

// lookup returns the stream with the given id on this connection, or nil.
func (c *frameConn) lookup(id uint32) *stream {
	c.mu.Lock()
	s := c.streams[id]
	c.mu.Unlock()
	return s
}
