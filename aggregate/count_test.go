package aggregate

import (
	"testing"

	"github.com/demandpipe/demandpipe/encode"
)

// TestCounterAlone: the count stage groups counted events by minute,
// product and cell, hands every minute up to through to the closer at once
// (and only once), and after a resume ignores minutes already committed.
func TestCounterAlone(t *testing.T) {
	t.Parallel()
	c := newCounter(make(chan *minuteCounts, 8))
	for _, e := range []Counted{{7, 100, 0}, {5, 100, 0}, {5, 100, 0}, {5, 200, 1}, {6, 300, 0}, {7, 100, 0}} {
		c.add(e)
	}
	req, ok := c.request(6, 6, nil)
	if !ok || req.through != 6 || req.first != 5 || len(req.counts) != 2 {
		t.Fatalf("request(6): %+v %v", req, ok)
	}
	total := func(mc *minuteCounts) map[[2]uint64]int32 {
		out := map[[2]uint64]int32{}
		for p := range encode.MaxProducts {
			if ix := mc.cells[p]; ix != nil {
				for i := range ix.Len() {
					out[[2]uint64{uint64(p), ix.Cell(uint32(i))}] += mc.counts[p][i]
				}
			}
		}
		return out
	}
	for _, mc := range req.counts {
		got := total(mc)
		switch mc.minute {
		case 5:
			if got[[2]uint64{0, 100}] != 2 || got[[2]uint64{1, 200}] != 1 || len(got) != 2 {
				t.Fatalf("minute 5: %v", got)
			}
		case 6:
			if got[[2]uint64{0, 300}] != 1 || len(got) != 1 {
				t.Fatalf("minute 6: %v", got)
			}
		default:
			t.Fatalf("minute %d handed over early", mc.minute)
		}
	}
	if _, ok := c.request(6, 6, nil); ok {
		t.Fatal("the same minutes requested twice")
	}
	c.add(Counted{7, 100, 0})
	req, _ = c.request(7, 7, nil)
	if len(req.counts) != 1 || total(req.counts[0])[[2]uint64{0, 100}] != 3 {
		t.Fatalf("minute 7: %+v", req.counts)
	}
	c.resumeAt(9)
	c.add(Counted{9, 1, 0})
	c.add(Counted{10, 1, 0})
	req, _ = c.request(10, 10, nil)
	if len(req.counts) != 1 || req.counts[0].minute != 10 {
		t.Fatalf("after a resume at 9: %+v", req.counts)
	}
}
