package cqltest

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// Fault is a failure the server can inject into statements on user keyspaces
// (never into the system-table queries drivers use to discover the node).
type Fault uint8

const (
	FaultNone Fault = iota
	// FaultOverloaded answers OVERLOADED (0x1001).
	FaultOverloaded
	// FaultTimeout answers WRITE_TIMEOUT (0x1100) for writes and batches
	// (write type SIMPLE, BATCH or UNLOGGED_BATCH; CAS at the serial
	// consistency for a lightweight transaction) and READ_TIMEOUT (0x1200)
	// for reads. The statement is not applied.
	FaultTimeout
	// FaultUnavailable answers UNAVAILABLE (0x1000).
	FaultUnavailable
	// FaultServerError answers SERVER_ERROR (0x0000).
	FaultServerError
	// FaultDrop closes the connection instead of answering.
	FaultDrop
	// FaultTimeoutApplied applies a write (or a batch) and then answers
	// WRITE_TIMEOUT, as a coordinator does when the replicas applied the
	// mutation but too few acknowledged it in time: a client cannot tell
	// it from FaultTimeout, so its retry must be idempotent. A read gets
	// READ_TIMEOUT.
	FaultTimeoutApplied
)

var faultNames = [...]string{"none", "overloaded", "timeout", "unavailable", "server-error", "drop", "timeout-applied"}

func (f Fault) String() string {
	if int(f) < len(faultNames) {
		return faultNames[f]
	}
	return fmt.Sprintf("Fault(%d)", f)
}

// ParseFault parses a fault name as String prints it.
func ParseFault(s string) (Fault, error) {
	for i, n := range faultNames {
		if strings.EqualFold(s, n) {
			return Fault(i), nil
		}
	}
	return FaultNone, fmt.Errorf("cqltest: unknown fault %q (want one of %s)", s, strings.Join(faultNames[:], ", "))
}

type faults struct {
	mu      sync.Mutex
	queue   []Fault // the next statements' faults, in order
	rate    float64
	kind    Fault
	rng     *rand.Rand
	latency time.Duration
}

// pick returns the fault for the next statement on a user keyspace.
func (f *faults) pick() (Fault, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queue) > 0 {
		k := f.queue[0]
		f.queue = f.queue[1:]
		return k, f.latency
	}
	if f.rate > 0 && f.rng.Float64() < f.rate {
		return f.kind, f.latency
	}
	return FaultNone, f.latency
}

// InjectFault makes the next n statements on user keyspaces fail with f, ahead
// of any rate set with SetFaultRate.
func (s *Server) InjectFault(f Fault, n int) {
	s.faults.mu.Lock()
	for range n {
		s.faults.queue = append(s.faults.queue, f)
	}
	s.faults.mu.Unlock()
}

// SetFaultRate makes each statement on a user keyspace fail with f with the
// given probability (0 turns it off). The choice uses Config.Seed.
func (s *Server) SetFaultRate(f Fault, fraction float64) {
	s.faults.mu.Lock()
	s.faults.kind, s.faults.rate = f, max(0, min(1, fraction))
	s.faults.mu.Unlock()
}

// ForgetPrepared drops every prepared statement, as Cassandra's prepared
// statement cache does when it evicts them (prepared_statements_cache_size)
// or a node restarts without reloading them: the next EXECUTE or BATCH of
// one of their ids is answered UNPREPARED (0x2500) and drivers prepare it
// again. It returns how many were dropped.
func (s *Server) ForgetPrepared() int {
	s.prepMu.Lock()
	n := len(s.prepared)
	s.prepared = map[string]*prepared{}
	s.prepMu.Unlock()
	return n
}

// ClearFaults removes queued faults and the fault rate.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	s.faults.queue, s.faults.rate = nil, 0
	s.faults.mu.Unlock()
}

// SetLatency sets the service time of each statement on a user keyspace.
func (s *Server) SetLatency(d time.Duration) {
	s.faults.mu.Lock()
	s.faults.latency = max(0, d)
	s.faults.mu.Unlock()
}

// faultMessage builds the ERROR message for an injected fault.
func faultMessage(f Fault, read bool, batch *primitive.BatchType, cl primitive.ConsistencyLevel) message.Message {
	switch f {
	case FaultOverloaded:
		return &message.Overloaded{ErrorMessage: "cqltest: injected overload"}
	case FaultUnavailable:
		return &message.Unavailable{ErrorMessage: "Cannot achieve consistency level (cqltest: injected)", Consistency: cl, Required: 1, Alive: 0}
	case FaultTimeout, FaultTimeoutApplied:
		if read {
			return &message.ReadTimeout{ErrorMessage: "Operation timed out (cqltest: injected)", Consistency: cl, Received: 0, BlockFor: 1}
		}
		wt := primitive.WriteTypeSimple
		if batch != nil {
			wt = primitive.WriteTypeBatch
			if *batch == primitive.BatchTypeUnlogged {
				wt = primitive.WriteTypeUnloggedBatch
			}
		}
		return &message.WriteTimeout{ErrorMessage: "Operation timed out (cqltest: injected)", Consistency: cl, Received: 0, BlockFor: 1, WriteType: wt}
	}
	return &message.ServerError{ErrorMessage: "cqltest: injected server error"}
}
