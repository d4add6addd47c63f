//go:build !nodoubles

package doubles

import (
	"time"

	"github.com/demandpipe/demandpipe/internal/cqltest"
)

const included = true

func startCQL(latency time.Duration) (Server, error) {
	s, err := cqltest.Start(cqltest.Config{Latency: latency})
	if err != nil {
		return nil, err // not a nil *Server in a non-nil Server
	}
	return cql{s}, nil
}

// cql adds BytesReceived to the double.
type cql struct{ *cqltest.Server }

func (s cql) BytesReceived() int64 { return s.Stats().BytesReceived }
