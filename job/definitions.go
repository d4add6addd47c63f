package job

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/demandpipe/demandpipe/definitions"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/sink/cassandra"
)

// registerDefinitions records a run's definitions where its readers find
// them, if its sink keeps definitions (sink.DefinitionsKeeper: the store's
// definitions file, a record of Cassandra's state table), the first
// active unless one was promoted, and makes j.active follow promotions.
func (j *Job) registerDefinitions() (err error) {
	k, ok := j.out.(sink.DefinitionsKeeper)
	if len(j.cfg.Pipeline.Extra) == 0 || !ok {
		return nil
	}
	warn := func(err error) { j.log.Warn("definitions: keeping the last good record", "err", err.Error()) }
	j.active, j.stopActive, err = k.KeepDefinitions(context.Background(), j.names(), warn)
	return err
}

// names are the run's definitions' names, the default first.
func (j *Job) names() []string {
	names := []string{j.cfg.Pipeline.Named().Name}
	for _, d := range j.cfg.Pipeline.Extra {
		names = append(names, d.Name)
	}
	return names
}

// served is what the run's server answers from a readable sink
// (sink.Readable): its one definition, or every definition the run
// writes (each further definition's sink read the same way) with the
// active one from the definitions record.
func (j *Job) served(ctx context.Context, r sink.Readable) (*Served, error) {
	first, err := r.Reader(ctx)
	if err != nil {
		return nil, err
	}
	if j.active == nil {
		return One(first), nil
	}
	sv := &Served{Names: j.names(), Readers: []serve.Reader{first}, Active: j.active}
	for k, w := range j.e.ExtraSinks {
		er, ok := w.(sink.Readable)
		if !ok {
			return nil, fmt.Errorf("definition %s: its sink cannot be read", j.cfg.Pipeline.Extra[k].Name)
		}
		rd, err := er.Reader(ctx)
		if err != nil {
			return nil, err
		}
		sv.Readers = append(sv.Readers, rd)
	}
	return sv, nil
}

// OpenCassandraDefinitions reads the deployment at a cassandra:// URL:
// with a definitions record, every definition's table (TABLE, TABLE_NAME…)
// on one session, the active one followed; without, the one table.
func OpenCassandraDefinitions(ctx context.Context, spec string, log *slog.Logger) (sv *Served, closeAll func(), err error) {
	cc, err := cassandra.ParseURL(spec)
	if err != nil {
		return nil, nil, err
	}
	sess, err := cassandra.Connect(ctx, cc)
	if err != nil {
		return nil, nil, err
	}
	reg := cassandra.Registry{Session: sess, Config: cc}
	f, ok, err := reg.Load(ctx)
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	if !ok {
		f = definitions.File{Definitions: []string{feature.DefaultName}, Active: feature.DefaultName}
	}
	sv = &Served{Names: f.Definitions}
	stop := func() {}
	if ok && len(f.Definitions) > 1 {
		sv.Active, stop = reg.Follow(f, func(err error) { log.Warn("definitions: keeping the last good record", "err", err.Error()) })
	}
	for i, n := range f.Definitions {
		c := cc
		if i > 0 {
			ds, err := CassandraDefinitionSpec(spec, n)
			if err == nil {
				c, err = cassandra.ParseURL(ds)
			}
			if err != nil {
				stop()
				sess.Close()
				return nil, nil, err
			}
		}
		st, err := cassandra.NewStore(ctx, sess, c, cassandra.StoreOptions{})
		if err != nil {
			stop()
			sess.Close()
			return nil, nil, fmt.Errorf("definition %s: %w", n, err)
		}
		sv.Readers = append(sv.Readers, st)
	}
	return sv, func() {
		stop()
		for _, r := range sv.Readers {
			r.(*cassandra.Store).Close()
		}
		sess.Close()
	}, nil
}
