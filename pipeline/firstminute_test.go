package pipeline

import (
	"strings"
	"testing"

	"github.com/demandpipe/demandpipe/feature"
)

// TestFirstMinute: Stats.FirstMinute is the earliest minute of an accepted
// event, whatever the order of arrival, and it is the first minute closed;
// a late event's earlier minute does not move it.
func TestFirstMinute(t *testing.T) {
	t.Parallel()
	def := feature.Definition{Resolution: 8, Rings: []int{0}, Windows: []int{1}}
	if got := new(Stats).FirstMinute.Load(); got != 0 {
		t.Fatalf("before any event: %d", got)
	}
	lines := []string{
		ev("10:01:05", "a", 40.7580, -73.9855), // T 10:01:05: 10:00 still open (lateness 30 s)
		ev("10:00:50", "b", 40.7580, -73.9855), // accepted: the earliest minute
		ev("10:02:40", "c", 40.7580, -73.9855), // T 10:02:40: 10:00 and 10:01 close
		ev("09:59:00", "d", 40.7580, -73.9855), // late
	}
	// Blank lines past a chunk put the earlier minute in a later batch.
	split := append([]string{lines[0], strings.Repeat("\n", 5000)}, lines[1:]...)
	m0 := int64(1717236000000 / 60000) // 10:00
	for _, in := range [][]string{lines, split} {
		_, sink, e := runEngineFuture(t, in, def, 30_000, 1, 4096, oneRider)
		if got := e.Stats.FirstMinute.Load(); got != m0 || len(sink.closed) == 0 || sink.closed[0] != m0 {
			t.Errorf("%d lines: FirstMinute %d, want %d (10:00), the first closed (closed %v)", len(in), got, m0, sink.closed)
		}
		if e.Stats.Late.Load() != 1 || (len(in) > len(lines)) != (e.Stats.Blank.Load() > 4096) {
			t.Errorf("%d lines: late %d (want 1), blank %d", len(in), e.Stats.Late.Load(), e.Stats.Blank.Load())
		}
	}
}
