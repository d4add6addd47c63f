package pipeline

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/h3batch"
)

// The engine's stages, in the order data meets them:
//
//	reader -> dispatcher -> parser pool (N) -> sequencer (1) -> locator pool (N) -> counter (1) -> closer (1) -> sink
//
// The invariant every hand-off keeps: a batch handed to a stage always
// reaches the next one, or the run ends with an error. Sends that complete
// a two-step hand-off never give up half way (the dispatcher puts a batch in
// the sequencer's queue, then must give it to a parser: the sequencer waits
// for it), and every stage drains its input after a failure instead of
// leaving, so that no stage waits forever on a batch that will not come.
// Order is restored by the sequencer and the counter taking batches in
// sequence and waiting for each to be parsed / located.

// queues are the bounded channels between the stages.
type queues struct {
	free, chunks, parse, seq, loc, count chan *batch
	close                                chan closeJob
}

func newQueues(nb int) *queues {
	q := &queues{
		free: make(chan *batch, nb), chunks: make(chan *batch, nb), parse: make(chan *batch, nb),
		seq: make(chan *batch, nb), loc: make(chan *batch, nb), count: make(chan *batch, nb),
		close: make(chan closeJob, 1), // one close ahead: back-pressure from a slow sink
	}
	for range nb {
		q.free <- newBatch()
	}
	return q
}

// supervisor keeps the first error and cancels the run with it.
type supervisor struct {
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	once   sync.Once
	first  error
}

func (s *supervisor) fail(err error) { s.once.Do(func() { s.first = err; s.cancel(err) }) }

// err is the first failure; call it after the stages are done.
func (s *supervisor) err() error { return s.first }

