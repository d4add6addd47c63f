package tuning

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Recommendation is the point Recommend chose, the best it was compared
// with, and why, in one sentence.
type Recommendation struct {
	Result
	Best Result
	// Candidates are the points within Within of the best rows/s (the
	// chosen one among them); OverP99 the points left out for their p99.
	Candidates, OverP99 int
	Reason              string
}

// ErrNoCandidate: no point ran without error, wrote rows and kept its p99
// under the bound.
var ErrNoCandidate = errors.New("tuning: no point to recommend")

// Recommend applies the rule: among the points that ran without error,
// wrote rows and whose p99 write latency is at most maxP99, take the best
// rows/s; every point with at least within of it is a candidate; recommend
// the cheapest candidate: the fewest cores (parallelism), then the fewest
// rows in flight (writers x batch rows: the store's concurrent load and
// the client's memory), then the fewest writers. Throughput within a few
// percent is noise on a shared machine; cores and in-flight load are not.
func Recommend(results []Result, within float64, maxP99 time.Duration) (Recommendation, error) {
	var ok []Result
	over := 0
	for _, r := range results {
		switch {
		case r.Err != "" || r.Rows == 0:
		case r.P99Write > maxP99:
			over++
		default:
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		return Recommendation{OverP99: over}, fmt.Errorf("%w: of %d points, %d have a p99 write latency over %v and the rest failed or wrote nothing", ErrNoCandidate, len(results), over, maxP99)
	}
	best := slices.MaxFunc(ok, func(a, b Result) int { return cmp.Compare(a.RowsPerSec, b.RowsPerSec) })
	var cands []Result
	for _, r := range ok {
		if r.RowsPerSec >= within*best.RowsPerSec {
			cands = append(cands, r)
		}
	}
	pick := slices.MinFunc(cands, func(a, b Result) int {
		return cmp.Or(cmp.Compare(a.Parallelism, b.Parallelism), cmp.Compare(a.InFlightRows(), b.InFlightRows()),
			cmp.Compare(a.Writers, b.Writers), cmp.Compare(a.BatchRows, b.BatchRows))
	})
	rec := Recommendation{Result: pick, Best: best, Candidates: len(cands), OverP99: over}
	share := "the best"
	if pick.Point != best.Point {
		share = fmt.Sprintf("%.0f%% of the best (%s rows/s at %s)", 100*pick.RowsPerSec/best.RowsPerSec, groupDigits(best.RowsPerSec), best.Point)
	}
	left := ""
	if over > 0 {
		left = fmt.Sprintf(" (%d left out for theirs)", over)
	}
	why := fmt.Sprintf("no other point comes within %.0f%% of it.", 100*(1-within))
	if len(cands) > 1 {
		why = fmt.Sprintf("of the %d points within %.0f%% of the best it needs the fewest cores (%d), then the fewest rows in flight (%d writers x %d rows = %d).",
			len(cands), 100*(1-within), pick.Parallelism, pick.Writers, pick.BatchRows, pick.InFlightRows())
	}
	rec.Reason = fmt.Sprintf("%s rows/s is %s of the %d points whose p99 write is within %v%s, at p99 <= %s; %s",
		groupDigits(pick.RowsPerSec), share, len(ok), maxP99, left, fmtDuration(pick.P99Write), why)
	return rec, nil
}

// Flags is the recommendation as flags of `demandpipe run`.
func (r Recommendation) Flags() string {
	return fmt.Sprintf("-parallelism=%d -sink.writers=%d -sink.batch-rows=%d", r.Parallelism, r.Writers, r.BatchRows)
}
