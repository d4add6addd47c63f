//go:build race

package pipeline

// raceEnabled: the race detector maps shadow memory beside the heap, so
// an RSS bound is checked only without it (TestManyRidersStayInTheBudget).
const raceEnabled = true
