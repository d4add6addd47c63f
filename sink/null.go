package sink

import (
	"context"
	"sync/atomic"

	"github.com/demandpipe/demandpipe/encode"
)

// Null discards rows, counting them. For benchmarks.
type Null struct {
	rows, minutes atomic.Int64
}

func (n *Null) Write(_ context.Context, b *encode.Batch) error {
	n.rows.Add(int64(b.Len()))
	return nil
}

func (n *Null) CloseMinute(context.Context, int64) error { n.minutes.Add(1); return nil }
func (n *Null) Close() error                             { return nil }

// Stats reports what was discarded.
func (n *Null) Stats() Stats { return Stats{Rows: n.rows.Load(), Minutes: n.minutes.Load()} }
