package pipeline

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/dedup"
	"github.com/demandpipe/demandpipe/encode"
)

// TestCloserOwnsOnlyItsCells: with an ownership filter the closer emits
// exactly the rows of the cells it owns, each equal to the unfiltered row
// (windows are kept for every cell: a source near a border feeds both
// sides), so processes owning a partition of the cells together emit the
// single-process rows.
func TestCloserOwnsOnlyItsCells(t *testing.T) {
	t.Parallel()
	lines := genLines(t, 20_000, 9, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC))
	run := func(owns func(uint64) bool) []row {
		cfg := DefaultConfig()
		cfg.Def, cfg.Owns = smallDef, owns
		e, _ := New(cfg)
		c := &collect{}
		if err := e.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")+"\n"), c); err != nil {
			t.Fatal(err)
		}
		return c.rows
	}
	all := run(nil)
	var parts []row
	for k := range uint64(3) {
		parts = append(parts, run(func(c uint64) bool { return (c>>24)%3 == k })...)
	}
	sortRows(all)
	sortRows(parts)
	if len(all) == 0 {
		t.Fatal("no rows")
	}
	diffRows(t, parts, all)
}

// TestDispatcherAlone: input batches pass in order, numbered, to both the
// sequencer's and the parsers' queues; with no input for a quarter of the
// idle timeout an idle tick (stamped with the clock) goes the same way;
// the end of input closes both queues.
func TestDispatcherAlone(t *testing.T) {
	t.Parallel()
	q := newQueues(4)
	clock := time.Unix(1_800_000_000, 0)
	d := &dispatcher{idle: 400 * time.Millisecond, now: func() time.Time { return clock }}
	ctx := context.Background()
	done := make(chan struct{})
	go func() { d.run(ctx, q); close(done) }()
	for i := range 3 {
		b := <-q.free
		b.reset()
		b.firstLine = int64(i)
		q.chunks <- b
	}
	for i := range 3 {
		s, p := <-q.seq, <-q.parse
		if s != p || s.seq != uint64(i) || s.firstLine != int64(i) || s.idle {
			t.Fatalf("batch %d: seq %d line %d idle %v (same batch to both: %v)", i, s.seq, s.firstLine, s.idle, s == p)
		}
	}
	// Quiet: an idle tick arrives (the pool still has a free batch).
	select {
	case s := <-q.seq:
		if p := <-q.parse; !s.idle || s != p || s.now != clock.UnixMilli() || s.seq != 3 {
			t.Fatalf("idle tick: %+v", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no idle tick")
	}
	close(q.chunks)
	<-done
	if _, ok := <-q.seq; ok {
		// drain a late idle tick, then the queue must be closed
		if _, ok := <-q.seq; ok {
			t.Fatal("sequencer queue not closed at the end of input")
		}
	}
}

// TestReaderAlone: the reader cuts any input into batches of whole lines
// whose buffers, concatenated, are the input, each knowing its input offset
// and first line (the positions checkpoints resume from).
func TestReaderAlone(t *testing.T) {
	t.Parallel()
	lines := genLines(t, 3000, 12, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC))
	in := []byte(strings.Join(lines, "\n") + "\n")
	for _, chunk := range []int{4 << 10, 64 << 10} {
		cfg := DefaultConfig()
		cfg.ChunkBytes = chunk
		e, _ := New(cfg)
		q := newQueues(8)
		rd := &reader{e: e, src: &chopReader{data: in, rng: rand.New(rand.NewPCG(uint64(chunk), 1))}}
		errc := make(chan error, 1)
		go func() { errc <- rd.run(context.Background(), q.free, q.chunks); close(q.chunks) }()
		var got []byte
		line := int64(1)
		for b := range q.chunks {
			if b.pos != int64(len(got)) || b.firstLine != line || b.endPos != b.pos+int64(len(b.buf)) {
				t.Fatalf("chunk %d: batch at %d (want %d), line %d (want %d), end %d", chunk, b.pos, len(got), b.firstLine, line, b.endPos)
			}
			got = append(got, b.buf...)
			line += int64(strings.Count(string(b.buf), "\n"))
			if b.endLine != line {
				t.Fatalf("endLine %d, want %d", b.endLine, line)
			}
			b.reset()
			q.free <- b
		}
		if err := <-errc; err != nil || string(got) != string(in) {
			t.Fatalf("chunk %d: %v; %d bytes of %d", chunk, err, len(got), len(in))
		}
	}
}

// TestIdleClockAfterRestore: right after a restore, an idle batch (no
// input yet: a broker slow to deliver after a restart) must not move the
// frontier by the whole wall clock; the idle clock starts with the first
// batch, and event time advances by the idle time from there.
func TestIdleClockAfterRestore(t *testing.T) {
	t.Parallel()
	dt, err := dedup.New(dedup.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	s := newSequencer(30_000, 5_000, dt, cfg.Future.rule(), encode.NewProducts(), 32)
	const maxTS = 1_717_236_000_000 // 2024-06-01T10:00Z
	st := &seqState{haveTS: true, maxTS: maxTS, frontier: maxTS/60_000 - 1, haveT: true, t: maxTS, tailMax: maxTS}
	for r := range uint64(cfg.Future.ConfirmRiders) {
		st.clockKey, st.clockTS = append(st.clockKey, r), append(st.clockTS, maxTS)
	}
	for c := range st.lastCounted {
		st.lastCounted[c] = noMinute
	}
	s.restore(st)
	wall := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC).UnixMilli()
	var stats Stats
	s.sequence(&batch{idle: true}, &stats, wall)
	if s.frontier != st.frontier {
		t.Fatalf("the first idle batch after a restore moved the frontier from minute %d to %d", st.frontier, s.frontier)
	}
	// 95 s of idle wall time later, event time has moved 95 s on from the
	// last event: minutes before the one holding that minus the lateness
	// (10:01:05) are closed.
	s.sequence(&batch{idle: true}, &stats, wall+95_000)
	if want := int64(maxTS+95_000-30_000)/60_000 - 1; s.frontier != want {
		t.Fatalf("after 95 s idle: frontier minute %d, want %d", s.frontier, want)
	}
}
