package pipeline

// Tests of docs/RELIABILITY.md: bad clocks, over-long lines, failing sinks
// and rejects writers, cancellation, byte-order marks. Each failed on the
// engine before the rules they pin.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/source"
)

// genLines makes n generated lines (a dense city, ~1,600 events/s).
func genLines(t testing.TB, n int, seed uint64, start time.Time) []string {
	t.Helper()
	gc := gen.DefaultConfig()
	gc.Seed, gc.Start = seed, start
	lines, _ := genWith(t, gc, n)
	return lines
}

// smallDef keeps the dense tests fast: the rule under test is about time,
// not about the size of the neighbourhood.
var smallDef = feature.Definition{Resolution: 8, Rings: []int{0, 1}, Windows: []int{1, 4}}

func rowsEqual(t *testing.T, got, want []row) {
	t.Helper()
	if len(got) == 0 {
		t.Fatal("no rows")
	}
	diffRows(t, got, want)
}

func withTS(line string, ts int64) string {
	i := strings.LastIndex(line, `"ts":`) // the top-level one follows any nested ts
	j := i + 5 + strings.IndexAny(line[i+5:], ",}")
	return line[:i+5] + fmt.Sprint(ts) + line[j:]
}

func tsOf(t testing.TB, line string) int64 {
	var ev encode.Event
	var p encode.Projector
	if r := p.Project([]byte(line), &ev); r != encode.OK {
		t.Fatalf("%s: %s", r, line)
	}
	return ev.TS
}

// TestFutureEventDoesNotFalsify is the reproduction: one event an
// hour ahead (or in the year 9999) after line 50,000 of 100,000. Before the
// rule, ~50,000 on-time events were dropped as late; now it is one future
// reject and every row equals the clean stream's.
func TestFutureEventDoesNotFalsify(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	n := testsize.Pick(20_000, 100_000) // 21 s under -race at 100,000
	lines := genLines(t, n, 1, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC))
	clean, _, ce := runEngine(t, lines, smallDef, 30_000, 2, 64<<10)
	mid := n / 2
	for _, ahead := range []int64{tsOf(t, lines[mid]) + 3_600_000, encode.MaxTS} {
		bad := withTS(lines[mid], ahead)
		in := append(append(append([]string{}, lines[:mid]...), bad), lines[mid:]...)
		got, _, e := runEngine(t, in, smallDef, 30_000, 2, 64<<10)
		s, cs := e.Stats.Snapshot(), ce.Stats.Snapshot()
		if s.Late != cs.Late || s.Rejected["future"] != 1 || s.Counted != cs.Counted {
			t.Fatalf("ahead %d: late %d (clean %d), future %d, counted %d (clean %d)", ahead, s.Late, cs.Late, s.Rejected["future"], s.Counted, cs.Counted)
		}
		rowsEqual(t, got, clean)
	}
}

// TestFutureFewRidersNeverConfirm: fewer bad riders than ConfirmRiders, even
// agreeing on one time, never move the frontier; the rejects file keeps
// their lines.
func TestFutureFewRidersNeverConfirm(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	lines := genLines(t, 20_000, 2, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC))
	clean, _, _ := runEngine(t, lines, smallDef, 30_000, 2, 16<<10)
	ahead := tsOf(t, lines[5000]) + 2*3_600_000
	var in []string
	var bad []string
	for i, l := range lines {
		in = append(in, l)
		if i >= 5000 && i < 5000+DefaultFutureConfig().ConfirmRiders-1 {
			// 15 riders in a row, all two hours ahead
			b := withTS(strings.Replace(l, `"rider_id":"`, `"rider_id":"bad-`, 1), ahead)
			in = append(in, b)
			bad = append(bad, b)
		}
	}
	cfg := DefaultConfig()
	cfg.Def, cfg.Parallelism, cfg.ChunkBytes = smallDef, 2, 16<<10
	e, _ := New(cfg)
	var rej bytes.Buffer
	e.Rejects = &rej
	c := &collect{}
	if err := e.Run(context.Background(), strings.NewReader(strings.Join(in, "\n")+"\n"), c); err != nil {
		t.Fatal(err)
	}
	rowsEqual(t, c.rows, clean)
	if n := e.Stats.Rejected[encode.Future].Load(); n != int64(len(bad)) {
		t.Fatalf("future rejects %d, want %d", n, len(bad))
	}
	if got := strings.Count(rej.String(), `"reason":"future"`); got != len(bad) || !strings.Contains(rej.String(), string(encode.AppendJSONString(nil, bad[0]))) {
		t.Fatalf("rejects file holds %d future lines:\n%.400s", got, rej.String())
	}
}

