package main

// The WebSocket clients of the rollout-scale workload run in child
// processes of the harness, so that no process holds more sockets than the
// open-files limit allows (the harness keeps the pods' side of every
// connection). A child is this same program started with the hidden first
// argument scaleClientsRole.
//
// The exchange, one JSON object a line: the parent writes the child's
// scaleClientSpec on its stdin, then "stop" (or closes stdin) to end the
// load. The child writes a status line every statusEvery and, once every
// client has ended, its result line, then exits; its log goes to stderr.
// The child also ends its load at the spec's Limit, and is killed if the
// parent dies.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// scaleClientsRole, as the first argument, makes the program a child that
// runs WebSocket clients (runScaleClients) instead of the harness.
const scaleClientsRole = "rollout-scale-clients"

// scaleClientSpec is what one child runs: Clients sequence-numbered
// WebSocket clients (wsSeqClient) against URL, ids FirstID and up (the
// source address of id i is sourceIP(i)), at most RampConc first dials at
// a time, for at most Limit.
type scaleClientSpec struct {
	URL      string        `json:"url"`
	Clients  int           `json:"clients"`
	FirstID  int           `json:"firstID"`
	Interval time.Duration `json:"interval"`
	RampConc int           `json:"rampConc"`
	Limit    time.Duration `json:"limit"`
	// StatusEvery is the period of the status lines.
	StatusEvery time.Duration `json:"statusEvery"`
}

func (s scaleClientSpec) validate() error {
	switch {
	case !strings.HasPrefix(s.URL, "ws://"):
		return fmt.Errorf("url %q is not ws://", s.URL)
	case s.Clients <= 0 || s.Interval <= 0 || s.RampConc <= 0 || s.Limit <= 0 || s.StatusEvery <= 0:
		return fmt.Errorf("clients %d, interval %v, rampConc %d, limit %v and statusEvery %v must all be positive",
			s.Clients, s.Interval, s.RampConc, s.Limit, s.StatusEvery)
	}
	return nil
}

// scaleClientLine is one line a child writes: a status (Result nil) or,
// last, its result.
type scaleClientLine struct {
	// Up is the connections open now; Opened those opened so far (first
	// ones and reconnects); FirstDials the clients whose first dial ended;
	// Echoed the messages echoed so far.
	Up         int64              `json:"up"`
	Opened     int64              `json:"opened"`
	FirstDials int64              `json:"firstDials"`
	Echoed     int64              `json:"echoed"`
	Result     *scaleClientResult `json:"result,omitempty"`
}

// scaleClientResult is a child's figures at the end of its load.
type scaleClientResult struct {
	Clients                                    int
	UpPeak, Opened, Sent, Echoed, Lost, SeqErr int64
	DialFail                                   int64
	// Closes counts the ends of connections by closeKind.
	Closes [3]int64
	// Reconnects is the reconnects per wall-clock second (Unix seconds),
	// to be summed with the other children's before taking the peak.
	Reconnects map[int64]int
	// Errors is the first errors by kind (rolloutStats.Errors).
	Errors string
}

// scaleResultOf reads st's WebSocket figures.
func scaleResultOf(clients int, st *rolloutStats) *scaleClientResult {
	r := &scaleClientResult{Clients: clients,
		UpPeak: st.wsUpPeak.Load(), Opened: st.wsOpened.Load(), Sent: st.wsSent.Load(), Echoed: st.wsEchoed.Load(),
		Lost: st.wsLost.Load(), SeqErr: st.wsSeqErr.Load(), DialFail: st.wsDialFail.Load(),
		Reconnects: st.ReconnectBuckets(time.Second), Errors: st.Errors()}
	for k := range r.Closes {
		r.Closes[k] = st.wsCloses[k].Load()
	}
	return r
}

// runScaleClients is a child's whole life: it reads its spec from in, runs
// the clients and writes its lines to out until "stop", the end of in or
// the spec's Limit, then the result once every client has ended.
func runScaleClients(in io.Reader, out io.Writer) error {
	br := bufio.NewReader(in)
	line, err := br.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return fmt.Errorf("read the spec: %w", err)
	}
	var spec scaleClientSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("parse the spec: %w", err)
	}
	if err := spec.validate(); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), spec.Limit)
	defer cancel()
	go func() { // "stop" or the end of in ends the load
		for {
			l, err := br.ReadString('\n')
			if strings.TrimSpace(l) == "stop" || err != nil {
				cancel()
				return
			}
		}
	}()
	st := new(rolloutStats)
	var firstDials atomic.Int64
	sem := make(chan struct{}, spec.RampConc)
	var wg sync.WaitGroup
	for i := range spec.Clients {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			released := false
			release := func() {
				if !released {
					released = true
					firstDials.Add(1)
					<-sem
				}
			}
			defer release() // if it ended before dialling
			wsSeqClient(ctx, spec.URL, spec.FirstID+i, spec.Interval, st, release)
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	enc := json.NewEncoder(out)
	status := func() scaleClientLine {
		return scaleClientLine{Up: st.wsUp.Load(), Opened: st.wsOpened.Load(), FirstDials: firstDials.Load(), Echoed: st.wsEchoed.Load()}
	}
	tick := time.NewTicker(spec.StatusEvery)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			if err := enc.Encode(status()); err != nil {
				cancel()
				<-done
				return fmt.Errorf("write a status: %w", err)
			}
		}
	}
	<-done // bounded: every client returns once ctx has ended (dials and close frames have deadlines)
	last := status()
	last.Result = scaleResultOf(spec.Clients, st)
	if err := enc.Encode(last); err != nil {
		return fmt.Errorf("write the result: %w", err)
	}
	return nil
}

