package wsload

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type counts struct{ echoed, dup, gaps atomic.Int64 }

func (c *counts) Echoed() { c.echoed.Add(1) }
func (c *counts) OutOfOrder(n, acked int) {
	if n <= acked {
		c.dup.Add(1)
	} else {
		c.gaps.Add(1)
	}
}

// echo serves WebSocket echo; skip, if set, drops message "skip" once and
// dup echoes message "dup" twice.
func echo(t *testing.T, skip, dup string) string {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, m, err := c.ReadMessage()
			if err != nil {
				return
			}
			if string(m) == skip {
				skip = ""
				continue
			}
			c.WriteMessage(mt, m)
			if string(m) == dup {
				c.WriteMessage(mt, m)
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func run(t *testing.T, url string, s *Seq, rep Reporter, d time.Duration) error {
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Run(ctx, c, 5*time.Millisecond, time.Second, rep)
}

func TestSeqInOrderAcrossConnections(t *testing.T) {
	url := echo(t, "", "")
	var s Seq
	var c counts
	if err := run(t, url, &s, &c, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	first := s.Acked
	if first < Window || c.echoed.Load() != int64(first) {
		t.Fatalf("acked %d, echoed %d", first, c.echoed.Load())
	}
	// A second connection goes on from where the first left.
	if err := run(t, url, &s, &c, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if s.Acked <= first || c.dup.Load()+c.gaps.Load() != 0 || c.echoed.Load() != int64(s.Acked) {
		t.Fatalf("acked %d after %d, %d dup %d gaps", s.Acked, first, c.dup.Load(), c.gaps.Load())
	}
}

func TestSeqReportsDuplicatesAndGaps(t *testing.T) {
	var c counts
	var s Seq
	run(t, echo(t, "", "3"), &s, &c, 100*time.Millisecond)
	if c.dup.Load() != 1 || c.gaps.Load() != 0 {
		t.Errorf("duplicate echo: %d dup %d gaps, want 1 0", c.dup.Load(), c.gaps.Load())
	}
	var c2 counts
	var s2 Seq
	err := run(t, echo(t, "3", ""), &s2, &c2, 2*time.Second)
	if c2.gaps.Load() != 1 {
		t.Errorf("a dropped message: %d gaps, want 1 (err %v)", c2.gaps.Load(), err)
	}
}
