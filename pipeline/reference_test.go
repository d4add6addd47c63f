package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
)

// row is one emitted row in comparable form.
type row struct {
	minute   int64
	product  string
	cell     uint64
	features []int32
}

func (r row) String() string {
	return fmt.Sprintf("%s %s %x %v", encode.MinuteStart(r.minute).Format("15:04"), r.product[:8], r.cell, r.features)
}

// collect is a sink that keeps everything it gets.
type collect struct {
	mu      sync.Mutex
	rows    []row
	closed  []int64
	failAt  int // fail the Nth Write (1-based) when > 0
	writes  int
	onWrite func() // called at every Write, if set
}

func (c *collect) Write(_ context.Context, b *encode.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if c.onWrite != nil {
		c.onWrite()
	}
	if c.failAt > 0 && c.writes == c.failAt {
		return fmt.Errorf("injected sink failure")
	}
	for i := range b.Len() {
		c.rows = append(c.rows, row{b.Minute, b.ProductName(i), b.Cells[i], slices.Clone(b.Row(i))})
	}
	return nil
}

func (c *collect) CloseMinute(_ context.Context, m int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = append(c.closed, m)
	return nil
}

func (c *collect) Close() error { return nil }

// refEvent is what the reference needs of a line.
type refEvent struct {
	TS      *json.Number `json:"ts"`
	Rider   *string      `json:"rider_id"`
	Lat     *float64     `json:"lat"`
	Lng     *float64     `json:"lng"`
	Product *string      `json:"product_type"`
}

// reference computes the contract's rows the obvious way: maps, loops and
// h3.GridDiskDistances, straight from the numbered semantics of docs/CONTRACT.md, with
// the default event time.
func reference(t testing.TB, lines []string, def feature.Definition, latenessMs int64) []row {
	return referenceRule(t, lines, def, latenessMs, DefaultFutureConfig().rule())
}

