package pipeline

// Tests of event time by riders (docs/CONTRACT.md "Semantics" 1a, docs/EVENT-TIME.md):
// an event's damage is bounded by its own footprint, and no real event is
// rejected for being far from the previous one.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
)

// nycPickups reads the shared NYC month, or skips the test when the
// shared data is not beside the repository.
func nycPickups(t *testing.T) []gen.Pickup {
	t.Helper()
	ps, err := gen.ReadPickupsFile("../../shared/data/uber-nyc-pickups-2014-04-02-to-30.csv.gz")
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("shared NYC data not beside the repo: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// pickupLines makes event lines of every step-th pickup in [from, to), each
// its own rider, in time order: a real market, thinned.
func pickupLines(ps []gen.Pickup, step int, from, to int64) []string {
	var lines []string
	var b []byte
	for i := 0; i < len(ps); i += step {
		if ps[i].TS < from || ps[i].TS >= to {
			continue
		}
		b = gen.AppendPickupEvent(b[:0], i, ps[i])
		lines = append(lines, strings.TrimSuffix(string(b), "\n"))
	}
	return lines
}

// TestThinRealDataNothingFuture is issue 21's first acceptance point: the
// real NYC month, and thinnings of it (a small market: gaps of minutes to
// hours at night), lose nothing to event time. No event is rejected as
// future, the rows equal the run with event time off (the largest ts), and
// the end of the input closes the minute of the last pickup. The rule of
// the previous build rejected 2,043 pickups of the month and 69% of a
// one-in-25 thinning, and left the last 30 minutes unclosed.
func TestThinRealDataNothingFuture(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	ps := nycPickups(t)
	first, last := ps[0].TS, ps[len(ps)-1].TS
	type thinning = struct {
		name     string
		step     int
		from, to int64
	}
	cases := []thinning{
		{"one in 100", 100, first, last + 1},
		{"one in 7, the last week", 7, last - 7*24*3_600_000, last + 1},
	}
	if testsize.Long() {
		cases = append(cases, thinning{"one in 25", 25, first, last + 1})
		cases = append(cases, struct {
			name     string
			step     int
			from, to int64
		}{"all, the last two days", 1, last - 2*24*3_600_000, last + 1})
		cases = append(cases, struct {
			name     string
			step     int
			from, to int64
		}{"all, the month", 1, first, last + 1})
	}
	off := FutureConfig{MaxSkew: 0, ConfirmRiders: 1}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lines := pickupLines(ps, tc.step, tc.from, tc.to)
			want, _, we := runEngineFuture(t, lines, smallDef, 30_000, 2, 64<<10, off)
			got, c, e := runEngineFuture(t, lines, smallDef, 30_000, 2, 64<<10, DefaultFutureConfig())
			s := e.Stats.Snapshot()
			if s.Rejected["future"] != 0 || s.Late != we.Stats.Late.Load() || s.Counted != we.Stats.Counted.Load() {
				t.Fatalf("%d pickups: %+v\nwith event time off: %+v", len(lines), s, we.Stats.Snapshot())
			}
			rowsEqual(t, got, want)
			maxTS := slices.Max(slices.Collect(func(yield func(int64) bool) {
				for _, l := range lines {
					if !yield(tsOf(t, l)) {
						return
					}
				}
			}))
			if lastClosed := c.closed[len(c.closed)-1]; lastClosed != minuteOf(maxTS) {
				t.Fatalf("last closed minute %s, the last pickup's %s", encode.MinuteStart(lastClosed), encode.MinuteStart(minuteOf(maxTS)))
			}
			t.Logf("%d pickups, %d rows, %d late", len(lines), len(got), s.Late)
		})
	}
}

