package pipeline

import (
	"context"
	"sync/atomic"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/encode"
)

// Scale-out roles (issue 14): the engine cut at the counted event.
//
// A dedup process runs the stages up to location and hands its output to a
// CountedWriter instead of counting (Engine.Emit): counted events in
// arrival order, the product each code names, and watermarks (every minute
// up to one is complete). Aggregate processes (Aggregator) count the
// events they receive and close a minute once every dedup process's
// watermark has passed it, emitting only the cells they own
// (Config.Owns). A source cell feeds targets up to the largest ring away,
// so its events go to every region that owns such a target (Regions); a
// region's owner then holds every source its cells depend on, and its rows
// are exactly the single process's. Nothing here moves data between
// processes: the transport (an internal Pulsar topic) is the caller's.

// CountedWriter receives a dedup process's output, in order, on one
// goroutine.
type CountedWriter interface {
	// Product says that code names u in the events that follow (a code is
	// reused for another product once no window holds its old one).
	Product(code byte, u encode.UUID) error
	// Counted hands on counted events, in arrival order.
	Counted(evs []aggregate.Counted) error
	// Watermark says that no counted event of a minute <= through follows;
	// the minutes <= clock close by event time (K riders vouch for them:
	// the store's retention clock follows them), the later ones only
	// because the input ended (clock < through on the final watermark
	// only).
	Watermark(through, clock int64) error
}

// CheckpointingWriter is a CountedWriter that keeps the dedup role's
// resume state, so that a dedup process can start again where it was
// (SCALEOUT.md): Checkpoint(through, cp) comes before Watermark(through)
// and returns once cp is durable and so is every Counted handed before it.
// The watermark follows only then, so aggregators never close past a dedup
// process's durable checkpoint, and a restart (Engine.ResumeEmit) hands on
// again only events of minutes after it.
type CheckpointingWriter interface {
	CountedWriter
	Checkpoint(through int64, cp []byte) error
}

// emitStage is the last stage of ingest, in both the single process and
// the dedup role: it hands each located batch's counted events and its
// frontier to a CountedWriter per output, the interface the scale-out
// roles meet at. The dedup role has one output, its Emit (the internal
// topic); the single process one per definition, a localWriter (stages.go)
// over that definition's count and close, with its events at the
// definition's resolution. So the single process drives its aggregators
// as the roles do, through CountedWriter (issue 20).
type emitStage struct {
	outs     []*emitOut
	products *encode.Products
	fail     func(error)
	final    int64
	hasFinal bool
	failed   bool
	// checkpoints (a CheckpointingWriter)
	durable     func(pos int64) // Engine.Durable: the source may let go of the input before pos
	finalResume *seqState
	// closed is Stats.Closed in the dedup role: a dedup process's last
	// complete minute is its last watermark
	// (demandpipe_pipeline_last_closed_minute_timestamp_seconds, which
	// DemandpipeFeaturesStale reads: it stayed 0 in this role). nil in the
	// single process, whose closes set it.
	closed *atomic.Int64
}

// emitOut is one output of the emit stage.
type emitOut struct {
	w   CountedWriter
	res int           // index of its resolution in the run's (batch.cellsAt)
	cp  *checkpointer // its checkpoints (each definition's names its own)
	// shared: the writer takes the engine's own product codes (a
	// localWriter), so it is told no Product.
	shared   bool
	received func(ns int64)                  // the writer's SetReceived, if it has one
	named    [encode.MaxProducts]encode.UUID // what the writer was told each code names
	told     [encode.MaxProducts]bool
	evs      []aggregate.Counted
	wm       int64
	// dropThrough: after a resume, events of minutes <= it were handed on
	// before.
	dropThrough int64
}

// newEmitOut is an output to w at resolution index res, with checkpoints
// by cp, continuing after minute closed (aggregate.NoMinute: from the
// start).
func newEmitOut(w CountedWriter, res int, cp *checkpointer, closed int64) *emitOut {
	o := &emitOut{w: w, res: res, cp: cp, wm: closed, dropThrough: closed}
	_, o.shared = w.(*localWriter)
	if r, ok := w.(interface{ SetReceived(ns int64) }); ok {
		o.received = r.SetReceived
	}
	return o
}

func (s *emitStage) run(ctx context.Context, in <-chan *batch, free chan<- *batch) {
	for b := range in {
		<-b.located
		if ctx.Err() == nil && !s.failed {
			if err := s.emit(b); err != nil {
				s.failed = true
				s.fail(err)
			}
		}
		b.reset()
		free <- b
	}
}

func (s *emitStage) emit(b *batch) error {
	if b.hasFinal {
		s.final, s.hasFinal, s.finalResume = b.final, true, b.finalResume
	}
	for _, o := range s.outs {
		if o.received != nil {
			o.received(b.readAt)
		}
		if err := s.emitTo(o, b); err != nil {
			return err
		}
		if err := s.watermark(o, b.frontier, b.frontier, b.resume); err != nil {
			return err
		}
	}
	return nil
}

// emitTo hands b's counted events at o's resolution to o.
func (s *emitStage) emitTo(o *emitOut, b *batch) error {
	o.evs = o.evs[:0]
	cells := b.cellsAt(o.res)
	for j, i := range b.counted {
		cell := cells[j]
		if cell == 0 {
			continue // H3 could not place it (counted in H3Errors)
		}
		if b.minute[j] <= o.dropThrough {
			continue // handed on before the restart (its minute's checkpoint says so)
		}
		c := aggregate.Counted{Minute: b.minute[j], Cell: cell, Product: b.prod[i]}
		if !o.shared {
			if u := s.products.UUIDAt(c.Product, c.Minute); !o.told[c.Product] || o.named[c.Product] != u {
				if len(o.evs) > 0 { // events before the change keep the old owner
					if err := o.w.Counted(o.evs); err != nil {
						return err
					}
					o.evs = o.evs[:0]
				}
				if err := o.w.Product(c.Product, u); err != nil {
					return err
				}
				o.named[c.Product], o.told[c.Product] = u, true
			}
		}
		o.evs = append(o.evs, c)
	}
	if len(o.evs) > 0 {
		return o.w.Counted(o.evs)
	}
	return nil
}

// watermark hands on a watermark: with a CheckpointingWriter only after
// the checkpoint at it (the state at resume) is durable; a resumingWriter
// is given the resume point to commit with the minutes it closes.
func (s *emitStage) watermark(o *emitOut, through, clock int64, resume *seqState) error {
	if through == noMinute || through <= o.wm {
		return nil
	}
	switch w := o.w.(type) {
	case resumingWriter:
		if resume != nil {
			w.Resume(&resumePoint{cp: o.cp, st: resume})
		}
	case CheckpointingWriter:
		if resume == nil {
			return nil // no resume point for it: the next watermark carries one
		}
		buf, err := o.cp.encode(through, resume)
		if err != nil {
			return err
		}
		if err := w.Checkpoint(through, buf); err != nil {
			return err
		}
		if s.durable != nil {
			s.durable(resume.pos)
		}
	}
	o.wm = through
	if err := o.w.Watermark(through, min(clock, through)); err != nil {
		return err
	}
	if s.closed != nil {
		s.closed.Store(through)
	}
	return nil
}

// finish sends the end of input's watermark: every minute seen is complete.
func (s *emitStage) finish() error {
	if s.failed || !s.hasFinal {
		return nil
	}
	for _, o := range s.outs {
		// The minutes past the last watermark close because the input
		// ended, not by event time: the clock stays at that watermark.
		if err := s.watermark(o, s.final, o.wm, s.finalResume); err != nil {
			return err
		}
	}
	return nil
}
