package pipeline

import (
	"context"
	"fmt"
	"hash/maphash"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/sink"
)

// router stands in for the internal topic: it hands each dedup process's
// output to the aggregators whose regions an event reaches (its halo),
// and watermarks and product names to all of them.
type router struct {
	mu       sync.Mutex // dedup processes run at once
	src      int
	aggs     []*aggregate.Aggregator
	owner    func(region uint64) int
	maxK     int
	res      int
	per      [][]aggregate.Counted
	regions  []uint64
	sent     int // events handed to aggregators (halo copies included)
	received int // events from dedup
}

type routerSource struct {
	r   *router
	src int
}

func (s routerSource) Product(code byte, u encode.UUID) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	for _, a := range s.r.aggs {
		if err := a.Product(s.src, code, u); err != nil {
			return err
		}
	}
	return nil
}

func (s routerSource) Counted(evs []aggregate.Counted) error {
	r := s.r
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.per {
		r.per[i] = r.per[i][:0]
	}
	for _, c := range evs {
		var err error
		if r.regions, err = aggregate.Regions(c.Cell, r.maxK, r.res, r.regions[:0]); err != nil {
			return err
		}
		seen := map[int]bool{}
		for _, g := range r.regions {
			if o := r.owner(g); !seen[o] {
				seen[o] = true
				r.per[o] = append(r.per[o], c)
			}
		}
	}
	r.received += len(evs)
	for i, a := range r.aggs {
		r.sent += len(r.per[i])
		if err := a.Counted(s.src, r.per[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s routerSource) Watermark(through, clock int64) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	for _, a := range s.r.aggs {
		if err := a.Watermark(context.Background(), s.src, through, clock); err != nil {
			return err
		}
	}
	return nil
}

// TestScaleOutEqualsSingleProcess: dedup processes feeding aggregate
// processes that each own some regions produce exactly the single
// process's rows: 1 dedup + 3 aggregators, and 2 dedup processes (riders
// split between them, as a Key_Shared subscription by rider does) + 3
// aggregators; for every aggregate.
func TestScaleOutEqualsSingleProcess(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	gc := gen.DefaultConfig()
	gc.EventsPerMinute, gc.Riders, gc.Hotspots, gc.RadiusKm = 3000, 2000, 4, 60
	gc.EventsPerMinute = testsize.Pick(500, 3000) // the same minutes and city, fewer sources
	lines, _ := genWith(t, gc, 12*gc.EventsPerMinute)
	for _, a := range feature.Aggregates() { // a halo carries what every aggregate needs
		t.Run(a.Name, func(t *testing.T) {
			def := feature.Definition{Resolution: 8, Rings: []int{0, 1, 3, 6}, Windows: []int{1, 4, 8}, Aggregate: a.Name}
			scaleOutEqualsSingleProcess(t, lines, def)
		})
	}
}

func scaleOutEqualsSingleProcess(t *testing.T, lines []string, def feature.Definition) {
	want, _, _ := runEngine(t, lines, def, 30_000, 2, 64<<10)
	sortRows(want)

	const regionRes = 5 // ~250 km² regions: a 60 km city spans many, so halos matter
	var seed = maphash.MakeSeed()
	for _, dedups := range []int{1, 2} {
		const nAgg = 3
		owner := func(region uint64) int { return int(maphash.Comparable(seed, region) % nAgg) }
		r := &router{maxK: slices0Max(def.Rings), res: regionRes, owner: owner, per: make([][]aggregate.Counted, nAgg)}
		sinks := make([]*collect, nAgg)
		for i := range nAgg {
			cfg := DefaultConfig()
			cfg.Def, cfg.Parallelism = def, 1
			cfg.Owns = func(cell uint64) bool { return owner(aggregate.Region(cell, regionRes)) == i }
			sinks[i] = &collect{}
			a, err := aggregate.NewAggregator(cfg.Aggregate(), dedups, sinks[i], nil)
			if err != nil {
				t.Fatal(err)
			}
			r.aggs = append(r.aggs, a)
		}
		// Riders split between dedup processes by a hash of rider_id.
		parts := make([][]string, dedups)
		for _, l := range lines {
			i := strings.Index(l, `"rider_id":"`)
			rider := l[i+12 : i+12+strings.IndexByte(l[i+12:], '"')]
			k := int(maphash.String(seed, rider) % uint64(dedups))
			parts[k] = append(parts[k], l)
		}
		var wg sync.WaitGroup
		errs := make([]error, dedups)
		for d := range dedups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cfg := DefaultConfig()
				cfg.Def, cfg.Parallelism, cfg.ChunkBytes = def, 1, 16<<10
				e, err := New(cfg)
				if err != nil {
					errs[d] = err
					return
				}
				e.Emit = routerSource{r: r, src: d}
				errs[d] = e.Run(context.Background(), strings.NewReader(strings.Join(parts[d], "\n")), nil)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		var got []row
		for _, s := range sinks {
			got = append(got, s.rows...)
		}
		sortRows(got)
		diffRows(t, got, want)
		t.Logf("%d dedup, %d aggregators: %d rows equal; %d counted events sent as %d (halo copies: +%.1f%%)",
			dedups, nAgg, len(got), r.received, r.sent, 100*float64(r.sent-r.received)/float64(max(1, r.received)))
	}
}

func slices0Max(s []int) int {
	m := s[0]
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

// recorder is a CheckpointingWriter keeping every counted event (by
// product UUID) and every checkpoint.
type recorder struct {
	names  [encode.MaxProducts]encode.UUID
	events map[string]int // "minute product cell" -> count
	cps    [][]byte
	cpAt   []int64
	wms    []int64
	// checkpointed is the minute of the last checkpoint, for a test to
	// wait on while the engine runs.
	checkpointed atomic.Int64
}

func newRecorder() *recorder {
	r := &recorder{events: map[string]int{}}
	r.checkpointed.Store(noMinute)
	return r
}

func (r *recorder) Product(code byte, u encode.UUID) error { r.names[code] = u; return nil }
func (r *recorder) Counted(evs []aggregate.Counted) error {
	for _, c := range evs {
		r.events[fmt.Sprint(c.Minute, r.names[c.Product], c.Cell)]++
	}
	return nil
}
func (r *recorder) Watermark(through, _ int64) error { r.wms = append(r.wms, through); return nil }
func (r *recorder) Checkpoint(through int64, cp []byte) error {
	r.cps, r.cpAt = append(r.cps, slices.Clone(cp)), append(r.cpAt, through)
	r.checkpointed.Store(through)
	return nil
}

// TestDedupRoleResumes: a dedup-role engine stopped in the middle of its
// input and started again from its last checkpoint (ResumeEmit) hands on,
// after the checkpoint, only events of minutes after it; what the first
// run handed on of those minutes is what the aggregators take back, and
// the first run's events up to the checkpoint's minute with the second's
// are exactly one uninterrupted run's. Every watermark follows its
// checkpoint.
func TestDedupRoleResumes(t *testing.T) {
	t.Parallel()
	gc := gen.DefaultConfig()
	gc.EventsPerMinute, gc.Riders, gc.LateFraction = testsize.Pick(1500, 3000), 1500, 0.02
	buf, err := gen.Generate(gc, 12*gc.EventsPerMinute)
	if err != nil {
		t.Fatal(err)
	}
	input := string(buf)
	cfg := DefaultConfig()
	cfg.Def = feature.Definition{Resolution: 8, Rings: []int{0, 1}, Windows: []int{1, 2}}
	cfg.Parallelism = 2
	run := func(in io.Reader, ctx context.Context, raw []byte, rec *recorder) (*recorder, *Resumed, error) {
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		e.Identity = "input"
		var r *Resumed
		if raw != nil {
			if r, err = e.ResumeEmit(raw, "input"); err != nil {
				t.Fatal(err)
			}
		}
		e.Emit = rec
		return rec, r, e.Run(ctx, in, nil)
	}
	whole, _, err := run(strings.NewReader(input), context.Background(), nil, newRecorder())
	if err != nil {
		t.Fatal(err)
	}
	if len(whole.cps) < 5 || len(whole.wms) != len(whole.cps) {
		t.Fatalf("%d checkpoints, %d watermarks: want one checkpoint before each watermark", len(whole.cps), len(whole.wms))
	}
	for i, w := range whole.wms {
		if whole.cpAt[i] != w {
			t.Fatalf("watermark %d at minute %d follows a checkpoint at %d", i, w, whole.cpAt[i])
		}
	}
	for _, cut := range []int{len(input) / 3, len(input) / 2, len(input) * 4 / 5} {
		cut = strings.Index(input[cut:], "\n") + cut + 1
		// The first run sees the input up to cut, then stops dead.
		pr, pw := io.Pipe()
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan *recorder, 1)
		rec := newRecorder()
		go func() {
			run(pr, ctx, nil, rec)
			done <- rec
		}()
		io.WriteString(pw, input[:cut])
		// Stop once it has checkpointed what all but the last (partial)
		// chunks it was given close: the minutes before the watermark of
		// the input up to 512 KiB before the cut.
		maxTS, before := int64(0), input[:cut-512<<10]
		for line := range strings.Lines(before[:strings.LastIndexByte(before, '\n')+1]) {
			maxTS = max(maxTS, tsOf(t, strings.TrimSuffix(line, "\n")))
		}
		want := (maxTS-cfg.Lateness.Milliseconds())/60_000 - 1
		for deadline := time.Now().Add(time.Minute); rec.checkpointed.Load() < want; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("cut at %d: no checkpoint through minute %d within a minute (last: %d)", cut, want, rec.checkpointed.Load())
			}
		}
		stop()
		pw.Close()
		first := <-done
		if len(first.cps) == 0 {
			t.Fatalf("cut at %d: no checkpoint", cut)
		}
		w := first.cpAt[len(first.cpAt)-1]
		second, r, err := run(strings.NewReader(input), context.Background(), first.cps[len(first.cps)-1], newRecorder())
		if err != nil {
			t.Fatal(err)
		}
		if r.Minute != w {
			t.Fatalf("resumed after minute %d, the checkpoint was at %d", r.Minute, w)
		}
		// What aggregators keep of the first run: its events of minutes
		// <= w (DropAbove takes back the rest).
		got := map[string]int{}
		for k, n := range first.events {
			var m int64
			fmt.Sscan(k, &m)
			if m <= w {
				got[k] += n
			}
		}
		for k, n := range second.events {
			var m int64
			fmt.Sscan(k, &m)
			if m <= w {
				t.Fatalf("cut at %d: the resumed run handed on an event of minute %d <= %d", cut, m, w)
			}
			got[k] += n
		}
		if !maps.Equal(got, whole.events) {
			t.Fatalf("cut at %d (resumed after minute %d): %d event keys, one run %d", cut, w, len(got), len(whole.events))
		}
	}
}

