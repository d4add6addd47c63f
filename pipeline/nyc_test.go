package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
)

// TestRealNYCPickups checks the engine against the reference on real
// geography: Uber pickups in New York (April 2014, see
// ../shared/data/README.md), default definition, 60 minutes of a busy
// evening, riders paired so that some events are duplicates.
func TestRealNYCPickups(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	ps := nycPickups(t)
	from := time.Date(2014, 4, 4, 19, 0, 0, 0, time.UTC).UnixMilli()
	to := from + int64(testsize.Pick(20, 60))*60_000 // a thin evening: 20 minutes (long: an hour)
	out, _ := gen.AppendPickupWindow(nil, ps, from, to)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) < 100 {
		t.Fatalf("only %d pickups in the slice", len(lines))
	}
	def := feature.Default()
	want := reference(t, lines, def, 30_000)
	got, _, e := runEngine(t, lines, def, 30_000, 2, 4096)
	diffRows(t, got, want)
	t.Logf("%d pickups, %d counted, %d duplicates, %d rows", len(lines), e.Stats.Counted.Load(), e.Stats.Duplicates.Load(), len(got))
}
