package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	"github.com/uber/h3-go/v4"
	"go.uber.org/goleak"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/sink"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(norace.M(m)) }

const prodP = "a1b2c3d4-0000-4000-8000-000000000001"

func ev(ts string, rider string, lat, lng float64) string {
	t, _ := time.Parse(time.RFC3339, "2024-06-01T"+ts+"Z")
	return fmt.Sprintf(`{"ts":%d,"rider_id":%q,"lat":%v,"lng":%v,"product_type":%q}`, t.UnixMilli(), rider, lat, lng, prodP)
}

// TestGoldenHandChecked pins rows worked out by hand (see the comments) for
// rings {0,1}, windows {1,2}, lateness 0: features are
// [k0w1, k0w2, k1w1, k1w2]. Three riders: event time by one rider (K=1, the
// largest ts), so that one event closes a minute.
func TestGoldenHandChecked(t *testing.T) {
	t.Parallel()
	// X = 882a100d67fffff (Times Square), Y = 882a100d65fffff, a neighbour.
	const X, Y = 0x882a100d67fffff, 0x882a100d65fffff
	lines := []string{
		ev("10:00:05", "a", 40.7580, -73.9855),   // counted: X @10:00
		ev("10:00:20", "a", 40.7580, -73.9855),   // duplicate of a/P/10:00
		ev("10:00:30", "b", 40.76319, -73.98411), // counted: Y @10:00
		ev("10:01:10", "a", 40.7580, -73.9855),   // counted: X @10:01; closes 10:00
		ev("10:00:50", "c", 40.7580, -73.9855),   // late: 10:00 closed
	}
	def := feature.Definition{Resolution: 8, Rings: []int{0, 1}, Windows: []int{1, 2}}
	rows, sink, e := runEngineFuture(t, lines, def, 0, 2, 4096, oneRider)
	s := e.Stats.Snapshot()
	if s.Counted != 3 || s.Duplicates != 1 || s.Late != 1 || s.RejectedTotal != 0 {
		t.Fatalf("counted %d dup %d late %d rejected %d", s.Counted, s.Duplicates, s.Late, s.RejectedTotal)
	}
	m0 := int64(1717236000000 / 60000)
	if !slices.Equal(sink.closed, []int64{m0, m0 + 1}) {
		t.Fatalf("closed minutes %v", sink.closed)
	}
	byKey := map[string][]int32{}
	perMinute := map[int64]map[string]int{}
	xn, _ := h3.GridDisk(h3.Cell(X), 1)
	yn, _ := h3.GridDisk(h3.Cell(Y), 1)
	kind := func(c uint64) string {
		inX, inY := slices.Contains(xn, h3.Cell(c)), slices.Contains(yn, h3.Cell(c))
		switch {
		case c == X || c == Y:
			return "source"
		case inX && inY:
			return "both"
		case inX:
			return "x-only"
		case inY:
			return "y-only"
		}
		return "?"
	}
	for _, r := range rows {
		byKey[fmt.Sprintf("%d/%x", r.minute-m0, r.cell)] = r.features
		if perMinute[r.minute-m0] == nil {
			perMinute[r.minute-m0] = map[string]int{}
		}
		perMinute[r.minute-m0][kind(r.cell)+fmt.Sprint(r.features)]++
	}
	// 10:00: c(X)=c(Y)=1. X: own 1, with neighbour Y 2.
	for key, want := range map[string][]int32{
		"0/882a100d67fffff": {1, 1, 2, 2}, "0/882a100d65fffff": {1, 1, 2, 2},
		// 10:01: c(X)=1. X: w1 1, w2 1+1; k1: w1 1, w2 (X+Y at 10:00) 2 + 1.
		"1/882a100d67fffff": {1, 2, 1, 3}, "1/882a100d65fffff": {0, 1, 1, 3},
	} {
		if !slices.Equal(byKey[key], want) {
			t.Errorf("row %s = %v, want %v", key, byKey[key], want)
		}
	}
	want := map[int64]map[string]int{
		// Of X's 6 neighbours, one is Y and two are Y's neighbours too: 3
		// are X's alone (likewise for Y): 2+2+3+3 = 10 = |disk X ∪ disk Y|.
		0: {"source[1 1 2 2]": 2, "both[0 0 2 2]": 2, "x-only[0 0 1 1]": 3, "y-only[0 0 1 1]": 3},
		1: {"source[1 2 1 3]": 1, "source[0 1 1 3]": 1, "both[0 0 1 3]": 2, "x-only[0 0 1 2]": 3, "y-only[0 0 0 1]": 3},
	}
	if fmt.Sprint(perMinute) != fmt.Sprint(want) {
		t.Fatalf("rows by kind\n got %v\nwant %v", perMinute, want)
	}
	// The wire form of one row, to the byte.
	var buf bytes.Buffer
	b := &encode.Batch{Minute: m0, NumFeatures: 4, Cells: []uint64{X}, Products: []byte{0}, Features: []int32{1, 1, 2, 2}, Names: e.Products}
	buf.Write(encode.AppendRowJSON(nil, b, 0))
	if got := buf.String(); got != `{"h3":"882a100d67fffff","product_type":"a1b2c3d4-0000-4000-8000-000000000001","minute":"2024-06-01T10:00:00Z","features":[1,1,2,2]}`+"\n" {
		t.Fatalf("wire form: %s", got)
	}
}