// TestBadClockCostsOnlyItsFootprint is issue 21's second acceptance point,
// as a property over dense, thin and jumping streams: one event with a bad
// clock (+30 s to the year 9999, or behind) on the first line, a random
// middle line or the last line. Then
//   - the rows equal the reference's (the contract, written plainly);
//   - the late count is the clean stream's (plus the bad event itself, if
//     its minute was closed);
//   - every row of a minute before the bad event's claimed minute m is
//     unchanged, and rows change only in minutes m..m+max(W)-1, at most a
//     disk's cells each;
//   - except on the last line, which no later event can contradict: the
//     end of the input closes through it, as it does an honest last pickup
//     of a thin night, so the clean stream's trailing windows are closed
//     too (exact rows, pinned by the reference).
func TestBadClockCostsOnlyItsFootprint(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	start := time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)
	streams := map[string][]string{
		"dense":   genLines(t, testsize.Pick(2000, 20_000), 21, start),
		"jumping": append(genLines(t, testsize.Pick(1000, 10_000), 22, start), genLines(t, testsize.Pick(1000, 10_000), 23, start.Add(3*time.Hour))...),
	}
	if ps, err := gen.ReadPickupsFile("../../shared/data/uber-nyc-pickups-2014-04-02-to-30.csv.gz"); err == nil {
		night := time.Date(2014, 4, 9, 0, 0, 0, 0, time.UTC).UnixMilli()
		hours := testsize.Pick[int64](4, 8)
		streams["thin (a NYC night, one in 3)"] = pickupLines(ps, 3, night, night+hours*3_600_000)
	}
	offsets := []int64{30_000, 120_000, 290_000, 3_600_000, 30 * 86_400_000, encode.MaxTS, -3_600_000, -600_000, -86_400_000}
	rng := rand.New(rand.NewPCG(testsize.Seed(t), 21))
	for name, lines := range streams {
		clean, cc, ce := runEngine(t, lines, smallDef, 30_000, 2, 16<<10)
		for _, where := range []string{"first", "middle", "last"} {
			// Short: one offset a place, drawn from the logged seed (12 s
			// under -race for two in CI); long: all nine.
			for _, oi := range rng.Perm(len(offsets))[:testsize.Pick(1, len(offsets))] {
				badClockCase(t, name, where, lines, offsets[oi], rng, clean, cc, ce)
			}
		}
	}
}

// badClockCase is one case of TestBadClockCostsOnlyItsFootprint: one bad
// event off ms away from its neighbour, inserted at where.
func badClockCase(t *testing.T, name, where string, lines []string, off int64, rng *rand.Rand, clean []row, cc *collect, ce *Engine) {
	maxW := int64(slices.Max(smallDef.Windows))
	disk := int64(3*1*(1+1) + 1) // smallDef's largest ring is 1
	cleanLast := cc.closed[len(cc.closed)-1]
	i := map[string]int{"first": 0, "middle": 1 + rng.IntN(len(lines)-2), "last": len(lines)}[where]
	near := lines[min(i, len(lines)-1)]
	ts := tsOf(t, near) + off
	if off == encode.MaxTS {
		ts = encode.MaxTS
	}
	bad := withTS(strings.Replace(near, `"rider_id":"`, `"rider_id":"bad-clock-`, 1), ts)
	in := slices.Insert(slices.Clone(lines), i, bad)
	// The input's tail: the last line, or an event ahead that nothing
	// after it passes and fewer than K riders after it contradict (a
	// later event with a lower ts): the end closes through it, and with
	// it the clean stream's trailing windows (docs/EVENT-TIME.md).
	tail := where == "last" || isTail(t, in[i+1:], ts, DefaultFutureConfig().ConfirmRiders)
	t.Run(fmt.Sprintf("%s/%s/%+ds", name, where, off/1000), func(t *testing.T) {
		got, _, e := runEngine(t, in, smallDef, 30_000, 2, 16<<10)
		diffRows(t, got, reference(t, in, smallDef, 30_000))
		s, cs := e.Stats.Snapshot(), ce.Stats.Snapshot()
		// Every other event fares as in the clean stream: the bad one is
		// late, counted, a duplicate or future, and nothing else moves.
		if s.Late-cs.Late > 1 || s.Late < cs.Late || s.Late+s.Counted+s.Duplicates+s.RejectedTotal != cs.Late+cs.Counted+cs.Duplicates+cs.RejectedTotal+1 {
			t.Fatalf("with the bad clock %+v\nclean %+v", s, cs)
		}
		m := minuteOf(ts)
		changed := map[int64]int64{}
		for _, k := range changedRows(got, clean) {
			if tail && k > cleanLast {
				continue // the clean stream's trailing windows
			}
			if k < m || k > m+maxW-1 {
				t.Fatalf("a row of minute %s changed; the bad event claims %s", encode.MinuteStart(k), encode.MinuteStart(m))
			}
			if changed[k]++; changed[k] > disk {
				t.Fatalf("over %d rows of minute %s changed", disk, encode.MinuteStart(k))
			}
		}
	})
}

