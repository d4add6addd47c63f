package pipeline

import (
	"context"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/sink"
)

// aggregator pairs the count and close stages of one engine: the counter
// (count.go) on the engine's count goroutine, the closer (close.go) on its
// own; they meet only at closeRequests and the free list of minuteCounts.
type aggregator struct {
	*counter
	*closer
}

func newAggregator(cfg Config, products *encode.Products, snk sink.Writer, st *Stats) (*aggregator, error) {
	free := make(chan *minuteCounts, 8)
	cl, err := newCloser(cfg, products, snk, st, free)
	if err != nil {
		return nil, err
	}
	return &aggregator{counter: newCounter(free), closer: cl}, nil
}

// restore rebuilds a resumed run's windows (closer) and makes closed the
// last closed minute for both stages.
func (a *aggregator) restore(ctx context.Context, closed int64, counts func(m int64) ([]byte, bool, error)) error {
	if err := a.closer.restore(ctx, closed, counts); err != nil {
		return err
	}
	a.counter.resumeAt(closed)
	return nil
}
