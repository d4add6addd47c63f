package tuning

import (
	"context"
	"fmt"

	"github.com/demandpipe/demandpipe/internal/doubles"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/sink/cassandra"
)

// TuneState is the pipeline name a real cluster's state tables get for
// tuning runs (cassandra.Config.State) unless the URL sets ?state=.
const TuneState = "demandpipe_tune"

// target is the sink a point writes into: the Cassandra sink, whose write
// queue's counters are the measurements.
type target interface {
	sink.Writer
	QueueStats() sink.QueueStats
}

// open builds the point's sink: the base Cassandra config with the
// point's writers and batch size, into a fresh test double (closed by the
// returned func) or the configured cluster.
func (c Config) open(ctx context.Context, p Point) (target, func(), error) {
	cc := c.Cassandra
	cc.Queue.Writers, cc.Queue.BatchRows = p.Writers, p.BatchRows
	cc.Queue.DrainTimeout = c.StopDrain
	cc.Definition = c.Engine.Def
	opt := cassandra.Options{Logf: c.Logf}
	if opt.Logf == nil {
		opt.Logf = func(string, ...any) {}
	}
	if c.Sink != DefaultSink {
		// The engine's checkpoints go under their own name (?state=
		// overrides it), never over a production pipeline's.
		cc.State = TuneState
		cc, err := cassandra.ParseURLInto(cc, c.Sink)
		if err != nil {
			return nil, nil, err
		}
		s, err := cassandra.Open(ctx, cc, opt)
		if err != nil {
			return nil, nil, err
		}
		return s, func() {}, nil
	}
	// A fresh double per point: it keeps every row in memory, and a
	// point's rows must not weigh on the next point's heap.
	srv, err := doubles.StartCQL(c.ServiceTime)
	if err != nil {
		return nil, nil, fmt.Errorf("tuning: test double: %w", err)
	}
	cc.Hosts, cc.Port = []string{"127.0.0.1"}, srv.Port()
	cc.CreateSchema, cc.ReplicationFactor = true, 1
	s, err := cassandra.Open(ctx, cc, opt)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return s, func() { srv.Close() }, nil
}
