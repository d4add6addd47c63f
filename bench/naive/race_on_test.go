//go:build race

package naive

// raceEnabled: the race detector slows both pipelines ~10x; tests scale down.
const raceEnabled = true