// referenceRule is reference with event time of fr (docs/CONTRACT.md "Semantics" 1,
// 1a and 6), written out plainly: every rider's latest time in a map, T the
// K-th largest of them by sorting those not below the last T (T never
// falls, as latest times only grow), and the end of the input closing through
// the later of T and the tail: the largest ts that fewer than K distinct
// riders contradicted (a later event of theirs with a lower ts), falling
// back, when K have, to the largest ts after it.
func referenceRule(t testing.TB, lines []string, def feature.Definition, latenessMs int64, fr futureRule) []row {
	t.Helper()
	type key struct {
		cell    uint64
		product string
		minute  int64
	}
	counts := map[key]int32{}
	seen := map[string]bool{}
	latest := map[string]int64{} // every rider's latest accepted ts
	cand := map[string]int64{}   // the riders whose latest is >= T (all, before T)
	haveT, T := false, int64(0)
	tail, haveTS := int64(0), false
	next, haveNext := int64(0), false
	contra := map[string]bool{} // the riders that contradicted tail
	closedThrough := int64(-1 << 62)
	now := time.Now().UnixMilli()
	for _, l := range lines {
		var ev refEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.TS == nil || ev.Rider == nil || ev.Lat == nil || ev.Lng == nil || ev.Product == nil {
			continue
		}
		ts, err := ev.TS.Int64()
		if err != nil || ts < 0 || *ev.Rider == "" || *ev.Lat < -90 || *ev.Lat > 90 || *ev.Lng < -180 || *ev.Lng > 180 {
			continue
		}
		if _, ok := encode.ParseUUID([]byte(*ev.Product)); !ok {
			continue
		}
		if fr.skew > 0 && ts > now+fr.skew {
			continue // future
		}
		prod, rider := strings.ToLower(*ev.Product), *ev.Rider
		m := floorDiv(ts, 60000)
		if m <= closedThrough {
			continue // late
		}
		dk := fmt.Sprintf("%s|%s|%d", rider, prod, m)
		if !seen[dk] {
			seen[dk] = true
			c, err := h3.LatLngToCell(h3.LatLng{Lat: *ev.Lat, Lng: *ev.Lng}, def.Resolution)
			if err != nil {
				t.Fatal(err)
			}
			counts[key{uint64(c), prod, m}]++
		}
		switch {
		case !haveTS || ts > tail:
			tail, haveNext, contra = ts, false, map[string]bool{}
		case ts < tail:
			if !haveNext || ts > next {
				next, haveNext = ts, true
			}
			if contra[rider] = true; len(contra) >= fr.confirm {
				tail, haveNext, contra = next, false, map[string]bool{}
			}
		}
		haveTS = true
		if old, ok := latest[rider]; !ok || ts > old {
			latest[rider] = ts
		}
		if !haveT || latest[rider] >= T {
			cand[rider] = latest[rider]
		}
		if len(latest) < fr.confirm {
			continue
		}
		times := slices.Sorted(maps.Values(cand))
		x := times[len(times)-fr.confirm]
		maps.DeleteFunc(cand, func(_ string, v int64) bool { return v < x })
		if !haveT || x != T {
			haveT, T = true, x
			closedThrough = max(closedThrough, floorDiv(T-latenessMs, 60000)-1)
		}
	}
	if !haveTS {
		return nil
	}
	end := tail
	if haveT {
		end = max(end, T)
	}
	last := max(floorDiv(end, 60000), closedThrough)
	for k := range counts {
		if k.minute > last {
			delete(counts, k) // never closed: rejected as future at the end
		}
	}
	if len(counts) == 0 {
		return nil
	}
	// D[minute][product][target][ki]
	type tk struct {
		product string
		cell    uint64
	}
	maxK := def.MaxRingValue()
	disk := map[uint64][][]h3.Cell{}
	d := map[int64]map[tk][]int32{}
	for k, c := range counts {
		rings, ok := disk[k.cell]
		if !ok {
			var err error
			if rings, err = h3.GridDiskDistances(h3.Cell(k.cell), maxK); err != nil {
				t.Fatal(err)
			}
			disk[k.cell] = rings
		}
		if d[k.minute] == nil {
			d[k.minute] = map[tk][]int32{}
		}
		for dist, ring := range rings {
			for _, tc := range ring {
				if tc == 0 {
					continue
				}
				key := tk{k.product, uint64(tc)}
				v := d[k.minute][key]
				if v == nil {
					v = make([]int32, len(def.Rings))
					d[k.minute][key] = v
				}
				for ki, kk := range def.Rings {
					if dist <= kk {
						v[ki] += c
					}
				}
			}
		}
	}
	// Only minutes some window reaches can have rows (a bad clock can make
	// first..last span millennia).
	maxW := int64(slices.Max(def.Windows))
	minutes := map[int64]bool{}
	for i := range d {
		for m := i; m < i+maxW && m <= last; m++ {
			minutes[m] = true
		}
	}
	kind := def.Kind() // docs/CONTRACT.md rule 4a
	var out []row
	for m := range minutes {
		f := map[tk][]int32{}
		for wi, w := range def.Windows {
			for i := m - int64(w) + 1; i <= m; i++ {
				for key, v := range d[i] {
					fv := f[key]
					if fv == nil {
						fv = make([]int32, def.NumFeatures())
						f[key] = fv
					}
					for ki := range def.Rings {
						fv[def.Index(ki, wi)] = kind.Fold(fv[def.Index(ki, wi)], kind.Value(v[ki]))
					}
				}
			}
		}
		for key, fv := range f {
			if slices.ContainsFunc(fv, func(x int32) bool { return x != 0 }) {
				out = append(out, row{m, key.product, key.cell, fv})
			}
		}
	}
	sortRows(out)
	return out
}

func sortRows(rows []row) {
	slices.SortFunc(rows, func(a, b row) int {
		if a.minute != b.minute {
			return cmp.Compare(a.minute, b.minute)
		}
		if a.product != b.product {
			return strings.Compare(a.product, b.product)
		}
		return cmp.Compare(a.cell, b.cell)
	})
}

// diffRows reports the first differences between got and want.
func diffRows(t *testing.T, got, want []row) {
	t.Helper()
	if len(got) == len(want) {
		same := true
		for i := range got {
			if got[i].minute != want[i].minute || got[i].product != want[i].product || got[i].cell != want[i].cell || !slices.Equal(got[i].features, want[i].features) {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	gm := map[string]string{}
	for _, r := range got {
		gm[fmt.Sprintf("%d %s %x", r.minute, r.product, r.cell)] = fmt.Sprint(r.features)
	}
	n := 0
	for _, r := range want {
		k := fmt.Sprintf("%d %s %x", r.minute, r.product, r.cell)
		if g, ok := gm[k]; !ok {
			t.Errorf("missing row %v", r)
			n++
		} else if g != fmt.Sprint(r.features) {
			t.Errorf("row %s: got %s want %v", k, g, r.features)
			n++
		}
		delete(gm, k)
		if n > 10 {
			break
		}
	}
	for k, v := range gm {
		if n > 10 {
			break
		}
		t.Errorf("extra row %s %s", k, v)
		n++
	}
	t.Fatalf("got %d rows, want %d", len(got), len(want))
}