// isTail says whether an event at ts followed by after stays the input's
// tail: no later event at or past it, fewer than k riders contradicting.
func isTail(t *testing.T, after []string, ts int64, k int) bool {
	riders := map[string]bool{}
	for _, l := range after {
		lt := tsOf(t, l)
		if lt >= ts {
			return false
		}
		var ev struct {
			Rider string `json:"rider_id"`
		}
		json.Unmarshal([]byte(l), &ev)
		riders[ev.Rider] = true
	}
	return len(riders) < k
}

// changedRows lists the minute of every row that differs between a and b
// (in one and not the other, or with other features).
func changedRows(a, b []row) []int64 {
	key := func(r row) string { return fmt.Sprintf("%d %s %x", r.minute, r.product, r.cell) }
	bm := map[string]row{}
	for _, r := range b {
		bm[key(r)] = r
	}
	var out []int64
	for _, r := range a {
		o, ok := bm[key(r)]
		if !ok || !slices.Equal(o.features, r.features) {
			out = append(out, r.minute)
		}
		delete(bm, key(r))
	}
	for _, r := range bm {
		out = append(out, r.minute)
	}
	return out
}

// TestJunkProductsCostOnlyThemselves is issue 21 point 5: 1,000 events,
// each with a new random product UUID and rider, ahead of real data. With
// the products file (Config.Products, -products=FILE) each is one
// unknown_product reject. Without it the first 192 junk products take
// codes (they could be real), the rest wait for K riders who never come
// and are rejected as unconfirmed_product, and the real products, new
// while codes are scarce, wait for their K-th rider and then count in
// full. Either way the real products' rows are the clean stream's. With
// no reserve (the rule before the hold) the junk took every code and
// real events were rejected as too_many_products.
func TestJunkProductsCostOnlyThemselves(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	lines := genLines(t, 6000, 31, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC))
	allow := map[encode.UUID]string{}
	var ev encode.Event
	var p encode.Projector
	for _, l := range lines {
		if p.Project([]byte(l), &ev) == encode.OK {
			allow[ev.Product] = "real " + ev.Product.String()[:8]
		}
	}
	rng := rand.New(rand.NewPCG(testsize.Seed(t), 31))
	var junk []string
	for i := range 1000 {
		var u encode.UUID
		for j := range u {
			u[j] = byte(rng.IntN(256))
		}
		l := strings.Replace(lines[i%len(lines)], `"rider_id":"`, `"rider_id":"junk-`, 1)
		i := strings.Index(l, `"product_type":"`) + len(`"product_type":"`)
		junk = append(junk, l[:i]+u.String()+l[i+36:])
	}
	in := append(junk, lines...)
	run := func(products map[encode.UUID]string, input []string, reserve int) ([]row, Summary) {
		cfg := DefaultConfig()
		cfg.Def, cfg.Parallelism, cfg.ChunkBytes, cfg.Products = smallDef, 2, 16<<10, products
		cfg.Future.ProductReserve = reserve
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c := &collect{}
		if err := e.Run(context.Background(), strings.NewReader(strings.Join(input, "\n")+"\n"), c); err != nil {
			t.Fatal(err)
		}
		return c.rows, e.Stats.Snapshot()
	}
	reserve := DefaultFutureConfig().ProductReserve
	clean, cs := run(nil, lines, reserve)
	got, s := run(allow, in, reserve)
	if s.Rejected["unknown_product"] != 1000 || s.Counted != cs.Counted || s.Late != cs.Late {
		t.Fatalf("with the products file: %+v\nclean: %+v", s, cs)
	}
	rowsEqual(t, got, clean)
	got, s = run(nil, in, reserve)
	coded := encode.MaxProducts - reserve
	if s.Rejected["unconfirmed_product"] != int64(1000-coded) || s.RejectedTotal != int64(1000-coded) ||
		s.Counted != cs.Counted+int64(coded) || s.Late != cs.Late {
		t.Fatalf("without the products file: %+v\nclean: %+v", s, cs)
	}
	rowsEqual(t, slices.DeleteFunc(got, func(r row) bool {
		u, _ := encode.ParseUUID([]byte(r.product))
		return allow[u] == ""
	}), clean)
	if _, s := run(nil, in, 0); s.Rejected["too_many_products"] == 0 {
		t.Fatalf("with no reserve the junk took no code from real products: %+v", s)
	}
}

