package cassandra

import (
	"context"

	"github.com/demandpipe/demandpipe/sink"
)

// NewOpener returns a sink.Opener for "cassandra://..." specs:
// sink.Openers.Open splits "cassandra://h/ks" into kind "cassandra" and
// arg "//h/ks". base carries what does not come from the URL (the queue's
// -sink.* flags); credentials come from the environment.
//
//	openers := sink.Builtin()
//	openers["cassandra"] = cassandra.NewOpener(base, cassandra.Options{Registerer: reg})
func NewOpener(base Config, opt Options) sink.Opener {
	return func(arg string) (sink.Writer, error) {
		cfg, err := ParseURLInto(base, "cassandra:"+arg)
		if err != nil {
			return nil, err
		}
		return Open(context.Background(), cfg, opt)
	}
}