func (s *supervisor) spawn(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// reader is the stage that owns the input (it may block: stdin, a socket).
type reader struct {
	e   *Engine
	src io.Reader
}

func (r *reader) run(ctx context.Context, free chan *batch, out chan<- *batch) error {
	return r.e.read(ctx, r.src, free, out)
}

// dispatcher numbers batches, hands each to the sequencer and to a parser,
// and injects idle ticks while no input arrives, so that a quiet live
// source still closes minutes.
type dispatcher struct {
	idle time.Duration
	now  func() time.Time
}

func (d *dispatcher) run(ctx context.Context, q *queues) {
	defer close(q.parse)
	defer close(q.seq)
	var seq uint64
	tick := time.NewTicker(min(d.idle/4, time.Second))
	defer tick.Stop()
	lastInput := time.Now()
	send := func(b *batch) bool {
		b.seq = seq
		seq++
		select {
		case q.seq <- b:
		case <-ctx.Done():
			return false
		}
		// Once the sequencer holds b it waits for b to be parsed, so b
		// must reach a parser whatever happens: the parsers drain their
		// queue until it is closed, so this send cannot block for long (a
		// select on ctx here hung the run: the sequencer waited forever
		// for a batch that never reached a parser).
		q.parse <- b
		return true
	}
	for {
		select {
		case b, ok := <-q.chunks:
			if !ok {
				return
			}
			lastInput = time.Now()
			if !send(b) {
				return
			}
		case <-tick.C:
			if time.Since(lastInput) < d.idle/4 {
				continue
			}
			var b *batch
			select {
			case b = <-q.free:
			default:
				continue // busy downstream: not idle
			}
			b.reset()
			b.idle = true
			b.now = d.now().UnixMilli()
			if !send(b) {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// parserPool projects batches on n workers, in any order.
type parserPool struct {
	n        int
	products *encode.Products
	maxLine  int
	allow    map[encode.UUID]string // Config.Products; nil: every product
}

func (p *parserPool) spawn(sv *supervisor, in <-chan *batch) {
	for range p.n {
		sv.spawn(func() {
			var pr encode.Projector
			for b := range in {
				b.parse(&pr, p.products, p.maxLine, p.allow)
				b.parsed <- struct{}{}
			}
		})
	}
}

// sequenceStage runs the sequencer over batches in arrival order, counts
// and writes the rejects, and hands each batch to the counter and to a
// locator.
type sequenceStage struct {
	seq     *sequencer
	stats   *Stats
	now     func() time.Time
	rejects *bufio.Writer
	// flushEach: the rejects are flushed after every batch that has some
	// (live sources), so that a rejected line is in the rejects writer
	// before any checkpoint past it commits: a source that forwards rejects
	// (a dead-letter topic) then never acknowledges a line it has not kept.
	flushEach bool
	fail      func(error)
}

func (s *sequenceStage) run(ctx context.Context, in <-chan *batch, toCount, toLocate chan<- *batch) {
	defer close(toLocate)
	defer close(toCount)
	for b := range in {
		<-b.parsed
		if ctx.Err() != nil {
			continue // drain
		}
		s.seq.sequence(b, s.stats, s.now().UnixMilli())
		s.stats.Lines.Add(b.lines)
		s.stats.Blank.Add(b.blank)
		for _, r := range b.rejects {
			s.stats.Rejected[r.reason].Add(1)
		}
		s.stats.Rejected[encode.Future].Add(int64(len(b.endRejects)))
		for _, r := range b.heldRejects {
			s.stats.Rejected[r.reason].Add(1)
		}
		if s.rejects != nil && len(b.rejects)+len(b.endRejects)+len(b.heldRejects) > 0 {
			err := writeRejects(s.rejects, b)
			if err == nil && s.flushEach {
				err = s.rejects.Flush()
			}
			if err != nil {
				s.fail(fmt.Errorf("rejects file: %w", err))
			}
		}
		toCount <- b // both unconditional: the counter and the locators drain
		toLocate <- b
	}
}

// locatorPool computes the cells of counted events on n workers.
type locatorPool struct {
	n     int
	res   []int // the run's distinct resolutions, the definition's first
	stats *Stats
}

func (l *locatorPool) spawn(sv *supervisor, in <-chan *batch) {
	for range l.n {
		sv.spawn(func() {
			var loc h3batch.Locator
			for b := range in {
				if errs := b.locate(&loc, l.res); errs > 0 {
					l.stats.H3Errors.Add(errs)
				}
				b.located <- struct{}{}
			}
		})
	}
}

// closeJob is a definition's request to close the minutes a watermark
// passed.
type closeJob struct {
	local *aggregate.Local
	req   aggregate.CloseRequest
}

// localWriter is a definition's count and close in the single process,
// behind the CountedWriter the dedup role writes to (emitStage): Counted
// counts on the emit goroutine; Watermark asks for the minutes it closes,
// which the close goroutine (closeStage) closes, each with the resume
// point its watermark came with, committed with its rows. It takes the
// engine's own product codes, so Product says nothing new.
type localWriter struct {
	ctx    context.Context
	local  *aggregate.Local
	closeQ chan<- closeJob
	resume aggregate.Resume // the next watermark's (Resume), nil if none
}

// resumingWriter is a CountedWriter that commits the resume point of a
// watermark with the minutes it closes (the single process's sinks keep
// the checkpoint with the rows), instead of before it as a
// CheckpointingWriter does.
type resumingWriter interface {
	CountedWriter
	Resume(r aggregate.Resume)
}

func (w *localWriter) Product(byte, encode.UUID) error { return nil }

func (w *localWriter) Counted(evs []aggregate.Counted) error {
	for _, c := range evs {
		w.local.Count(c)
	}
	return nil
}

// SetReceived says when the events counted next were read (the latency
// OnClose reports).
func (w *localWriter) SetReceived(ns int64) { w.local.SetReceived(ns) }

func (w *localWriter) Resume(r aggregate.Resume) { w.resume = r }

func (w *localWriter) Watermark(through, clock int64) error {
	req, ok := w.local.Request(through, clock, w.resume)
	w.resume = nil
	if ok {
		select {
		case w.closeQ <- closeJob{w.local, req}:
		case <-w.ctx.Done():
		}
	}
	return nil
}

// closeStage runs the closers over close jobs, one definition after the
// other (each fans its products out over the workers); after a failure it
// drains them.
type closeStage struct {
	fail func(error)
}

func (c *closeStage) run(ctx context.Context, in <-chan closeJob) {
	for job := range in {
		if ctx.Err() != nil {
			continue // drain
		}
		if err := job.local.CloseThrough(ctx, job.req); err != nil {
			c.fail(err)
		}
	}
}
