package aggregate

import (
	"context"
	"fmt"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/sink"
)

// Local is a single process's count and close: the counter (count.go) on
// the engine's count goroutine, the closer (close.go) on its own; they meet
// only at CloseRequests and the free list of minuteCounts. The count side's
// methods are Count, SetReceived and Request; the close side's are
// CloseThrough, Restore and the hooks, set before the first close.
type Local struct {
	*counter
	*closer
}

// NewLocal builds a single process's count and close over snk, sharing
// products (the codes the events carry) with the caller and updating st.
func NewLocal(cfg Config, products *encode.Products, snk sink.Writer, st *Stats) (*Local, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newLocal(cfg, products, snk, st)
}

func newLocal(cfg Config, products *encode.Products, snk sink.Writer, st *Stats) (*Local, error) {
	free := make(chan *minuteCounts, 8)
	cl, err := newCloser(cfg, products, snk, st, free)
	if err != nil {
		return nil, err
	}
	return &Local{counter: newCounter(free), closer: cl}, nil
}

// Count counts one event (count side).
func (a *Local) Count(c Counted) { a.counter.add(c) }

// SetReceived says when the events counted next were read (unix ns): the
// start of the ingestion latency OnClose reports (count side).
func (a *Local) SetReceived(ns int64) { a.counter.received = ns }

// Request takes the counts of every minute up to through out of the open
// set for CloseThrough; minutes <= clock close by event time (the store's
// retention clock follows them), later ones only because the input ended.
// ok is false when there is nothing new to close (count side).
func (a *Local) Request(through, clock int64, resume Resume) (req CloseRequest, ok bool) {
	return a.counter.request(through, clock, resume)
}

// CloseThrough closes every minute of req, in order (close side).
func (a *Local) CloseThrough(ctx context.Context, req CloseRequest) error {
	return a.closer.closeThrough(ctx, req)
}

// OnDurable sets the hook told each input position a committed checkpoint
// makes unneeded (close side).
func (a *Local) OnDurable(f func(pos int64)) { a.closer.onDurable = f }

// OnClose sets the hook told each minute committed: its rows, how long the
// close took and when its last events were read (unix ns).
func (a *Local) OnClose(f func(m, rows int64, took time.Duration, received int64)) {
	a.closer.onClose = f
}

// Restore rebuilds a resumed run's windows from the count records of the
// minutes they still need (counts reads them from the sink), and makes
// closed the last closed minute for both sides. Call it before counting.
func (a *Local) Restore(ctx context.Context, closed int64, counts func(m int64) ([]byte, bool, error)) error {
	if err := a.closer.restore(ctx, closed, counts); err != nil {
		return err
	}
	a.counter.resumeAt(closed)
	return nil
}

// Backfill starts a definition added to a running deployment from the
// count records another definition of the same resolution keeps (counts,
// minutes keptFrom..closed): the windows as of minute first-1 are restored
// from them without rows, then minutes first..closed are closed from them
// with their rows emitted and committed, the last with resume's checkpoint,
// exactly as if this definition had run all along; it then counts only
// minutes after closed. first is the earliest minute whose windows the
// records cover: keptFrom + this definition's longest window - 1. The
// records are counts before smoothing, so any rings and windows (up to the
// records' span) can be computed from them; another resolution cannot
// (H3 is not exactly hierarchical). Call it before counting.
func (a *Local) Backfill(ctx context.Context, keptFrom, closed int64, counts func(m int64) ([]byte, bool, error), resume Resume) (first int64, err error) {
	first = keptFrom + int64(a.closer.maxW) - 1
	if first > closed+1 {
		return 0, fmt.Errorf("backfill: the records span minutes %d..%d, %d minutes, and this definition's longest window needs %d", keptFrom, closed, closed-keptFrom+1, a.closer.maxW)
	}
	if err := a.closer.restore(ctx, first-1, counts); err != nil {
		return 0, err
	}
	req := CloseRequest{through: closed, clock: closed, first: first, resume: resume}
	for m := first; m <= closed; m++ {
		rec, ok, err := counts(m)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue
		}
		mc := &minuteCounts{}
		if err := decodeCounts(rec, mc, m, a.products); err != nil {
			return 0, fmt.Errorf("backfill: minute %d: %w", m, err)
		}
		req.counts = append(req.counts, mc)
	}
	if first <= closed {
		if err := a.closer.closeThrough(ctx, req); err != nil {
			return 0, err
		}
	}
	a.counter.resumeAt(closed)
	return first, nil
}