// clockSink records the retention clock of each staged minute: a
// sink.Checkpointer for the single process, a sink.PartCheckpointer (one
// part) for the aggregate role.
type clockSink struct {
	clocks map[int64]int64
}

func (s *clockSink) Write(context.Context, *encode.Batch) error      { return nil }
func (s *clockSink) CloseMinute(context.Context, int64) error        { return nil }
func (s *clockSink) Close() error                                    { return nil }
func (s *clockSink) StageState(m int64, st sink.State)               { s.clocks[m] = st.Clock }
func (s *clockSink) StagePartState(_ string, m int64, st sink.State) { s.clocks[m] = st.Clock }
func (s *clockSink) LoadState() ([]byte, func(int64) ([]byte, bool, error), error) {
	return nil, nil, nil
}
func (s *clockSink) LoadPartState(string) ([]byte, func(int64) ([]byte, bool, error), error) {
	return nil, nil, nil
}

// oneAggregator hands a dedup process's output straight to an aggregator.
type oneAggregator struct{ a *aggregate.Aggregator }

func (o oneAggregator) Product(code byte, u encode.UUID) error { return o.a.Product(0, code, u) }
func (o oneAggregator) Counted(evs []aggregate.Counted) error  { return o.a.Counted(0, evs) }
func (o oneAggregator) Watermark(through, clock int64) error {
	return o.a.Watermark(context.Background(), 0, through, clock)
}

