package job

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/demandpipe/demandpipe/definitions"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/sink/cassandra"
	"github.com/demandpipe/demandpipe/store"
)

// registerDefinitions records a run's definitions where its readers find
// them (the store's definitions file, or a record of Cassandra's state
// table), the first active unless one was promoted, and makes j.active
// follow promotions.
func (j *Job) registerDefinitions() error {
	if len(j.cfg.Pipeline.Extra) == 0 {
		return nil
	}
	names := []string{j.cfg.Pipeline.Named().Name}
	for _, d := range j.cfg.Pipeline.Extra {
		names = append(names, d.Name)
	}
	switch out := j.out.(type) {
	case *store.Store:
		f, err := definitions.Register(out.Dir(), names)
		if err != nil {
			return err
		}
		w := definitions.NewWatcher(out.Dir(), f)
		w.Err = func(err error) { j.log.Warn("definitions file: keeping the last good one", "err", err.Error()) }
		j.active = func() string { return w.Current().Active }
	case *cassandra.Sink:
		reg := CassandraRegistry{Session: out.Session(), Config: out.Config()}
		f, err := reg.Register(context.Background(), names)
		if err != nil {
			return err
		}
		j.active, j.stopActive = reg.Follow(f, j.log)
	}
	return nil
}

// CassandraRegistry is a Cassandra deployment's definitions record, kept
// under its first definition's table (sink/cassandra: ReadRegistry).
type CassandraRegistry struct {
	Session *gocql.Session
	Config  cassandra.Config
}

// Load reads the record; ok is false when there is none.
func (r CassandraRegistry) Load(ctx context.Context) (definitions.File, bool, error) {
	b, ok, err := cassandra.ReadRegistry(ctx, r.Session, r.Config)
	if err != nil || !ok {
		return definitions.File{}, ok, err
	}
	f, err := definitions.Parse(b)
	return f, true, err
}

// Save writes the record.
func (r CassandraRegistry) Save(ctx context.Context, f definitions.File) error {
	b, err := f.Marshal()
	if err != nil {
		return err
	}
	return cassandra.WriteRegistry(ctx, r.Session, r.Config, b)
}

// Register is definitions.Register for Cassandra.
func (r CassandraRegistry) Register(ctx context.Context, names []string) (definitions.File, error) {
	f, _, err := r.Load(ctx)
	if err != nil {
		return f, err
	}
	f, changed, err := f.With(r.Config.Keyspace+"."+r.Config.Table, names)
	if err == nil && changed {
		err = r.Save(ctx, f)
	}
	return f, err
}

// ActiveEvery is how often a server from Cassandra reads the definitions
// record: a promotion reaches it within this (a read per request would be
// a round trip to the cluster on every answer).
const ActiveEvery = time.Second

// Follow returns the active definition, re-read every ActiveEvery (a
// failed read keeps the last good answer, logged once), and its stop.
func (r CassandraRegistry) Follow(f definitions.File, log *slog.Logger) (active func() string, stop func()) {
	var cur atomic.Value
	cur.Store(f.Active)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(ActiveEvery)
		defer t.Stop()
		warned := false
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			g, ok, err := r.Load(ctx)
			cancel()
			switch {
			case err == nil && ok:
				cur.Store(g.Active)
				warned = false
			case !warned:
				log.Warn("the definitions record: keeping the last good one", "err", fmt.Sprint(err), "found", ok)
				warned = true
			}
		}
	}()
	return func() string { return cur.Load().(string) }, func() { close(done) }
}

// servedStores is what run -serve answers from a store sink: its one
// definition, or every definition the run writes (their stores are the
// run's sinks) with the active one from the definitions file.
func (j *Job) servedStores(st *store.Store) *Served {
	if j.active == nil {
		return One(st)
	}
	sv := &Served{Names: []string{j.cfg.Pipeline.Named().Name}, Readers: []serve.Reader{st}, Active: j.active}
	for k, d := range j.cfg.Pipeline.Extra {
		sv.Names = append(sv.Names, d.Name)
		sv.Readers = append(sv.Readers, j.e.ExtraSinks[k].(*store.Store))
	}
	return sv
}

// servedCassandra is what run -serve answers from a Cassandra sink: each
// definition's table, read on its sink's session.
func (j *Job) servedCassandra(ctx context.Context, cs *cassandra.Sink) (*Served, error) {
	sinks := []*cassandra.Sink{cs}
	names := []string{j.cfg.Pipeline.Named().Name}
	for k, d := range j.cfg.Pipeline.Extra {
		sinks, names = append(sinks, j.e.ExtraSinks[k].(*cassandra.Sink)), append(names, d.Name)
	}
	sv := &Served{Names: names, Active: j.active}
	for _, s := range sinks {
		cst, err := cassandra.NewStore(ctx, s.Session(), s.Config(), cassandra.StoreOptions{})
		if err != nil {
			return nil, err
		}
		sv.Readers = append(sv.Readers, cst)
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
	reg := CassandraRegistry{Session: sess, Config: cc}
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
		sv.Active, stop = reg.Follow(f, log)
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
