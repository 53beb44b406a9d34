// Package wsload drives WebSocket clients that carry sequence numbers
// through a proxy to an echo server, for the rollout tests and the
// benchmark harness. Each message is the next number; the server echoes it;
// the client checks that the echoes it gets are exactly 1..N, across the
// reconnects that a drain causes (it resends what was not echoed).
package wsload

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Window is how many messages a client has in flight.
const Window = 2

// Reporter receives what sessions see. Its methods are called from each
// session's goroutine and must be safe for concurrent use.
type Reporter interface {
	// Echoed counts one message echoed in order.
	Echoed()
	// OutOfOrder reports echo n arriving after acked, in order: a
	// duplicate (n <= acked) or a gap.
	OutOfOrder(n, acked int)
}

// Counter is a Reporter that counts into the caller's counters: echoes in
// order into Msgs, duplicates into Dup, numbers skipped into Lost; each
// out-of-order echo is also passed to Sample (if set), as Tally.Sample
// takes it.
type Counter struct {
	Msgs, Lost, Dup *atomic.Int64
	Sample          func(kind, format string, args ...any)
}

// Echoed implements Reporter.
func (c Counter) Echoed() { c.Msgs.Add(1) }

// OutOfOrder implements Reporter.
func (c Counter) OutOfOrder(n, acked int) {
	if n <= acked {
		c.Dup.Add(1)
	} else {
		c.Lost.Add(int64(n - acked - 1))
	}
	if c.Sample != nil {
		c.Sample("ws sequence", "echo %d after %d", n, acked)
	}
}

// Seq is one client's sequence across its connections. The zero value
// starts at 1.
type Seq struct {
	// Acked is the last number echoed in order.
	Acked int
	sent  int // the last number sent on the current connection
}

// Unacked is how many messages the last connection sent that were not
// echoed before it ended: the next connection sends them again.
func (s *Seq) Unacked() int { return max(s.sent-s.Acked, 0) }

// Sleep sleeps d or until ctx ends; it reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Jitter returns a duration uniformly in [d/2, 3d/2).
func Jitter(d time.Duration) time.Duration { return d/2 + rand.N(d) }

// Run runs one connection until it fails (the error: a close, a read or
// write error, no echo within noEcho) or ctx ends (nil). Every interval
// (jittered) it sends the next Window messages once the previous ones are
// echoed. A reader goroutine reads all the time, as a real client does, so
// that a close frame is answered at once; it has ended when Run returns.
func (s *Seq) Run(ctx context.Context, c *websocket.Conn, interval, noEcho time.Duration, rep Reporter) error {
	type read struct {
		msg []byte
		err error
	}
	in := make(chan read, Window+1)
	stopRead := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			_, msg, err := c.ReadMessage()
			select {
			case in <- read{msg, err}:
			case <-stopRead:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		close(stopRead)
		_ = c.SetReadDeadline(time.Now()) // unblocks the reader
		<-readDone
	}()
	s.sent = s.Acked
	send := func() {
		for k := 1; k <= Window; k++ {
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if c.WriteMessage(websocket.TextMessage, []byte(strconv.Itoa(s.Acked+k))) != nil {
				return // the reader tells why
			}
			s.sent = s.Acked + k
		}
	}
	send()
	tick := time.NewTimer(Jitter(interval))
	defer tick.Stop()
	waitSince := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			tick.Reset(Jitter(interval))
			if s.Acked >= s.sent {
				send()
				waitSince = time.Now()
			} else if time.Since(waitSince) > noEcho {
				return fmt.Errorf("no echo for %v", time.Since(waitSince).Round(time.Millisecond))
			}
		case r := <-in:
			if r.err != nil {
				return r.err
			}
			n, err := strconv.Atoi(string(r.msg))
			if err != nil {
				return fmt.Errorf("bad echo %q", r.msg)
			}
			if n != s.Acked+1 {
				rep.OutOfOrder(n, s.Acked)
				if n <= s.Acked {
					continue
				}
			}
			s.Acked = n
			rep.Echoed()
		}
	}
}

// Echo sends every message it reads on c back until a read or a write
// fails, calling each (if not nil) after every message echoed. It is the
// echo server's side of a session.
func Echo(c *websocket.Conn, each func()) {
	for {
		mt, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(mt, msg); err != nil {
			return
		}
		if each != nil {
			each()
		}
	}
}
