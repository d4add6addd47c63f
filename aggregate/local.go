package aggregate

import (
	"context"
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
