package cqltest

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Stats is what the server saw, for tests to assert on. Server.Stats returns a
// copy; Server.ResetStats zeroes it (the data stays).
type Stats struct {
	// Connections is the number of connections accepted; Open those still open.
	Connections int64
	Open        int64
	// Compression counts connections by the codec their STARTUP negotiated:
	// "lz4", "snappy", or "none".
	Compression map[string]int64
	// ProtocolVersions counts connections by the protocol version they started
	// with; RejectedVersions counts requests answered with a downgrade
	// PROTOCOL_ERROR, by the version asked for.
	ProtocolVersions map[int]int64
	RejectedVersions map[int]int64
	// Requests counts request messages by opcode name (QUERY, EXECUTE, BATCH,
	// PREPARE, OPTIONS, STARTUP, REGISTER).
	Requests map[string]int64
	// Statements counts statements on user keyspaces by kind (INSERT, SELECT,
	// DELETE, UPDATE, CREATE TABLE, ...), including each statement inside a
	// BATCH; a statement that got an injected fault is not counted here.
	// SystemStatements counts those on system keyspaces (driver discovery).
	Statements       map[string]int64
	SystemStatements int64
	// Batches counts BATCH messages executed, by type (LOGGED, UNLOGGED,
	// COUNTER); BatchPartitions holds, for each executed BATCH in order, the
	// number of distinct partitions (table + partition key) it wrote
	// (the first 100000 batches are kept).
	Batches         map[string]int64
	BatchPartitions []int
	// BatchKeyspaces counts BATCH messages executed by the keyspace they
	// carried (protocol v5's keyspace flag; "" for none, as always in v4).
	BatchKeyspaces map[string]int64
	// Rows counts rows written (INSERT/UPDATE, including in batches).
	RowsWritten int64
	// InFlight is the number of requests being served now; InFlightPeak the
	// most at once (requests sleeping in their service time count).
	InFlight     int64
	InFlightPeak int64
	// BytesReceived and BytesSent count bytes on the wire (compressed).
	BytesReceived int64
	BytesSent     int64
	// SegmentsReceived and SegmentsSent count protocol v5 segments;
	// LargeEnvelopes the requests that came in a run of segments (an
	// envelope larger than a segment's 128 KiB - 1).
	SegmentsReceived int64
	SegmentsSent     int64
	LargeEnvelopes   int64
	// Errors counts ERROR responses by the protocol's error name (Overloaded,
	// WriteTimeout, Invalid, SyntaxError, ...), injected or not; Injected counts
	// the injected faults alone (including dropped connections).
	Errors   map[string]int64
	Injected int64
	// TombstoneWarnings and TombstoneFailures count reads of user tables
	// past Config.TombstoneWarnThreshold (answered with a warning) and
	// past Config.TombstoneFailureThreshold (READ_FAILURE).
	TombstoneWarnings int64
	TombstoneFailures int64
	// Nodes is each node's share (Config.Nodes), node 0 first: its
	// requests and the writes it coordinated as a replica or not.
	Nodes []NodeStats
}

const maxBatchPartitions = 100000

// stats is the live, internally synchronised form of Stats.
type stats struct {
	inFlight, inFlightPeak       atomic.Int64
	bytesIn, bytesOut            atomic.Int64
	segmentsIn, segmentsOut      atomic.Int64
	connections, open, rows, inj atomic.Int64

	mu sync.Mutex
	s  Stats // maps and slices; scalars above
}

func (st *stats) reset() {
	st.mu.Lock()
	st.s = Stats{
		Compression: map[string]int64{}, ProtocolVersions: map[int]int64{}, RejectedVersions: map[int]int64{},
		Requests: map[string]int64{}, Statements: map[string]int64{}, Batches: map[string]int64{}, BatchKeyspaces: map[string]int64{}, Errors: map[string]int64{},
	}
	st.mu.Unlock()
	st.inFlightPeak.Store(st.inFlight.Load())
	st.bytesIn.Store(0)
	st.bytesOut.Store(0)
	st.segmentsIn.Store(0)
	st.segmentsOut.Store(0)
	st.connections.Store(0)
	st.rows.Store(0)
	st.inj.Store(0)
}

func (st *stats) snapshot() Stats {
	st.mu.Lock()
	out := st.s
	out.Compression = maps.Clone(st.s.Compression)
	out.ProtocolVersions = maps.Clone(st.s.ProtocolVersions)
	out.RejectedVersions = maps.Clone(st.s.RejectedVersions)
	out.Requests = maps.Clone(st.s.Requests)
	out.Statements = maps.Clone(st.s.Statements)
	out.Batches = maps.Clone(st.s.Batches)
	out.BatchKeyspaces = maps.Clone(st.s.BatchKeyspaces)
	out.Errors = maps.Clone(st.s.Errors)
	out.BatchPartitions = append([]int(nil), st.s.BatchPartitions...)
	st.mu.Unlock()
	out.Connections = st.connections.Load()
	out.Open = st.open.Load()
	out.RowsWritten = st.rows.Load()
	out.InFlight = st.inFlight.Load()
	out.InFlightPeak = st.inFlightPeak.Load()
	out.BytesReceived = st.bytesIn.Load()
	out.BytesSent = st.bytesOut.Load()
	out.SegmentsReceived = st.segmentsIn.Load()
	out.SegmentsSent = st.segmentsOut.Load()
	out.Injected = st.inj.Load()
	return out
}

func (st *stats) begin() {
	n := st.inFlight.Add(1)
	for {
		peak := st.inFlightPeak.Load()
		if n <= peak || st.inFlightPeak.CompareAndSwap(peak, n) {
			return
		}
	}
}

func (st *stats) end() { st.inFlight.Add(-1) }

// update runs f with the maps locked.
func (st *stats) update(f func(s *Stats)) {
	st.mu.Lock()
	f(&st.s)
	st.mu.Unlock()
}