// TestGenuineGapLosesNothing: the whole stream jumps three hours (an outage,
// a restart): the rows equal those of the contract without the rule.
func TestGenuineGapLosesNothing(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	n := testsize.Pick(6_000, 30_000) // 8 s under -race for 30,000
	before := genLines(t, n, 3, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC))
	after := genLines(t, n, 4, time.Date(2024, 6, 1, 13, 30, 0, 0, time.UTC))
	in := append(before, after...)
	off := FutureConfig{MaxSkew: 0, ConfirmRiders: 1}
	want, _, we := runEngineFuture(t, in, smallDef, 30_000, 2, 32<<10, off)
	got, _, e := runEngineFuture(t, in, smallDef, 30_000, 2, 32<<10, DefaultFutureConfig())
	if s := e.Stats.Snapshot(); s.RejectedTotal != we.Stats.Snapshot().RejectedTotal || s.Counted != we.Stats.Snapshot().Counted {
		t.Fatalf("with the rule %+v\nwithout %+v", s, we.Stats.Snapshot())
	}
	rowsEqual(t, got, want)
}

// TestFutureLiveWallClock: on a live source, ts beyond now + skew is future
// at once.
func TestFutureLiveWallClock(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 6, 1, 9, 58, 0, 0, time.UTC) // this machine's clock: now + skew = 10:03
	cfg := DefaultConfig()
	cfg.Def = smallDef
	cfg.Now = func() time.Time { return now }
	e, _ := New(cfg)
	lines := []string{
		ev("10:00:05", "a", 40.7580, -73.9855),
		ev("10:02:59", "b", 40.7580, -73.9855), // within now + skew
		ev("10:03:30", "c", 40.7580, -73.9855), // within the frontier's skew, but past now + skew: future
	}
	src := &slowReader{data: []byte(strings.Join(lines, "\n") + "\n"), close: make(chan struct{})}
	close(src.close)
	if err := e.Run(context.Background(), src, &collect{}); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats.Snapshot(); s.Rejected["future"] != 1 || s.Counted != 2 {
		t.Fatalf("%+v", s)
	}
}

// TestLongLinesChangeNoRow inserts over-long lines at random places (start,
// end, across chunk boundaries, several in a row, longer than a chunk or
// many chunks): each is one line_too_long reject, and the rows equal the
// clean stream's.
func TestLongLinesChangeNoRow(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	lines := genLines(t, 6000, 5, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC))
	clean, _, ce := runEngine(t, lines, smallDef, 30_000, 2, 8<<10)
	// Six seeds cover each place a long line goes (seed%3) with and
	// without a final newline (seed%2); the long set runs twelve.
	for seed := range testsize.Pick(6, 12) {
		rng := rand.New(rand.NewPCG(uint64(seed), 11))
		var in []string
		long := 0
		add := func() {
			n := 2049 + rng.IntN(4)*rng.IntN(40_000)
			in = append(in, `{"pad":"`+strings.Repeat("y", n)+`"}`)
			long++
		}
		if seed%3 == 0 {
			add() // at the start
		}
		for _, l := range lines {
			in = append(in, l)
			if rng.IntN(300) == 0 {
				for range 1 + rng.IntN(3) {
					add()
				}
			}
		}
		if seed%3 == 1 {
			add() // at the end
		}
		cfg := DefaultConfig()
		cfg.Def, cfg.Parallelism, cfg.ChunkBytes, cfg.MaxLineBytes = smallDef, 2, 4096+rng.IntN(8192), 2048
		e, _ := New(cfg)
		c := &collect{}
		text := strings.Join(in, "\n")
		if seed%2 == 0 {
			text += "\n"
		}
		if err := e.Run(context.Background(), &chopReader{data: []byte(text), rng: rng}, c); err != nil {
			t.Fatal(err)
		}
		s := e.Stats.Snapshot()
		if s.Rejected["line_too_long"] != int64(long) || s.RejectedTotal != int64(long) || s.Counted != ce.Stats.Counted.Load() {
			t.Fatalf("seed %d: %d long lines, stats %+v", seed, long, s)
		}
		if s.Lines != int64(len(in)) {
			t.Fatalf("seed %d: lines %d, want %d", seed, s.Lines, len(in))
		}
		diffRows(t, c.rows, clean)
	}
}

// chopReader returns data in random-sized reads, as pipes and decompressors do.
type chopReader struct {
	data []byte
	rng  *rand.Rand
}

