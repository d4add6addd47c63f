//go:build race

package scaleout

// raceEnabled: the race detector slows the engine ~10x; long tests scale down.
const raceEnabled = true
