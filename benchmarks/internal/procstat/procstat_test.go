package procstat

import (
	"os"
	"strings"
	"testing"
	"time"
)

// A stat line whose command holds a space and a ')'; fields 14 and 15
// (utime, stime) are 1234 and 567, field 24 (rss) is 890.
const line = "4242 (ng) inx: w) S 4241 4241 4241 0 -1 4194624 100 0 0 0 1234 567 0 0 20 0 1 0 12345 123456789 890 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"

func TestParseStat(t *testing.T) {
	s, err := ParseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{PID: 4242, PPID: 4241, UTime: 1234, STime: 567, RSSPages: 890}
	if s != want {
		t.Fatalf("ParseStat = %+v, want %+v", s, want)
	}
	if got, want := s.CPU(), 18010*time.Millisecond; got != want {
		t.Errorf("CPU() = %v, want %v", got, want)
	}
}

func TestParseStatBadInput(t *testing.T) {
	for _, in := range []string{
		"",
		"garbage",
		"12 (x",
		"x (cmd) S 1 2 3",
		"12 (cmd) S 1 2 3",
		strings.Replace(line, " 1234 ", " -5 ", 1),
		strings.Replace(line, " 4241 4241 4241", " p 4241 4241", 1),
	} {
		if _, err := ParseStat(in); err == nil {
			t.Errorf("ParseStat(%q) succeeded, want an error", in)
		}
	}
}

func TestSumWalksDescendants(t *testing.T) {
	stats := []Stat{
		{PID: 1, PPID: 0, UTime: 1000, RSSPages: 1000},
		{PID: 10, PPID: 1, UTime: 100, STime: 50, RSSPages: 10},   // root (master)
		{PID: 11, PPID: 10, UTime: 200, STime: 100, RSSPages: 20}, // worker
		{PID: 12, PPID: 10, UTime: 300, STime: 150, RSSPages: 30}, // worker
		{PID: 13, PPID: 12, UTime: 1, RSSPages: 1},                // worker's child
		{PID: 20, PPID: 1, UTime: 5000, RSSPages: 5000},           // unrelated
	}
	got, err := Sum(stats, 10, 4096)
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{Procs: 4, CPU: 901 * time.Second / TicksPerSecond, RSSBytes: 61 * 4096}
	if got != want {
		t.Fatalf("Sum = %+v, want %+v", got, want)
	}
	if _, err := Sum(stats, 99, 4096); err == nil {
		t.Error("Sum of a missing process succeeded")
	}
}

func TestTreeOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	s, err := Tree("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.Procs < 1 || s.RSSBytes <= 0 {
		t.Fatalf("Tree(self) = %+v, want at least one process and some memory", s)
	}
}