func (r *chopReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), 1+r.rng.IntN(20_000))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// TestHugeLineBoundedMemory: a line far over the limit is skipped as it
// streams by: the engine never holds more than the limit plus a chunk of it.
func TestHugeLineBoundedMemory(t *testing.T) {
	t.Parallel()
	good := ev("10:00:05", "a", 40.7580, -73.9855)
	const lineBytes = 64 << 20
	src := &patternReader{head: []byte(good + "\n{\"pad\":\""), fill: lineBytes, tail: []byte("\"}\n" + good + "\n")}
	cfg := DefaultConfig()
	cfg.MaxLineBytes = 1 << 20
	e, _ := New(cfg)
	c := &collect{}
	if err := e.Run(context.Background(), src, c); err != nil {
		t.Fatal(err)
	}
	s := e.Stats.Snapshot()
	if s.Rejected["line_too_long"] != 1 || s.Lines != 3 || s.Duplicates != 1 || s.Counted != 1 {
		t.Fatalf("%+v", s)
	}
	// A buffer the size of the line would mean it was held whole.
	if src.maxAsk > 8*cfg.MaxLineBytes {
		t.Fatalf("a read asked for %d bytes: the line was buffered", src.maxAsk)
	}
}

// patternReader streams head, fill bytes of 'z', tail without holding them.
type patternReader struct {
	head, tail []byte
	fill       int
	maxAsk     int
}

func (r *patternReader) Read(p []byte) (int, error) {
	r.maxAsk = max(r.maxAsk, len(p))
	switch {
	case len(r.head) > 0:
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	case r.fill > 0:
		n := min(len(p), r.fill)
		for i := range n {
			p[i] = 'z'
		}
		r.fill -= n
		return n, nil
	case len(r.tail) > 0:
		n := copy(p, r.tail)
		r.tail = r.tail[n:]
		return n, nil
	}
	return 0, io.EOF
}

// TestByteOrderMarkSkipped: a UTF-8 BOM does not cost the first event.
func TestByteOrderMarkSkipped(t *testing.T) {
	t.Parallel()
	in := "\xef\xbb\xbf" + ev("10:00:05", "a", 40.7580, -73.9855) + "\n" + ev("10:00:06", "b", 40.7580, -73.9855) + "\n"
	for _, chunk := range []int{1, 2, 1 << 20} {
		e, _ := New(DefaultConfig())
		if err := e.Run(context.Background(), &chopReader{data: []byte(in), rng: rand.New(rand.NewPCG(uint64(chunk), 1))}, &collect{}); err != nil {
			t.Fatal(err)
		}
		if s := e.Stats.Snapshot(); s.Counted != 2 || s.RejectedTotal != 0 {
			t.Fatalf("%+v", s)
		}
	}
}

// failWriter fails on its first write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("injected rejects failure") }

// TestFailuresNeverHang: a failing sink, a failing rejects file or a
// cancellation with many batches in flight ends Run with the first error,
// every time (the hand-off between dispatch and parsers used to strand a
// batch the sequencer then waited for forever).
func TestFailuresNeverHang(t *testing.T) {
	t.Parallel()
	lines := genLines(t, 4000, 6, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC))
	for i := range 20 {
		lines[i*97] = "not json " + strings.Repeat("x", 5000) // 100 KB of rejects: the file fails mid-run
	}
	// the minutes must close while input flows: jump the last quarter ahead
	for i := 3000; i < len(lines); i++ {
		lines[i] = withTS(lines[i], tsOf(t, lines[i])+3*60_000)
	}
	in := []byte(strings.Join(lines, "\n") + "\n")
	rounds := testsize.Pick(15, 200) // ~0.2 s a round under the race detector
	if testing.Short() {
		rounds = 20
	}
	for round := range rounds {
		cfg := DefaultConfig()
		cfg.Def, cfg.Parallelism, cfg.ChunkBytes = smallDef, 1+round%3, 4096
		cfg.BatchRows = 1
		e, _ := New(cfg)
		ctx, cancel := context.WithCancel(context.Background())
		var want string
		snk := &collect{}
		switch round % 3 {
		case 0:
			snk.failAt = 1
			want = "injected sink failure"
		case 1:
			e.Rejects = failWriter{}
			want = "injected rejects failure"
		case 2:
			snk.onWrite = cancel
			want = context.Canceled.Error()
		}
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx, bytes.NewReader(in), snk) }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("round %d: err = %v, want %q", round, err, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Run hung after %q", round, want)
		}
		cancel()
	}
}

