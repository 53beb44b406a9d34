// Package layering checks which packages may import which: a Rule forbids
// the packages it covers to reach others, directly or through any chain of
// imports, and Check names each chain that breaks one. The module's own rules
// are in this package's test, run against `go list -deps` of the module.
package layering

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// Graph maps a package's import path to the import paths it imports
// directly (test files excluded). A package imported but absent as a key
// imports nothing.
type Graph map[string][]string

// Rule forbids every package matched by From to import, directly or
// transitively, any package matched by Forbid. A pattern is an import path,
// which matches that package only, or a path ending in "/...", which
// matches the path and every package below it (as go's patterns do).
type Rule struct {
	// Name says what the rule keeps apart; failures start with it.
	Name   string
	From   []string
	Forbid []string
}

// Violation is one chain of imports that breaks a rule.
type Violation struct {
	Rule string
	// Chain starts at the package the rule covers and ends at the
	// forbidden one; each imports the next.
	Chain []string
}

// String formats v as "RULE: A -> B -> C".
func (v Violation) String() string {
	return v.Rule + ": " + strings.Join(v.Chain, " -> ")
}

// Match reports whether the import path p matches pattern.
func Match(pattern, p string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

func matchAny(patterns []string, p string) bool {
	return slices.ContainsFunc(patterns, func(pat string) bool { return Match(pat, p) })
}

// Check returns every violation of rules in g: for each package a rule
// covers (in sorted order), the shortest chain to each forbidden package it
// reaches without passing through another forbidden one (the first forbidden
// package on a path is the one to mend). It errors when a rule's From
// matches no package of g, since such a rule would pass whatever g holds.
func Check(g Graph, rules []Rule) ([]Violation, error) {
	pkgs := make([]string, 0, len(g))
	for p := range g {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	var out []Violation
	var errs []error
	for _, r := range rules {
		covered := 0
		for _, p := range pkgs {
			if !matchAny(r.From, p) {
				continue
			}
			covered++
			for _, chain := range forbiddenChains(g, p, r.Forbid) {
				out = append(out, Violation{Rule: r.Name, Chain: chain})
			}
		}
		if covered == 0 {
			errs = append(errs, fmt.Errorf("rule %q: no package matches %s", r.Name, strings.Join(r.From, ", ")))
		}
	}
	return out, errors.Join(errs...)
}

// forbiddenChains walks g breadth-first from start, imports in sorted order,
// and returns the shortest chain to each forbidden package reached; the walk
// does not go on through a forbidden package. start itself is not checked
// against forbid.
func forbiddenChains(g Graph, start string, forbid []string) [][]string {
	parent := map[string]string{start: ""}
	queue := []string{start}
	var chains [][]string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		imports := slices.Clone(g[p])
		slices.Sort(imports)
		for _, q := range imports {
			if _, seen := parent[q]; seen {
				continue
			}
			parent[q] = p
			if !matchAny(forbid, q) {
				queue = append(queue, q)
				continue
			}
			chain := []string{q}
			for at := p; at != ""; at = parent[at] {
				chain = append(chain, at)
			}
			slices.Reverse(chain)
			chains = append(chains, chain)
		}
	}
	return chains
}

// listFormat makes go list print one line per package: its import path, a
// tab, and its direct imports separated by spaces.
const listFormat = "{{.ImportPath}}\t{{join .Imports \" \"}}"

// Load runs goBin's `go list -deps` over patterns in dir and returns the
// import graph of the packages matched and everything they depend on, test
// files excluded.
func Load(ctx context.Context, goBin, dir string, patterns ...string) (Graph, error) {
	cmd := exec.CommandContext(ctx, goBin, append([]string{"list", "-deps", "-f", listFormat}, patterns...)...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -deps %s: %w: %s", strings.Join(patterns, " "), err, strings.TrimSpace(stderr.String()))
	}
	return ParseList(string(out))
}

// ParseList parses the output of go list with listFormat.
func ParseList(out string) (Graph, error) {
	g := Graph{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		path, imports, ok := strings.Cut(line, "\t")
		if !ok || path == "" {
			return nil, fmt.Errorf("go list line %d: %q: want PATH<tab>IMPORTS", n, line)
		}
		g[path] = strings.Fields(imports)
	}
	return g, sc.Err()
}
