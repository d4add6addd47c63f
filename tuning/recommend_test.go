package tuning

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func res(par, w, b int, rate float64, p99 time.Duration) Result {
	return Result{Point: Point{par, w, b}, RowsPerSec: rate, P99Write: p99, Rows: 1000, Steady: true, Stop: StopSteady}
}

func TestRecommend(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name    string
		results []Result
		want    Point
		reason  []string
	}{
		{"the only point within 5% wins", []Result{res(2, 4, 50, 40e3, 4*ms), res(2, 16, 50, 90e3, 4*ms), res(2, 64, 50, 180e3, 8*ms)},
			Point{2, 64, 50}, []string{"180,000 rows/s is the best of the 3 points", "no other point comes within 5%"}},
		{"the fewest rows in flight among those within 5%", []Result{res(2, 16, 50, 180e3, 4*ms), res(2, 64, 50, 182e3, 8*ms), res(2, 64, 200, 185e3, 16*ms)},
			Point{2, 16, 50}, []string{"97% of the best (185,000 rows/s at parallelism=2 writers=64 batch-rows=200)", "of the 3 points within 5%", "16 writers x 50 rows = 800"}},
		{"fewer cores first", []Result{res(1, 64, 50, 176e3, 8*ms), res(2, 16, 50, 180e3, 4*ms)},
			Point{1, 64, 50}, []string{"fewest cores (1)"}},
		{"p99 over the bound is left out", []Result{res(2, 16, 50, 100e3, 4*ms), res(2, 64, 200, 300e3, 200*ms)},
			Point{2, 16, 50}, []string{"(1 left out for theirs)", "p99 <= 4ms"}},
		{"failed and empty points are left out", []Result{{Point: Point{2, 64, 50}, RowsPerSec: 1e6, Rows: 1, Err: "boom"}, {Point: Point{2, 32, 50}}, res(2, 4, 1, 1e3, ms)},
			Point{2, 4, 1}, []string{"the best of the 1 points"}},
		{"equal cost: fewer writers", []Result{res(2, 10, 20, 100e3, ms), res(2, 20, 10, 100e3, ms)},
			Point{2, 10, 20}, nil},
	} {
		rec, err := Recommend(c.results, 0.95, 100*ms)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if rec.Point != c.want {
			t.Errorf("%s: recommended %v, want %v (%s)", c.name, rec.Point, c.want, rec.Reason)
		}
		for _, s := range c.reason {
			if !strings.Contains(rec.Reason, s) {
				t.Errorf("%s: reason %q lacks %q", c.name, rec.Reason, s)
			}
		}
		if strings.Count(rec.Reason, ". ") > 0 || !strings.HasSuffix(rec.Reason, ".") {
			t.Errorf("%s: reason is not one sentence: %q", c.name, rec.Reason)
		}
	}
	if _, err := Recommend([]Result{res(2, 4, 50, 1e3, time.Second)}, 0.95, 100*ms); !errors.Is(err, ErrNoCandidate) {
		t.Fatalf("no point under the p99 bound: %v", err)
	}
	if _, err := Recommend(nil, 0.95, 100*ms); !errors.Is(err, ErrNoCandidate) {
		t.Fatalf("no points: %v", err)
	}
	if got := (Recommendation{Result: res(2, 16, 50, 1, 0)}).Flags(); got != "-parallelism=2 -sink.writers=16 -sink.batch-rows=50" {
		t.Fatalf("Flags() = %q", got)
	}
}