// TestProductCodesReusedAndLimitDeterministic: over a run, 700 product
// types come and go; codes of products no window holds any more are
// reused, so nothing is rejected until more than 256 are active at once;
// then only the excess products' events are rejected (too_many_products),
// the same ones whatever the parallelism and chunking, and every other row
// equals the reference's. Twice: with no product reserve and one rider a
// product; with the default reserve (hold.go) and K riders a product, so
// that each product past the 192nd waits for its K-th rider and then
// takes a code while one is free.
func TestProductCodesReusedAndLimitDeterministic(t *testing.T) {
	t.Parallel()
	k := DefaultFutureConfig().ConfirmRiders
	for _, mode := range []struct{ reserve, riders int }{{0, 1}, {DefaultFutureConfig().ProductReserve, k}} {
		t.Run(fmt.Sprintf("reserve=%d", mode.reserve), func(t *testing.T) {
			productCodesReused(t, mode.reserve, mode.riders)
		})
	}
}

func productCodesReused(t *testing.T, reserve, riders int) {
	base := time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC).UnixMilli()
	prod := func(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", 0xabc00000+i, i) }
	line := func(ts int64, rider string, p string) string {
		return fmt.Sprintf(`{"ts":%d,"rider_id":%q,"lat":40.758,"lng":-73.9855,"product_type":%q}`, ts, rider, p)
	}
	var lines, expected []string
	add := func(l string, keep bool) {
		lines = append(lines, l)
		if keep {
			expected = append(expected, l)
		}
	}
	phases := []struct{ minute, first, n int }{{0, 1, 200}, {20, 201, 200}, {40, 401, 300}}
	next := 0
	for sec := 0; sec < 50*60; sec += 10 {
		ts := base + int64(sec)*1000
		add(line(ts, fmt.Sprint("steady-", sec), prod(0)), true) // keeps event time moving
		if next < len(phases) && sec == phases[next].minute*60 {
			ph := phases[next]
			for r := range riders { // round robin: every product's r-th rider in turn
				for k := range ph.n {
					// Phase 3 has 300 new products with one steady one active:
					// the 256th code goes to its 255th, the rest are rejected.
					keep := next < 2 || k < 255
					add(line(ts+int64(r*ph.n+k), fmt.Sprint("r-", ph.first+k, "-", r), prod(ph.first+k)), keep)
				}
			}
			next++
		}
	}
	want := reference(t, expected, smallDef, 30_000)
	var outs []string
	// Parallelism and chunking both change between the two short-form
	// runs; the long set adds a third.
	runs := testsize.Pick([]struct{ par, chunk int }{{1, 4096}, {2, 64 << 10}}, []struct{ par, chunk int }{{1, 4096}, {3, 4096}, {2, 64 << 10}})
	for _, tc := range runs {
		cfg := DefaultConfig()
		cfg.Def, cfg.Parallelism, cfg.ChunkBytes = smallDef, tc.par, tc.chunk
		cfg.Future.ProductReserve = reserve
		e, _ := New(cfg)
		var rej bytes.Buffer
		e.Rejects = &rej
		c := &collect{}
		if err := e.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")+"\n"), c); err != nil {
			t.Fatal(err)
		}
		if s, n := e.Stats.Snapshot(), int64(45*riders); s.RejectedTotal != n || s.Rejected["too_many_products"] != n {
			t.Fatalf("par %d chunk %d: %+v", tc.par, tc.chunk, s)
		}
		diffRows(t, c.rows, want)
		outs = append(outs, rej.String())
	}
	if slices.ContainsFunc(outs, func(o string) bool { return o != outs[0] }) || !strings.Contains(outs[0], prod(401+299)) || strings.Contains(outs[0], prod(401+254)) {
		t.Fatalf("rejected lines differ between runs, or the wrong ones:\n%.600s", outs[0])
	}
}

// TestFastGeneratorIsNotFuture: the live generator run faster than the wall
// clock (speed) is bounded by its own event clock, not the wall clock: none
// of its events is future, and minutes close at its pace.
func TestFastGeneratorIsNotFuture(t *testing.T) {
	t.Parallel()
	src, err := source.OpenGen("speed=600,rate=3000,riders=500")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Def = smallDef
	e, _ := New(cfg)
	// Stop after 6 closed minutes (~0.7 s unloaded: event time runs 10
	// minutes a second, twice the future skew's 5 minutes ahead of the wall
	// clock within a second), not after a fixed time: a loaded machine
	// generates less per second. 60 s is only a safety net.
	var closed atomic.Int64
	e.OnClose = func(int64, int64, time.Duration) {
		if closed.Add(1) == 6 {
			src.Stop()
		}
	}
	safety := time.AfterFunc(60*time.Second, src.Stop)
	defer safety.Stop()
	if err := e.Run(context.Background(), src, &sink.Null{}); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats.Snapshot(); s.Rejected["future"] != 0 || s.Minutes < 5 || s.Counted == 0 {
		t.Fatalf("%+v", s)
	}
}
