//go:build !race

package cassandra

const raceEnabled = false
