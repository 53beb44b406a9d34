package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReplaceSection(t *testing.T) {
	sec := "## Soak\n\nnew figures\n"
	for _, c := range []struct{ name, doc, want string }{
		{"empty", "", sec},
		{"appended", "# Results\n\n## TCP\n\nold\n", "# Results\n\n## TCP\n\nold\n\n" + sec},
		{"replaced in the middle", "# R\n\n## Soak\n\nold figures\nmore\n\n## TCP\n\nkept\n",
			"# R\n\n" + sec + "\n## TCP\n\nkept\n"},
		{"replaced at the end", "# R\n\n## TCP\n\nkept\n\n## Soak\n\nold\n", "# R\n\n## TCP\n\nkept\n\n" + sec},
		{"a level-3 heading stays inside", "## Soak\n\nold\n### detail\nold\n## Next\n", sec + "\n## Next\n"},
		{"a longer heading is another section", "## Soak notes\n\nkept\n", "## Soak notes\n\nkept\n\n" + sec},
	} {
		if got := replaceSection(c.doc, "## Soak", sec); got != c.want {
			t.Errorf("%s:\ngot  %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestUpdateSectionKeepsTheRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	os.WriteFile(path, []byte("# Results\n\n## Soak\n\nold\n\n## TCP\n\nkept\n"), 0o644)
	if err := updateSection(path, "## Soak\n\nnew\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if want := "# Results\n\n## Soak\n\nnew\n\n## TCP\n\nkept\n"; string(b) != want {
		t.Errorf("got %q, want %q", b, want)
	}
}

func TestGaugeValue(t *testing.T) {
	text := "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines_extra 3\ngo_goroutines 42\ngo_threads 7\n"
	if v, err := gaugeValue(strings.NewReader(text), "go_goroutines"); err != nil || v != 42 {
		t.Errorf("go_goroutines = %v, %v; want 42", v, err)
	}
	if _, err := gaugeValue(strings.NewReader(text), "go_missing"); err == nil {
		t.Error("a missing series: no error")
	}
	if _, err := gaugeValue(strings.NewReader("go_goroutines x\n"), "go_goroutines"); err == nil {
		t.Error("a bad value: no error")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-duration", "2m", "-interval", "1s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.plan.Duration != 2*time.Minute || o.plan.WarmUp != 30*time.Second+500*time.Millisecond || o.plan.QuietGap != 100*time.Second {
		t.Errorf("plan %+v", o.plan)
	}
	for _, bad := range [][]string{{"-quiet-gap", "90s"}, {"-duration", "20s"}, {"-tcp-conns", "0"}, {"extra"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzReplaceSection(f *testing.F) {
	f.Add("# R\n\n## Soak\n\nold\n\n## TCP\n\nkept\n", "## Soak\n\nnew\n")
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, doc, sec string) {
		got := replaceSection(doc, "## Soak", sec)
		if !strings.Contains(got, strings.TrimRight(sec, "\n")) {
			t.Fatalf("result %q lacks the section %q", got, sec)
		}
	})
}

func FuzzGaugeValue(f *testing.F) {
	f.Add("go_goroutines 42\n")
	f.Fuzz(func(t *testing.T, text string) { _, _ = gaugeValue(strings.NewReader(text), "go_goroutines") })
}