// oneRider is event time by one rider: T is the largest ts (K=1).
var oneRider = FutureConfig{MaxSkew: DefaultFutureConfig().MaxSkew, ConfirmRiders: 1}

// TestLatenessBoundary: minute m closes exactly when event time - lateness
// reaches (m+1)*60000 (K=1: event time is the largest ts).
func TestLatenessBoundary(t *testing.T) {
	t.Parallel()
	def := feature.Definition{Resolution: 8, Rings: []int{0}, Windows: []int{1}}
	for _, tc := range []struct {
		trigger string
		late    int64
	}{
		{"10:01:29.999", 0}, // watermark 10:00:59.999: 10:00 still open
		{"10:01:30", 1},     // watermark 10:01:00: 10:00 closed
	} {
		lines := []string{ev("10:00:10", "a", 40.7580, -73.9855), ev(tc.trigger, "b", 40.7580, -73.9855), ev("10:00:59", "c", 40.7580, -73.9855)}
		_, _, e := runEngineFuture(t, lines, def, 30_000, 1, 4096, oneRider)
		if got := e.Stats.Late.Load(); got != tc.late {
			t.Errorf("trigger %s: late %d, want %d", tc.trigger, got, tc.late)
		}
	}
}

// TestOneRiderCannotCloseAMinute: with K=2, event time is the second
// largest of the riders' latest ts. Rider b five minutes ahead closes
// nothing (c's 10:00:59 still counts); once a second rider, d, is past
// 10:01:30, 10:00 closes and e's 10:00:50 is late. b's own event counts in
// the minute it claims.
func TestOneRiderCannotCloseAMinute(t *testing.T) {
	t.Parallel()
	def := feature.Definition{Resolution: 8, Rings: []int{0}, Windows: []int{1}}
	lines := []string{
		ev("10:00:10", "a", 40.7580, -73.9855),
		ev("10:05:00", "b", 40.7580, -73.9855), // alone ahead: T stays 10:00:10
		ev("10:00:59", "c", 40.7580, -73.9855), // counted
		ev("10:01:30", "d", 40.7580, -73.9855), // T = 10:01:30: 10:00 closes
		ev("10:00:50", "e", 40.7580, -73.9855), // late
	}
	rows, sink, e := runEngineFuture(t, lines, def, 30_000, 1, 4096, FutureConfig{MaxSkew: time.Minute, ConfirmRiders: 2})
	// The end of the input closes through d's 10:01 (T) and the events
	// since T last moved (e's 10:00:50): b's 10:05 is not reached, so b is
	// rejected as future at the end, and its minute never closes.
	if s := e.Stats.Snapshot(); s.Late != 1 || s.Counted != 3 || s.Rejected["future"] != 1 || s.RejectedTotal != 1 {
		t.Fatalf("%+v", s)
	}
	m0 := int64(1717236000000 / 60000)
	got := map[int64]int32{}
	for _, r := range rows {
		got[r.minute-m0] += r.features[0]
	}
	if want := map[int64]int32{0: 2, 1: 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("counts by minute %v, want %v; closed %v; stats %+v", got, want, sink.closed, e.Stats.Snapshot())
	}
}

