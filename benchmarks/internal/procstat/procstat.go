// Package procstat reads the CPU time and resident memory of a process tree
// from /proc, for measuring a proxy's cost per unit of work.
//
// CPU time is utime+stime (fields 14 and 15 of /proc/PID/stat, in clock
// ticks of 1/100 s on Linux); memory is the resident set (field 24, in
// pages). A proxy with worker processes (NGINX) is measured as the sum over
// its root process and every descendant.
package procstat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// TicksPerSecond is USER_HZ, which is 100 on every Linux architecture Go
// supports.
const TicksPerSecond = 100

// Stat is what this package uses of one /proc/PID/stat line.
type Stat struct {
	PID      int
	PPID     int
	UTime    uint64 // clock ticks in user mode
	STime    uint64 // clock ticks in kernel mode
	RSSPages int64
}

// CPU is the process's user+system time.
func (s Stat) CPU() time.Duration {
	return time.Duration(s.UTime+s.STime) * time.Second / TicksPerSecond
}

// ParseStat parses the content of /proc/PID/stat. The command name (field 2)
// is in parentheses and may itself hold spaces and parentheses, so fields are
// counted from the last ')'.
func ParseStat(line string) (Stat, error) {
	open := strings.IndexByte(line, '(')
	closing := strings.LastIndexByte(line, ')')
	if open < 1 || closing < open {
		return Stat{}, fmt.Errorf("procstat: malformed stat line %q", truncate(line))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return Stat{}, fmt.Errorf("procstat: pid: %w", err)
	}
	// rest[0] is field 3 (state); field N is rest[N-3].
	rest := strings.Fields(line[closing+1:])
	if len(rest) < 22 {
		return Stat{}, fmt.Errorf("procstat: stat line has %d fields after the command, want at least 22", len(rest))
	}
	s := Stat{PID: pid}
	if s.PPID, err = strconv.Atoi(rest[4-3]); err != nil {
		return Stat{}, fmt.Errorf("procstat: ppid (field 4): %w", err)
	}
	if s.UTime, err = strconv.ParseUint(rest[14-3], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("procstat: utime (field 14): %w", err)
	}
	if s.STime, err = strconv.ParseUint(rest[15-3], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("procstat: stime (field 15): %w", err)
	}
	if s.RSSPages, err = strconv.ParseInt(rest[24-3], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("procstat: rss (field 24): %w", err)
	}
	return s, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Sample is the summed figures of a process tree at one moment.
type Sample struct {
	Procs    int
	CPU      time.Duration
	RSSBytes int64
}

// Tree sums CPU and RSS over root and its descendants, read from the proc
// file system mounted at procDir (normally "/proc").
func Tree(procDir string, root int) (Sample, error) {
	stats, err := readAll(procDir)
	if err != nil {
		return Sample{}, err
	}
	return Sum(stats, root, os.Getpagesize())
}

// Sum adds up the processes of stats that are root or descend from it.
func Sum(stats []Stat, root, pageSize int) (Sample, error) {
	children := make(map[int][]int, len(stats))
	byPID := make(map[int]Stat, len(stats))
	for _, s := range stats {
		children[s.PPID] = append(children[s.PPID], s.PID)
		byPID[s.PID] = s
	}
	if _, ok := byPID[root]; !ok {
		return Sample{}, fmt.Errorf("procstat: process %d not found", root)
	}
	var out Sample
	seen := map[int]bool{}
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		s := byPID[pid]
		out.Procs++
		out.CPU += s.CPU()
		out.RSSBytes += s.RSSPages * int64(pageSize)
		queue = append(queue, children[pid]...)
	}
	return out, nil
}

func readAll(procDir string) ([]Stat, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	var stats []Stat
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "stat"))
		if errors.Is(err, os.ErrNotExist) {
			continue // the process ended while we listed
		}
		if err != nil {
			return nil, fmt.Errorf("procstat: %w", err)
		}
		s, err := ParseStat(string(b))
		if err != nil {
			return nil, err
		}
		stats = append(stats, s)
	}
	return stats, nil
}
