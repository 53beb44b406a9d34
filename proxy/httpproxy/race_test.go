//go:build race

package httpproxy

// raceEnabled: the race detector slows every goroutine several times, so
// tests that load the relay from inside its own process scale their load
// down (the attacks still push past every budget).
const raceEnabled = true