// TestAggregateRoleClockFollowsEventTime (issue 21, the store's clock in
// the scale-out): the end of the input closes minutes that fewer than K
// riders vouch for; in the aggregate role, as in one process, they do not
// move the sink's retention clock. A replay is followed by 15 made-up
// riders an hour later (one fewer than K): every minute's staged clock is
// the single process's, and the made-up riders' minute has the replay's
// last event-time minute as its clock, not its own.
func TestAggregateRoleClockFollowsEventTime(t *testing.T) {
	t.Parallel()
	lines := genLines(t, 6000, 5, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC))
	for i := range 15 {
		lines = append(lines, ev(fmt.Sprintf("12:00:%02d", i), fmt.Sprint("made-up-", i), 40.758, -73.9855))
	}
	input := strings.Join(lines, "\n") + "\n"
	cfg := DefaultConfig()
	cfg.Def = smallDef
	one := &clockSink{clocks: map[int64]int64{}}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background(), strings.NewReader(input), one); err != nil {
		t.Fatal(err)
	}
	role := &clockSink{clocks: map[int64]int64{}}
	a, err := aggregate.NewAggregator(cfg.Aggregate(), 1, role, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.UseParts(aggregate.PartConfig{Names: []string{"p0"}, Owned: []int{0}, Layout: "test",
		CountFrom: func(uint64) (int, error) { return 0, nil }}, role); err != nil {
		t.Fatal(err)
	}
	if e, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	e.Emit = oneAggregator{a}
	if err := e.Run(context.Background(), strings.NewReader(input), nil); err != nil {
		t.Fatal(err)
	}
	made := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC).Unix() / 60
	if c, ok := one.clocks[made]; !ok || c >= made {
		t.Fatalf("single process: the made-up riders' minute staged clock %d (ok %v), want before %d", c, ok, made)
	}
	if !maps.Equal(role.clocks, one.clocks) {
		for m, c := range one.clocks {
			if role.clocks[m] != c {
				t.Errorf("minute %s: the aggregate role staged clock %d, one process %d", encode.MinuteStart(m), role.clocks[m], c)
			}
		}
		t.Fatalf("%d minutes staged by the role, %d by one process", len(role.clocks), len(one.clocks))
	}
}
