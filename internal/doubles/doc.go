// Package doubles is the one door through which shipped commands (tune,
// bench -report) reach the project's test servers: the CQL double
// (internal/cqltest) runs in-process so that `tune` needs no Cassandra.
//
// A release build leaves the test servers out: built with
// `-tags nodoubles` (make build, the Dockerfile) the binary holds no test
// server code, and the commands that would start one say so and ask for a
// real cluster. A development build (`go run ./cmd/demandpipe`) keeps them.
package doubles

import (
	"errors"
	"time"
)

// Server is a started test server.
type Server interface {
	// Port is the TCP port it listens on (127.0.0.1).
	Port() int
	Close() error
	// ResetStats zeroes its counters; BytesReceived is the request bytes
	// read since (bench -report's wire cost of compression).
	ResetStats()
	BytesReceived() int64
}

// ErrLeftOut is StartCQL's error in a build made with -tags nodoubles.
var ErrLeftOut = errors.New("this build leaves out the test servers (built with -tags nodoubles, as releases are): point -sink at a real cluster (cassandra://HOST/KEYSPACE), or use a development build (go run ./cmd/demandpipe)")

// Included reports whether this build holds the test servers.
func Included() bool { return included }

// StartCQL starts the CQL test double on 127.0.0.1 with a fixed service
// time per statement (0: none).
func StartCQL(latency time.Duration) (Server, error) { return startCQL(latency) }