// scaleClientsMain is main for the child role.
func scaleClientsMain() {
	if _, err := raiseNoFile(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: warning: %v\n", scaleClientsRole, err)
	}
	if err := runScaleClients(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", scaleClientsRole, err)
		os.Exit(1)
	}
}

// scaleChild is the parent's side of one child.
type scaleChild struct {
	name string
	cmd  *exec.Cmd
	// stdin takes "stop"; closing it ends the load too.
	stdin io.WriteCloser
	// The child's last status.
	up, opened, firstDials, echoed atomic.Int64
	// done gets, once, the child's result or why there is none, after the
	// child has exited.
	done    chan scaleChildEnd
	logPath string
}

type scaleChildEnd struct {
	res *scaleClientResult
	err error
}

// startScaleChild starts argv (with env added) as a child and sends it
// spec; its stderr goes to logPath.
func startScaleChild(name string, argv, env []string, spec scaleClientSpec, logPath string) (*scaleChild, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: spec: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", name, argv[0], err)
	}
	c := &scaleChild{name: name, cmd: cmd, stdin: stdin, done: make(chan scaleChildEnd, 1), logPath: logPath}
	go func() {
		res, rerr := c.read(stdout)
		werr := cmd.Wait() // after every read, as os/exec wants
		switch {
		case rerr != nil:
		case werr != nil:
			rerr = fmt.Errorf("exited: %w", werr)
		case res == nil:
			rerr = errors.New("exited without a result")
		}
		if rerr != nil {
			rerr = fmt.Errorf("%s: %w%s", name, rerr, logTail(logPath))
		}
		c.done <- scaleChildEnd{res, rerr}
	}()
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		c.kill()
		return nil, fmt.Errorf("%s: send the spec: %w", name, err)
	}
	return c, nil
}

// read decodes the child's lines until the end of r: each status into c,
// and the result. Lines that are not JSON objects are skipped (a test
// binary's own output).
func (c *scaleChild) read(r io.Reader) (*scaleClientResult, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var res *scaleClientResult
	for sc.Scan() {
		b := sc.Bytes()
		if len(b) == 0 || b[0] != '{' {
			continue
		}
		var l scaleClientLine
		if err := json.Unmarshal(b, &l); err != nil {
			return nil, fmt.Errorf("bad line %.80q: %w", b, err)
		}
		c.up.Store(l.Up)
		c.opened.Store(l.Opened)
		c.firstDials.Store(l.FirstDials)
		c.echoed.Store(l.Echoed)
		if l.Result != nil {
			res = l.Result
		}
	}
	_, _ = io.Copy(io.Discard, r) // after a scan error, so that the child is not blocked writing
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return res, nil
}

// exited reports the child's end if it has ended already.
func (c *scaleChild) exited() (scaleChildEnd, bool) {
	select {
	case e := <-c.done:
		c.done <- e
		return e, true
	default:
		return scaleChildEnd{}, false
	}
}

// stop ends the child's load and returns its result; after limit the
// child is killed.
func (c *scaleChild) stop(limit time.Duration) (*scaleClientResult, error) {
	_, _ = io.WriteString(c.stdin, "stop\n")
	c.stdin.Close()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case e := <-c.done:
		c.done <- e
		return e.res, e.err
	case <-t.C:
		c.kill()
		return nil, fmt.Errorf("%s: no result %v after stop: killed%s", c.name, limit, logTail(c.logPath))
	}
}

// kill ends the child at once and waits for it.
func (c *scaleChild) kill() {
	_ = c.cmd.Process.Kill()
	c.stdin.Close()
	e := <-c.done
	c.done <- e
}

// logTail is the end of a log file, for an error message; "" if empty.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 1000 {
		s = "..." + s[len(s)-1000:]
	}
	return "\n" + s
}
