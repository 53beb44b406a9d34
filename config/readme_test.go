package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEExample: the configuration the README shows is valid.
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "## Configuration")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README's Configuration section has no yaml block")
	}
	c, err := Parse([]byte(block))
	if err != nil {
		t.Fatalf("the README's example configuration: %v", err)
	}
	if len(c.Listeners) < 3 || !c.Listeners[len(c.Listeners)-1].HasRoutes() {
		t.Errorf("the README's example has %d listeners, the last without routes", len(c.Listeners))
	}
}
