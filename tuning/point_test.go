package tuning

import "testing"

// TestEventsRate: events/s is the lines read in the span; when the engine
// read its whole input before the span (a replay ahead of a slow sink:
// `tune` showed 0 events/s), the rows' rate at the run's events per row.
func TestEventsRate(t *testing.T) {
	from, to := mark{lines: 1000, rows: 50}, mark{lines: 3000, rows: 150}
	if got := eventsRate(from, to, to, 50, 2); got != 1000 {
		t.Fatalf("lines read in the span: %v events/s, want 1000", got)
	}
	from, to = mark{lines: 4000, rows: 100}, mark{lines: 4000, rows: 300}
	end := mark{lines: 4000, rows: 400} // 10 events a row
	if got := eventsRate(from, to, end, 100, 2); got != 1000 {
		t.Fatalf("input read ahead: %v events/s, want 100 rows/s x 10 events a row", got)
	}
	if got := eventsRate(mark{}, mark{}, mark{}, 0, 1); got != 0 {
		t.Fatalf("nothing: %v", got)
	}
}
