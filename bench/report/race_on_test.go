//go:build race

package report

// raceEnabled: the race detector slows everything ~10x; the test scales down.
const raceEnabled = true
