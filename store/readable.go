package store

import (
	"context"

	"github.com/demandpipe/demandpipe/definitions"
	"github.com/demandpipe/demandpipe/read"
)

// Reader is the store itself: its readers never block its writer
// (sink.Readable).
func (s *Store) Reader(context.Context) (read.Reader, error) { return s, nil }

// Embedded is true: a run serves its store by default.
func (s *Store) Embedded() bool { return true }

// KeepDefinitions records a run's definitions in the definitions file
// beside the store's directory (DIR.definitions.json) and follows its
// active definition, re-read on change (sink.DefinitionsKeeper).
func (s *Store) KeepDefinitions(_ context.Context, names []string, warn func(error)) (active func() string, stop func(), err error) {
	f, err := definitions.Register(s.Dir(), names)
	if err != nil {
		return nil, nil, err
	}
	w := definitions.NewWatcher(s.Dir(), f)
	w.Err = warn
	return func() string { return w.Current().Active }, func() {}, nil
}
