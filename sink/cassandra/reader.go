package cassandra

import (
	"context"
	"fmt"
	"sync"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/demandpipe/demandpipe/encode"
)

// Row is one cell's features as read back; Found is false when the cell
// has no row (all its features were zero, or it expired).
type Row struct {
	Cell     uint64
	Found    bool
	Features []int32
}

// Reader reads feature rows written by a Sink: the read side a `serve`
// over Cassandra needs. Safe for concurrent use.
type Reader struct {
	sess  *gocql.Session
	own   bool
	res   int
	query string
}

// NewReader reads through an existing session (e.g. Sink.Session); Close
// leaves it open.
func NewReader(sess *gocql.Session, cfg Config) *Reader {
	return &Reader{sess: sess, res: cfg.RegionResolution,
		query: fmt.Sprintf("SELECT cell, f FROM %s.%s WHERE product = ? AND minute = ? AND region = ? AND cell IN ?", cfg.Keyspace, cfg.Table)}
}

// OpenReader connects a session of its own.
func OpenReader(ctx context.Context, cfg Config) (*Reader, error) {
	sess, _, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r := NewReader(sess, cfg)
	r.own = true
	return r, nil
}

// Close closes the session if the Reader opened it.
func (r *Reader) Close() {
	if r.own {
		r.sess.Close()
	}
}

// Get returns the rows of cells for (minute, product), in the order of
// cells. Cells are grouped by partition (region): one query per region,
// `cell IN (...)`, the regions queried concurrently. The 217 cells within
// 8 rings span 1-4 regions at the default resolution (mostly 3-4), so a
// pricing read is a few concurrent single-partition queries.
func (r *Reader) Get(ctx context.Context, minute int64, product encode.UUID, cells []uint64) ([]Row, error) {
	out := make([]Row, len(cells))
	groups := map[int64][]int64{}
	var order []int64
	for i, c := range cells {
		out[i].Cell = c
		reg := int64(region(c, r.res))
		if _, ok := groups[reg]; !ok {
			order = append(order, reg)
		}
		groups[reg] = append(groups[reg], int64(c))
	}
	found := make(map[uint64][]int32, len(cells))
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
	)
	for _, reg := range order {
		wg.Go(func() {
			got, err := r.partition(ctx, minute, product, reg, groups[reg])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			for c, f := range got {
				found[c] = f
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	for i := range out {
		if f, ok := found[out[i].Cell]; ok {
			out[i].Found, out[i].Features = true, f
		}
	}
	return out, nil
}

func (r *Reader) partition(ctx context.Context, minute int64, product encode.UUID, reg int64, cells []int64) (map[uint64][]int32, error) {
	iter := r.sess.Query(r.query, gocql.UUID(product), minute, reg, cells).Idempotent(true).IterContext(ctx)
	got := make(map[uint64][]int32, len(cells))
	var (
		cell int64
		f    []byte
	)
	for iter.Scan(&cell, &f) {
		feats, err := encode.DecodeRowValue(nil, f)
		if err != nil {
			iter.Close()
			return nil, fmt.Errorf("sink cassandra: read cell %x: %w", uint64(cell), err)
		}
		got[uint64(cell)] = feats
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("sink cassandra: read: %w", err)
	}
	return got, nil
}