// TestDeterministicAcrossParallelism: on generated city data with late and
// malformed lines, ndjson output is byte-identical at parallelism 1, 2 and
// 4 with different chunk sizes.
func TestDeterministicAcrossParallelism(t *testing.T) {
	t.Parallel()
	gc := gen.DefaultConfig()
	gc.EventsPerMinute = 20_000
	gc.Riders = 5000
	gc.LateFraction = 0.01
	gc.MalformedFraction = 0.01
	n := 60_000
	if !testsize.Long() {
		// 2 minutes at a third of the rate: minute boundaries and chunk
		// splits are crossed, in a fifth of the -race time (40 s).
		gc.EventsPerMinute, gc.Riders, n = 6000, 2000, 12_000
	}
	in, err := gen.Generate(gc, n)
	if err != nil {
		t.Fatal(err)
	}
	var outs []string
	for _, tc := range []struct{ par, chunk int }{{1, 256 << 10}, {2, 8 << 10}, {4, 64 << 10}} {
		cfg := DefaultConfig()
		cfg.Parallelism, cfg.ChunkBytes = tc.par, tc.chunk
		// Order is what is under test, not the size of a disk: rings to 5
		// in the short form (k=20 under -race was most of its time).
		cfg.Def = testsize.Pick(feature.Definition{Resolution: 8, Rings: []int{0, 1, 5}, Windows: []int{1, 4, 32}}, feature.Default())
		e, _ := New(cfg)
		var out bytes.Buffer
		if err := e.Run(context.Background(), bytes.NewReader(in), sink.NewNDJSON(&out, nil)); err != nil {
			t.Fatal(err)
		}
		s := e.Stats.Snapshot()
		if s.Lines != int64(n) || s.RejectedTotal == 0 || s.Late == 0 || s.Duplicates == 0 || s.Rows == 0 {
			t.Fatalf("implausible stats %+v", s)
		}
		outs = append(outs, out.String())
	}
	for i := 1; i < len(outs); i++ {
		if outs[i] != outs[0] {
			t.Fatalf("output %d differs from parallelism 1 (%d vs %d bytes)", i, len(outs[i]), len(outs[0]))
		}
	}
}

func TestRejectsFileAndLongLines(t *testing.T) {
	t.Parallel()
	good := ev("10:00:05", "a", 40.7580, -73.9855)
	long := `{"pad":"` + strings.Repeat("x", 5000) + `"}`
	in := strings.Join([]string{good, "not json", "", long, `{"ts":1}`, good + "\r"}, "\n") // no final newline
	// Whole input in one read (the parser enforces the limit), and in
	// small reads (the reader cuts the line off without buffering it).
	for _, r := range []io.Reader{strings.NewReader(in), iotest.HalfReader(strings.NewReader(in))} {
		checkRejects(t, in, r)
	}
}

func checkRejects(t *testing.T, in string, r io.Reader) {
	cfg := DefaultConfig()
	cfg.MaxLineBytes = 1024
	cfg.ChunkBytes = 4096
	e, _ := New(cfg)
	var rej bytes.Buffer
	e.Rejects = &rej
	c := &collect{}
	if err := e.Run(context.Background(), r, c); err != nil {
		t.Fatal(err)
	}
	s := e.Stats.Snapshot()
	want := map[string]int64{"invalid_json": 1, "line_too_long": 1, "missing_rider_id": 1}
	if fmt.Sprint(s.Rejected) != fmt.Sprint(want) || s.Blank != 1 || s.Lines != 5 || s.Duplicates != 1 || s.Counted != 1 {
		t.Fatalf("stats %+v", s)
	}
	lines := strings.Split(strings.TrimSpace(rej.String()), "\n")
	if len(lines) != 3 || lines[0] != `{"line":2,"reason":"invalid_json","text":"not json"}` ||
		!strings.HasPrefix(lines[1], `{"line":4,"reason":"line_too_long","text":"{\"pad\":\"xxx`) ||
		lines[2] != `{"line":5,"reason":"missing_rider_id","text":"{\"ts\":1}"}` {
		t.Fatalf("rejects file:\n%s", rej.String())
	}
}

// TestSinkFailureStopsRun: a sink error ends the run with that error.
func TestSinkFailureStopsRun(t *testing.T) {
	t.Parallel()
	var lines []string
	for i := range 300 {
		lines = append(lines, ev(fmt.Sprintf("10:%02d:00", i/10), fmt.Sprint("r", i), 40.7580, -73.9855))
	}
	cfg := DefaultConfig()
	e, _ := New(cfg)
	c := &collect{failAt: 3}
	err := e.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")), c)
	if err == nil || !strings.Contains(err.Error(), "injected sink failure") {
		t.Fatalf("err = %v", err)
	}
}

// slowReader is a live source that sends some lines, then nothing.
type slowReader struct {
	mu    sync.Mutex
	data  []byte
	gate  chan struct{}
	close chan struct{}
}

func (r *slowReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	if len(r.data) > 0 {
		n := copy(p, r.data)
		r.data = r.data[n:]
		r.mu.Unlock()
		return n, nil
	}
	r.mu.Unlock()
	select {
	case <-r.close:
		return 0, io.EOF
	}
}
func (r *slowReader) Live() bool { return true }

