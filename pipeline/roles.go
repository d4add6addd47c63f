package pipeline

import (
	"context"
	"fmt"
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

// emitStage is the dedup role's last stage: it replaces the count and
// close stages, handing each located batch's counted events and frontier
// to a CountedWriter.
type emitStage struct {
	w        CountedWriter
	products *encode.Products
	fail     func(error)
	named    [encode.MaxProducts]encode.UUID // what the writer was told each code names
	told     [encode.MaxProducts]bool
	evs      []aggregate.Counted
	wm       int64
	final    int64
	hasFinal bool
	failed   bool
	// checkpoints (a CheckpointingWriter)
	durable     func(pos int64) // Engine.Durable: the source may let go of the input before pos
	cp          checkpointer
	finalResume *seqState
	dropThrough int64 // after a resume: events of minutes <= it were handed on before
	// closed is Stats.Closed: a dedup process's last complete minute is
	// its last watermark (demandpipe_pipeline_last_closed_minute_timestamp_seconds,
	// which DemandpipeFeaturesStale reads: it stayed 0 in this role).
	closed *atomic.Int64
}

func (s *emitStage) run(ctx context.Context, in <-chan *batch, free chan<- *batch) {
	for b := range in {
		<-b.located
		if ctx.Err() == nil && !s.failed {
			if err := s.emit(b); err != nil {
				s.failed = true
				s.fail(fmt.Errorf("dedup role: %w", err))
			}
		}
		b.reset()
		free <- b
	}
}

func (s *emitStage) emit(b *batch) error {
	s.evs = s.evs[:0]
	for j, i := range b.counted {
		cell := b.cells[j]
		if cell == 0 {
			continue // H3 could not place it (counted in H3Errors)
		}
		if b.minute[j] <= s.dropThrough {
			continue // handed on before the restart (its minute's checkpoint says so)
		}
		c := aggregate.Counted{Minute: b.minute[j], Cell: cell, Product: b.prod[i]}
		if u := s.products.UUIDAt(c.Product, c.Minute); !s.told[c.Product] || s.named[c.Product] != u {
			if len(s.evs) > 0 { // events before the change keep the old owner
				if err := s.w.Counted(s.evs); err != nil {
					return err
				}
				s.evs = s.evs[:0]
			}
			if err := s.w.Product(c.Product, u); err != nil {
				return err
			}
			s.named[c.Product], s.told[c.Product] = u, true
		}
		s.evs = append(s.evs, c)
	}
	if len(s.evs) > 0 {
		if err := s.w.Counted(s.evs); err != nil {
			return err
		}
	}
	if b.hasFinal {
		s.final, s.hasFinal, s.finalResume = b.final, true, b.finalResume
	}
	return s.watermark(b.frontier, b.frontier, b.resume)
}

// watermark hands on a watermark; with a CheckpointingWriter only after
// the checkpoint at it (the state at resume) is durable.
func (s *emitStage) watermark(through, clock int64, resume *seqState) error {
	if through == noMinute || through <= s.wm {
		return nil
	}
	if cw, ok := s.w.(CheckpointingWriter); ok {
		if resume == nil {
			return nil // no resume point for it: the next watermark carries one
		}
		buf, err := s.cp.encode(through, resume)
		if err != nil {
			return err
		}
		if err := cw.Checkpoint(through, buf); err != nil {
			return err
		}
		if s.durable != nil {
			s.durable(resume.pos)
		}
	}
	s.wm = through
	if err := s.w.Watermark(through, min(clock, through)); err != nil {
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
	// The minutes past the last watermark close because the input
	// ended, not by event time: the clock stays at that watermark.
	return s.watermark(s.final, s.wm, s.finalResume)
}
