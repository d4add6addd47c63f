//go:build race

package tuning

// raceEnabled: the race detector slows the engine ~10x; long tests scale down.
const raceEnabled = true