// TestRiderBehindOnTheLastLineLosesNothing pins the case the tail rule of
// checkpoint version 4 fixed: a thin tail (pickups minutes apart, each a
// new rider) ending with one rider whose clock is 10 minutes behind. That
// rider joined the K riders and moved T, and the old rule (the largest ts
// since T last moved) then closed only through its own minute: the honest
// pickups before it were left open and rejected as future. Now every
// honest minute closes, and the rows are the clean stream's but in the
// late rider's own footprint.
func TestRiderBehindOnTheLastLineLosesNothing(t *testing.T) {
	t.Parallel()
	var lines []string
	for i := range 20 { // 20 riders, a minute apart: T moves with each
		lines = append(lines, ev(fmt.Sprintf("10:%02d:10", i), fmt.Sprint("r", i), 40.758, -73.9855))
	}
	for i, m := range []int{25, 31, 38} { // the thin tail
		lines = append(lines, ev(fmt.Sprintf("10:%02d:10", m), fmt.Sprint("tail", i), 40.758, -73.9855))
	}
	clean, cc, _ := runEngine(t, lines, smallDef, 30_000, 2, 16<<10)
	behind := append(slices.Clone(lines), ev("10:28:10", "behind", 40.70, -74.00)) // 10 min behind, far away
	got, gc, e := runEngine(t, behind, smallDef, 30_000, 2, 16<<10)
	diffRows(t, got, reference(t, behind, smallDef, 30_000))
	last := time.Date(2024, 6, 1, 10, 38, 0, 0, time.UTC).Unix() / 60
	if s := e.Stats.Snapshot(); s.Rejected["future"] != 0 || !slices.Contains(gc.closed, last) {
		t.Fatalf("the honest 10:38 pickup's minute: closed %v, future %d", slices.Contains(gc.closed, last), s.Rejected["future"])
	}
	// Its footprint: its minute 10:28 and the windows after it (max W 4).
	footprint := func(r row) bool { return r.minute >= last-10 && r.minute <= last-10+3 }
	outside := func(rs []row) []row {
		return slices.DeleteFunc(slices.Clone(rs), footprint)
	}
	diffRows(t, outside(got), outside(clean))
	for _, m := range cc.closed {
		if !slices.Contains(gc.closed, m) {
			t.Fatalf("minute %s closed in the clean stream, not with the rider behind", encode.MinuteStart(m))
		}
	}
}
