package store

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/sink"
)

// Opener returns the sink.Opener of -sink=store:DIR: arg is the directory
// (empty: cfg.Dir). The Writer it returns is a *Store, so the command can
// type-assert it to serve reads beside the run (run -serve=ADDR).
func Opener(cfg Config, reg prometheus.Registerer) sink.Opener {
	return func(arg string) (sink.Writer, error) {
		c := cfg
		if arg != "" {
			c.Dir = arg
		}
		return Open(c, reg)
	}
}
