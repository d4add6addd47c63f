//go:build !race

package tuning

const raceEnabled = false
