package aggregate

import (
	"context"
	"fmt"
	"slices"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/h3batch"
	"github.com/demandpipe/demandpipe/sink"
)

// Aggregator is the aggregate role: it counts the Counted events of
// `sources` dedup processes and closes each minute once all of them have
// passed it, writing the rows of the cells Config.Owns keeps. Its methods
// run on the caller's goroutine, one at a time.
type Aggregator struct {
	agg      *Local
	products *encode.Products
	Stats    *Stats
	key      string // Config.Key, recorded in part checkpoints
	remote   []remoteSource
	closed   int64
	clock    int64      // newest minute closed by event time (sink.State.Clock)
	parts    *partState // nil unless UseParts
}

// remoteSource is what an aggregator knows of one dedup process.
type remoteSource struct {
	code  [encode.MaxProducts]byte // its code -> ours
	told  [encode.MaxProducts]bool
	wm    int64
	clock int64 // its watermarks' clock (CountedMessage.Clock)
}

// NewAggregator builds the aggregate role for the given number of dedup
// processes, writing rows to snk and counting into st (nil: its own).
func NewAggregator(cfg Config, sources int, snk sink.Writer, st *Stats) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sources < 1 {
		return nil, fmt.Errorf("aggregator: %d dedup sources, want at least 1", sources)
	}
	if st == nil {
		st = new(Stats)
	}
	a := &Aggregator{products: encode.NewProducts(), Stats: st, key: cfg.Key, remote: make([]remoteSource, sources), closed: NoMinute, clock: NoMinute}
	for i := range a.remote {
		a.remote[i].wm, a.remote[i].clock = NoMinute, NoMinute
	}
	var err error
	if a.agg, err = newLocal(cfg, a.products, snk, st); err != nil {
		return nil, err
	}
	// A single process's count records and checkpoint do not fit a role
	// that holds part of the sources: its state goes per part (UseParts).
	a.agg.cpSink = nil
	return a, nil
}

// Sources is the number of dedup processes the aggregator knows.
func (a *Aggregator) Sources() int { return len(a.remote) }

// AddSource adds a dedup process (one that joined: SCALEOUT.md) and
// returns its number.
func (a *Aggregator) AddSource() int {
	a.remote = append(a.remote, remoteSource{wm: NoMinute, clock: NoMinute})
	return len(a.remote) - 1
}

// Product records that dedup process src's code names u.
func (a *Aggregator) Product(src int, code byte, u encode.UUID) error {
	local, err := a.products.Code(u)
	if err != nil {
		return fmt.Errorf("aggregator: %w", err)
	}
	r := &a.remote[src]
	r.code[code], r.told[code] = local, true
	return nil
}

// Counted counts events of dedup process src.
func (a *Aggregator) Counted(src int, evs []Counted) error {
	r := &a.remote[src]
	for _, c := range evs {
		if !r.told[c.Product] {
			return fmt.Errorf("aggregator: dedup source %d sent product code %d before naming it", src, c.Product)
		}
		c.Product = r.code[c.Product]
		if c.Minute <= a.closed {
			return fmt.Errorf("aggregator: dedup source %d sent an event of minute %d, closed already (its watermark said so)", src, c.Minute)
		}
		a.agg.add(c)
		a.Stats.Counted.Add(1)
	}
	return nil
}

// Watermark records dedup process src's watermark and its clock (the
// minutes it closes by event time: CountedMessage.Clock) and closes every
// minute all dedup processes have passed. A minute closes by event time
// when every dedup process's clock has passed it: only those move the
// sink's retention clock (sink.State.Clock).
func (a *Aggregator) Watermark(ctx context.Context, src int, through, clock int64) error {
	r := &a.remote[src]
	r.wm = max(r.wm, through)
	r.clock = max(r.clock, min(clock, through))
	low, lowClock := r.wm, r.clock
	for i := range a.remote {
		low, lowClock = min(low, a.remote[i].wm), min(lowClock, a.remote[i].clock)
	}
	if low == NoMinute || low <= a.closed {
		return nil
	}
	a.closed = low
	a.clock = max(a.clock, lowClock)
	if a.parts != nil {
		if err := a.flushThrough(low); err != nil {
			return err
		}
	}
	if req, ok := a.agg.request(low, lowClock, nil); ok {
		return a.agg.closeThrough(ctx, req)
	}
	return nil
}

// Regions appends to dst the regions (H3 cells at resolution res, coarser
// than cell's) that hold a cell within maxK of cell: the aggregators whose
// rows an event of cell changes. Most cells reach one region; a cell near
// a border reaches a few (its halo).
func Regions(cell uint64, maxK, res int, dst []uint64) ([]uint64, error) {
	cells, _, err := h3batch.Disk(cell, maxK, nil, nil)
	if err != nil {
		return dst, err
	}
	start := len(dst)
	for _, c := range cells {
		if p := parent(c, res); !slices.Contains(dst[start:], p) {
			dst = append(dst, p)
		}
	}
	return dst, nil
}

// Region is the region (H3 parent at resolution res) cell belongs to.
func Region(cell uint64, res int) uint64 { return parent(cell, res) }
