package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/longhaul-proxy/longhaul/admin"
	"github.com/longhaul-proxy/longhaul/config"
)

// clearScreen moves the cursor home and clears the terminal (ANSI), before
// each redraw of status --watch.
const clearScreen = "\x1b[H\x1b[2J"

// maxStatusBytes bounds the /status answer status reads.
const maxStatusBytes = 16 << 20

func statusCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := pflag.NewFlagSet("status", pflag.ContinueOnError)
	addr := fs.String("admin", config.DefaultAdminAddress, "admin address of the running longhaul (its admin.address), host:port or http://host:port")
	watch := fs.Bool("watch", false, "redraw every --interval until interrupted")
	interval := fs.Duration("interval", time.Second, "time between redraws with --watch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *interval <= 0 {
		return fmt.Errorf("--interval %s: must be positive", *interval)
	}
	url, err := statusURL(*addr)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	if !*watch {
		st, err := fetchStatus(ctx, client, url)
		if err != nil {
			return err
		}
		printStatus(stdout, url, st)
		return nil
	}
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		st, err := fetchStatus(ctx, client, url)
		if ctx.Err() != nil {
			return nil // interrupted
		}
		fmt.Fprint(stdout, clearScreen)
		if err != nil {
			fmt.Fprintf(stdout, "%v\n(retrying every %s; Ctrl-C to stop)\n", err, *interval)
		} else {
			printStatus(stdout, url, st)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// statusURL returns the URL of /status at an admin address: host:port, or
// an http:// URL of one.
func statusURL(addr string) (string, error) {
	a := strings.TrimSuffix(strings.TrimPrefix(addr, "http://"), "/")
	if a == "" || strings.Contains(a, "/") || strings.Contains(a, "://") {
		return "", fmt.Errorf("--admin %q: want host:port (the admin.address of a running longhaul)", addr)
	}
	return "http://" + a + "/status", nil
}

func fetchStatus(ctx context.Context, client *http.Client, url string) (*admin.Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w (is longhaul running, with --admin its admin.address?)", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("reading %s: %s: %s (a longhaul older than its live page, or not longhaul?)", url, resp.Status, strings.TrimSpace(string(b)))
	}
	var st admin.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxStatusBytes)).Decode(&st); err != nil {
		return nil, fmt.Errorf("reading %s: not longhaul's status: %w", url, err)
	}
	if st.At.IsZero() {
		return nil, fmt.Errorf("reading %s: not longhaul's status: no time", url)
	}
	return &st, nil
}

// printStatus prints st as the demo prints its table: per listener and
// backend, one row per endpoint (pod, address, state, sessions and a bar),
// then the drains and the recent migrations.
func printStatus(w io.Writer, url string, st *admin.Status) {
	at := st.At
	fmt.Fprintf(w, "longhaul at %s, %s\n", strings.TrimSuffix(url, "/status"), at.Local().Format("15:04:05"))
	for _, l := range st.Listeners {
		fmt.Fprintf(w, "\nlistener %s (%s on %s)\n", l.Name, l.Protocol, l.Address)
		for _, b := range l.Backends {
			fp := b.Fingerprint
			if fp == "" {
				fp = "none yet"
			}
			fmt.Fprintf(w, "  backend %s: sessions %d, table fingerprint %s\n", b.Name, b.Sessions, fp)
			if len(b.Endpoints) == 0 {
				fmt.Fprintf(w, "    no endpoints\n")
			}
			for _, e := range b.Endpoints {
				pod := e.Pod
				if pod == "" {
					pod = "-"
				}
				mig := ""
				if e.Migrating > 0 {
					mig = fmt.Sprintf(" (%d migrating)", e.Migrating)
				}
				fmt.Fprintf(w, "    %-10s %-21s %-12s sessions %-3d %s%s\n", pod, e.Address, endpointState(e),
					e.Sessions, strings.Repeat("#", min(e.Sessions, 60)), mig)
			}
		}
	}
	var drains []string
	for _, l := range st.Listeners {
		for _, b := range l.Backends {
			for _, d := range b.Drains {
				state := "draining"
				if d.Finished != nil {
					state = "finished " + rel(*d.Finished, at)
				} else if d.Late {
					state = "draining, late"
				}
				kill := "kill time unknown"
				if d.KillTime != nil {
					kill = "kill " + rel(*d.KillTime, at)
				}
				drains = append(drains, fmt.Sprintf("  %s %s: %s; left %d of %d, asked %d (moved %d, forced %d, closed %d); deadline %s, %s, projected finish %s",
					b.Name, d.Endpoint, state, d.Left, d.AtStart, d.Asked, d.Moved, d.Forced, d.Closed,
					rel(d.Deadline, at), kill, rel(d.ProjectedFinish, at)))
			}
		}
	}
	if len(drains) > 0 {
		fmt.Fprintf(w, "\ndrains:\n%s\n", strings.Join(drains, "\n"))
	}
	if len(st.Migrations) > 0 {
		fmt.Fprintf(w, "\nrecent migrations (newest first):\n")
		for i, m := range st.Migrations {
			if i == 10 {
				fmt.Fprintf(w, "  … %d more\n", len(st.Migrations)-i)
				break
			}
			to, reason := m.To, m.Reason
			if to == "" {
				to = "?"
			}
			if reason == "" {
				reason = "?"
			}
			fmt.Fprintf(w, "  %-9s %s %-9s %-6s %s -> %s (%s, took %.2fs)\n", rel(m.Ended, at), m.Backend, reason,
				m.Outcome, m.From, to, m.Protocol, m.Took)
		}
	}
}

// endpointState names an endpoint's state in a word or two, as the demo
// does: ready, serving, not-ready, terminating, or removed (gone from the
// endpoints, sessions left), with ",outgoing" for an eligible endpoint of a
// revision being replaced.
func endpointState(e admin.StatusEndpoint) string {
	s := "not-ready"
	switch {
	case e.Gone:
		s = "removed"
	case e.Terminating:
		s = "terminating"
	case e.Ready:
		s = "ready"
	case e.Serving:
		s = "serving"
	}
	if e.Outgoing {
		s += ",outgoing"
	}
	return s
}

// rel formats t relative to at: "in 2.5s" or "1.0s ago".
func rel(t, at time.Time) string {
	d := t.Sub(at)
	if d >= 0 {
		return fmt.Sprintf("in %.1fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fs ago", -d.Seconds())
}
