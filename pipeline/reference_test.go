package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

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
// h3.GridDiskDistances, straight from the numbered semantics, with
// the default future rule.
func reference(t testing.TB, lines []string, def feature.Definition, latenessMs int64) []row {
	return referenceRule(t, lines, def, latenessMs, DefaultFutureConfig().rule(false))
}

// referenceRule is reference with the future rule of fr (README
// "Semantics"), written out plainly: a list of held events in arrival
// order and, on confirmation, a sort of the riders' times.
func referenceRule(t testing.TB, lines []string, def feature.Definition, latenessMs int64, fr futureRule) []row {
	t.Helper()
	type key struct {
		cell    uint64
		product string
		minute  int64
	}
	type refEv struct {
		ts       int64
		rider    string
		prod     string
		lat, lng float64
		heldAt   int64
	}
	counts := map[key]int32{}
	seen := map[string]bool{}
	haveMax, maxTS := false, int64(0)
	closedThrough := int64(-1 << 62)
	first := int64(1 << 62)
	accept := func(e refEv) {
		m := floorDiv(e.ts, 60000)
		if m <= closedThrough {
			return // late
		}
		dk := fmt.Sprintf("%s|%s|%d", e.rider, e.prod, m)
		if !seen[dk] {
			seen[dk] = true
			c, err := h3.LatLngToCell(h3.LatLng{Lat: e.lat, Lng: e.lng}, def.Resolution)
			if err != nil {
				t.Fatal(err)
			}
			counts[key{uint64(c), e.prod, m}]++
			first = min(first, m)
		}
		if !haveMax || e.ts > maxTS {
			haveMax, maxTS = true, e.ts
		}
		closedThrough = max(closedThrough, floorDiv(maxTS-latenessMs, 60000)-1)
	}
	// The future rule.
	var held []refEv
	streak := map[string]int64{} // rider -> largest ts held since the last accepted event
	confirmed, haveConfirmed := int64(0), false
	front := func() int64 {
		if haveConfirmed && confirmed > maxTS {
			return confirmed
		}
		return maxTS
	}
	var offer func(e refEv, arriving bool)
	offer = func(e refEv, arriving bool) {
		if fr.skew == 0 || !haveMax || e.ts <= front()+fr.skew {
			streak = map[string]int64{}
			accept(e)
			return
		}
		if !arriving { // released but still ahead: back in the hold
			held = append(held, e)
			return
		}
		e.heldAt = front()
		if len(held) == fr.maxHeld {
			held = held[1:] // the oldest is rejected as future
		}
		held = append(held, e)
		streak[e.rider] = max(streak[e.rider], e.ts)
		if len(streak) < fr.confirm {
			return
		}
		var times []int64
		for _, v := range streak {
			times = append(times, v)
		}
		slices.Sort(times)
		slices.Reverse(times)
		if x := times[fr.confirm-1]; !haveConfirmed || x > confirmed {
			confirmed, haveConfirmed = x, true
		}
		streak = map[string]int64{}
		release := held
		held = nil
		for _, h := range release {
			offer(h, false)
		}
	}
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
		offer(refEv{ts: ts, rider: *ev.Rider, prod: strings.ToLower(*ev.Product), lat: *ev.Lat, lng: *ev.Lng}, true)
		// Held events the frontier has left maxHold behind are rejected.
		kept := held[:0:0]
		for _, h := range held {
			if front()-h.heldAt <= fr.maxHold {
				kept = append(kept, h)
			}
		}
		held = kept
	}
	if !haveMax || first == 1<<62 {
		return nil
	}
	last := floorDiv(maxTS, 60000)
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
	cand := map[int64]bool{}
	for i := range d {
		for m := i; m < i+maxW && m <= last; m++ {
			cand[m] = true
		}
	}
	var out []row
	for m := range cand {
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
						fv[def.Index(ki, wi)] += v[ki]
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
