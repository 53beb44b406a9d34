//go:build !race

package h2relay

// raceEnabled: see race_test.go.
const raceEnabled = false
