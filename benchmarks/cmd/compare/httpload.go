package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// httpResult is what the HTTP/1.1 generator saw.
type httpResult struct {
	ok, failed int
	took       time.Duration
}

// httpLoad sends n GET requests over conns keep-alive connections, each
// connection one request at a time (closed loop: a saturation figure).
func httpLoad(ctx context.Context, addr string, n, conns int) (httpResult, error) {
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: longhaul-bench\r\n\r\n")
	var (
		next     atomic.Int64
		ok, fail atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range conns {
		wg.Go(func() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceIP(w)}, Timeout: 5 * time.Second}
			for next.Load() < int64(n) && ctx.Err() == nil {
				done, err := httpConn(ctx, &d, addr, req, &next, int64(n))
				ok.Add(int64(done))
				if err != nil {
					fail.Add(1)
				}
			}
		})
	}
	wg.Wait()
	r := httpResult{ok: int(ok.Load()), failed: int(fail.Load()), took: time.Since(start)}
	if err := ctx.Err(); err != nil {
		return r, fmt.Errorf("http: stopped after %d requests: %w", r.ok, err)
	}
	return r, nil
}

// httpConn runs requests on one connection until n are claimed or an error.
func httpConn(ctx context.Context, d *net.Dialer, addr string, req []byte, next *atomic.Int64, n int64) (int, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	br := bufio.NewReaderSize(c, 16<<10)
	done := 0
	for next.Add(1) <= n {
		if _, err := c.Write(req); err != nil {
			return done, err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return done, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return done, err
		}
		if resp.StatusCode != http.StatusOK {
			return done, fmt.Errorf("status %d", resp.StatusCode)
		}
		done++
		if resp.Close {
			return done, nil // the proxy closed keep-alive; reconnect
		}
	}
	return done, nil
}

// ghzReport is the part of ghz's JSON output the comparison uses.
type ghzReport struct {
	Count   int64   `json:"count"`
	Total   int64   `json:"total"` // ns
	RPS     float64 `json:"rps"`
	Average int64   `json:"average"`
	Latency []struct {
		Percentage int   `json:"percentage"`
		Latency    int64 `json:"latency"` // ns
	} `json:"latencyDistribution"`
	StatusCodes map[string]int `json:"statusCodeDistribution"`
	Errors      map[string]int `json:"errorDistribution"`
}

// percentile returns ghz's latency at percentage p, or an error if ghz
// did not report it.
func (r ghzReport) percentile(p int) (time.Duration, error) {
	for _, l := range r.Latency {
		if l.Percentage == p {
			return time.Duration(l.Latency), nil
		}
	}
	return 0, fmt.Errorf("ghz reported no p%d", p)
}

// failures counts calls that did not end OK.
func (r ghzReport) failures() int {
	n := 0
	for code, c := range r.StatusCodes {
		if code != "OK" {
			n += c
		}
	}
	if n == 0 {
		for _, c := range r.Errors {
			n += c
		}
	}
	return n
}

func parseGhz(b []byte) (ghzReport, error) {
	var r ghzReport
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("ghz output: %w", err)
	}
	if r.Count == 0 {
		return r, fmt.Errorf("ghz output: no calls counted")
	}
	return r, nil
}

// ghzArgs builds ghz's command line for grpc.health.v1.Health/Check over
// one HTTP/2 connection; rps 0 means as fast as conc workers go. ghz's
// -z would override -n, so time is bounded by the caller's context instead.
func ghzArgs(addr string, n, conc, rps int) []string {
	args := []string{"--insecure", "--call", "grpc.health.v1.Health/Check", "-d", "{}",
		"--connections", "1", "-c", strconv.Itoa(conc), "-n", strconv.Itoa(n),
		"--timeout", "10s", "-O", "json"}
	if rps > 0 {
		args = append(args, "--rps", strconv.Itoa(rps))
	}
	return append(args, addr)
}

func runGhz(ctx context.Context, bin string, args []string) (ghzReport, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return ghzReport{}, fmt.Errorf("ghz: %w: %s", err, bytes.TrimSpace(errb.Bytes()))
	}
	return parseGhz(out.Bytes())
}