// TestIdleAdvancesWatermark: on a quiet live source, minutes close once
// the idle timeout passes, as event time follows the clock. In a synctest
// bubble the clock is fake and synctest.Wait returns only once every
// goroutine of the engine is blocked, so "not closed yet" is checked after
// the engine has done all it would do, on any machine.
func TestIdleAdvancesWatermark(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.IdleTimeout = 200 * time.Millisecond
		// The bubble's clock starts in 2000, before the event: the engine's
		// clock is the bubble's moved to 2027, so that the event is not in
		// the future of a live source.
		start := time.Now()
		cfg.Now = func() time.Time { return time.Unix(1_800_000_000, 0).Add(time.Since(start)) }
		e, _ := New(cfg)
		src := &slowReader{data: []byte(ev("10:00:05", "a", 40.7580, -73.9855) + "\n"), close: make(chan struct{})}
		c := &collect{}
		done := make(chan error)
		go func() { done <- e.Run(context.Background(), src, c) }()
		// The stages hand batches on by timers too: let fake time run in
		// small steps until the event is counted.
		for range 100 {
			if synctest.Wait(); e.Stats.Counted.Load() == 1 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if e.Stats.Counted.Load() != 1 {
			t.Fatalf("counted %d, want the one event", e.Stats.Counted.Load())
		}
		// 10:00:05 + 30s lateness: minute 10:00 closes once event time passes
		// 10:01:30, i.e. 85s of quiet on the clock.
		time.Sleep(80 * time.Second)
		synctest.Wait()
		if e.Stats.Minutes.Load() != 0 {
			t.Fatal("closed too early")
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if e.Stats.Minutes.Load() != 1 {
			t.Fatalf("%d minutes closed after 90 s of quiet, want 1", e.Stats.Minutes.Load())
		}
		close(src.close)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if c.closed[0] != 1717236000000/60000 {
			t.Fatalf("closed %v", c.closed)
		}
	})
}

// TestCancelStops: cancelling the context ends Run promptly with its error,
// even with a reader that never returns more data on its own.
func TestCancelStops(t *testing.T) {
	t.Parallel()
	src := &slowReader{close: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	e, _ := New(DefaultConfig())
	done := make(chan error)
	go func() { done <- e.Run(ctx, src, &collect{}) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	close(src.close) // a real source is stopped by its owner (source.Stop)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// TestConfigValidate: every knob the engine composes (its own, the
// definition's, the future rule's, dedup's, kring's) refuses values out of
// its range with an error naming its flag, and the defaults pass.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		flag string
		mut  func(*Config)
	}{
		{"resolution", func(c *Config) { c.Def.Resolution = 16 }},
		{"rings", func(c *Config) { c.Def.Rings = []int{31} }},
		{"rings", func(c *Config) { c.Def.Rings = []int{1, 1} }},
		{"windows", func(c *Config) { c.Def.Windows = []int{0} }},
		{"windows", func(c *Config) { c.Def.Windows = make([]int, 17) }},
		{"windows.lateness", func(c *Config) { c.Lateness = -time.Second }},
		{"windows.idle-timeout", func(c *Config) { c.IdleTimeout = time.Millisecond }},
		{"parallelism", func(c *Config) { c.Parallelism = 0 }},
		{"source.chunk-bytes", func(c *Config) { c.ChunkBytes = 100 }},
		{"source.max-line-bytes", func(c *Config) { c.MaxLineBytes = 10 }},
		{"sink.write-rows", func(c *Config) { c.BatchRows = 0 }},
		{"max-memory", func(c *Config) { c.MaxMemory = 1 << 20 }},
		{"max-memory", func(c *Config) { c.MaxMemory = -1 }},
		{"windows.max-future-skew", func(c *Config) { c.Future.MaxSkew = -time.Second }},
		{"windows.future-confirm-riders", func(c *Config) { c.Future.ConfirmRiders = 0 }},
		{"windows.future-confirm-riders", func(c *Config) { c.Future.ConfirmRiders = maxConfirmRiders + 1 }},
		{"dedup.initial-keys", func(c *Config) { c.Dedup.InitialKeys = 1 }},
		{"kring.max-cached-disks", func(c *Config) { c.Kring.MaxCachedDisks = 0 }},
		{"kring.sparse-below", func(c *Config) { c.Kring.SparseBelow = -1 }},
	} {
		c := DefaultConfig()
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%s: %v", tc.flag, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.MaxMemory = 0 // no bound
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

var _ = os.Stderr
