package main

// The longhaul-base target: longhaul built from another git revision (the
// -base flag), run with the same generated configuration as longhaul, so
// that a change can be shown to cost nothing against the revision before it.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/proc"
)

// baseRev is the revision longhaul-base is built from.
type baseRev struct {
	// rev is the revision as given to -base.
	rev string
	// commit is its full hash; subject its commit's subject line.
	commit, subject string
}

// shorten cuts s to at most n runes, marking a cut with an ellipsis.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return strings.TrimSpace(string(r[:n-1])) + "…"
}

func (b baseRev) String() string {
	return fmt.Sprintf("longhaul-base: revision %s (%s, %q), built from `git archive` of it", b.rev, b.commit, b.subject)
}

// resolveBase names rev's commit in repo.
func resolveBase(ctx context.Context, repo, rev string) (baseRev, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}").Output()
	if err != nil {
		return baseRev{}, fmt.Errorf("-base %s: not a commit of %s (git rev-parse: %v)", rev, repo, err)
	}
	b := baseRev{rev: rev, commit: strings.TrimSpace(string(out))}
	out, err = exec.CommandContext(ctx, "git", "-C", repo, "log", "-1", "--format=%s", b.commit).Output()
	if err != nil {
		return baseRev{}, fmt.Errorf("-base %s: subject of %s: %w", rev, b.commit, err)
	}
	b.subject = strings.TrimSpace(string(out))
	return b, nil
}

// buildBase extracts b's tree from repo into work/base-src with git
// archive (which leaves the repository as it was: no worktree, no index
// change), builds its ./cmd/longhaul into work/bin/longhaul-base and
// returns that path. The source directory and the archive are removed
// before it returns, whether the build succeeded or not.
func buildBase(ctx context.Context, repo string, b baseRev, work string) (string, error) {
	src := filepath.Join(work, "base-src")
	tarball := filepath.Join(work, "base-src.tar")
	defer os.Remove(tarball)
	defer os.RemoveAll(src)
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", fmt.Errorf("build longhaul-base: %w", err)
	}
	if err := proc.Run(ctx, "", nil, "git", "-C", repo, "archive", "--format=tar", "-o", tarball, b.commit); err != nil {
		return "", fmt.Errorf("build longhaul-base from %s: %w", b.rev, err)
	}
	if err := proc.Run(ctx, "", nil, "tar", "-x", "-f", tarball, "-C", src); err != nil {
		return "", fmt.Errorf("build longhaul-base from %s: %w", b.rev, err)
	}
	if _, err := os.Stat(filepath.Join(src, "cmd", "longhaul")); err != nil {
		return "", fmt.Errorf("build longhaul-base: revision %s has no cmd/longhaul: %w", b.rev, err)
	}
	bin := filepath.Join(work, "bin", longhaulBase)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("build longhaul-base: %w", err)
	}
	if err := proc.Run(ctx, src, nil, "go", "build", "-o", bin, "./cmd/longhaul"); err != nil {
		return "", fmt.Errorf("build longhaul-base from %s: %w", b.rev, err)
	}
	return bin, nil
}

// checkBaseConfig asks the base binary to validate the configuration
// generated for longhaul: an older revision may reject a key the generator
// writes, and that is better said before the run than as a failed start.
// A revision without the validate command passes (its start will tell).
func checkBaseConfig(ctx context.Context, bin, cfg string, b baseRev) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "validate", "--config", cfg)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if strings.Contains(out.String(), "unknown command") {
			return nil
		}
		return fmt.Errorf("longhaul-base (revision %s) rejects the configuration generated for longhaul (%s); an older revision may not know one of its keys: %v: %s",
			b.rev, cfg, err, oneLine(out.String()))
	}
	return nil
}

// baseFigure is one figure compared between longhaul and longhaul-base.
type baseFigure struct {
	col         column
	lowerBetter bool
}

// baseStartHint is added to a failed start of longhaul-base.
func baseStartHint(err error, t *target) error {
	return fmt.Errorf("%w; the base revision may reject a key of the generated configuration; its output: %s", err, oneLine(t.LogTail()))
}

// writeBaseSection writes "longhaul against its base revision": per
// workload its main figures for longhaul and longhaul-base and their ratio
// taken within each repetition. Nothing when either target is missing.
func writeBaseSection(w io.Writer, r *results, wls []workload, targets []string, base baseRev) {
	if !slices.Contains(targets, longhaul) || !slices.Contains(targets, longhaulBase) {
		return
	}
	fmt.Fprintf(w, "## longhaul against its base revision\n\n")
	fmt.Fprintf(w, "`longhaul` is built from the working tree, `longhaul-base` from revision %s (`%.12s`, %q); both run with the same generated configuration on their own ports, in the same repetitions as the other targets. "+
		"The ratio is longhaul / longhaul-base taken within each repetition (an added latency is over direct in that repetition), then the median and min–max over repetitions; "+
		"for CPU, latency and memory below 1 means longhaul costs less, for throughput above 1 means it carries more.\n\n", base.rev, base.commit, shorten(base.subject, 80))
	fmt.Fprintf(w, "| workload | figure | longhaul | longhaul-base | longhaul / base | better |\n|---|---|---|---|---|---|\n")
	rollout := false
	for _, wl := range wls {
		if wl.name == "rollout" {
			rollout = r.m[wl.name] != nil
		}
		if r.m[wl.name] == nil {
			continue
		}
		for _, f := range wl.baseFigures {
			better := "higher"
			if f.lowerBetter {
				better = "lower"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", wl.name, f.col.title,
				cell(r.series(wl.name, longhaul, f.col), f.col.prec), cell(r.series(wl.name, longhaulBase, f.col), f.col.prec),
				cell(r.ratioSeries(wl.name, longhaul, longhaulBase, f.col), 2), better)
		}
	}
	fmt.Fprintln(w)
	if rollout {
		fmt.Fprintf(w, "`rollout` counts failed calls and lost messages rather than costs: compare the two rows of its table.\n\n")
	}
}
