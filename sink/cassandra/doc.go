// Package cassandra is the sink that writes closed minutes to Apache
// Cassandra (or ScyllaDB) with the gocql v2 driver, and reads them back.
//
// Data model (sink/CASSANDRA.md has the arithmetic and the measurements):
//
//	PRIMARY KEY ((product uuid, minute bigint, region bigint), cell bigint), f blob
//
// region is the H3 parent of the row's cell at Config.RegionResolution
// (default 5); f is the row's features in the project's binary value
// format (encode.AppendRowValue, encode/FORMAT.md). Rows expire with the
// table's default_time_to_live under TimeWindowCompactionStrategy. Schema
// returns the CQL.
//
// Writes: Sink (a sink.Writer) encodes each row and enqueues it on a
// sink.Queue sharded by partition key, so every CQL batch is an unlogged
// batch of one partition, routed token-aware to one of its replicas, made
// of idempotent entries. The queue does every retry (back-off with full
// jitter, a per-attempt timeout, a bound); the driver makes one attempt.
// CloseMinute returns once the server acknowledged every row of the minute.
// A batch still failing after -sink.max-retries fails the run.
//
// Consistency (consistency.go): Open reads the table at Config.Consistency
// and at the state's consistency; a cluster whose live replicas cannot meet
// one (Cassandra answers UNAVAILABLE, e.g. rf=3 at LOCAL_QUORUM on one node:
// 2 needed, 1 alive) fails Open at once, naming the setting, the keyspace's
// replication, what is alive and what would fit, not the first minute after
// the queue's retries. An UNAVAILABLE after Open (nodes died) is retried like
// any transient error, and a batch dropped for it says how many replicas the
// consistency needs and how many are alive.
//
// Compression: SnappyS2 (the protocol's "snappy" codec, on
// klauspost/compress/s2) or the driver's lz4. gocql drops a codec the
// server does not list without a word; Open detects that, logs a warning
// and exports the codec actually used. With lz4 or none gocql negotiates
// protocol v5 (frames in checksummed segments, CRC24 headers and CRC32
// payloads); snappy pins v4, v5 allowing lz4 only.
//
// Timestamps and retries: every write carries gocql's client timestamp
// (its clock at sending), and Cassandra keeps the cell with the highest.
// Every write is an upsert of values that a retry or a resumed run writes
// again identically (no counters, no lists, no conditions), so a retry
// after a WRITE_TIMEOUT that was in fact applied changes nothing and
// counts nothing twice, and a rewrite that loses to an earlier write
// with a later timestamp (a resumed run on a host whose clock is behind)
// loses nothing either. An UNPREPARED answer (a node that evicted or lost
// the prepared statements) makes gocql prepare again, in batches too.
//
// Resume (state.go): Sink is a sink.Checkpointer. CloseMinute(m) writes,
// each step acknowledged before the next, m's rows, then m's row in the
// minutes table (and deletes the minutes rows past the retention: left to
// expire, they would be tombstones that every read of the list passes,
// failing it after weeks), then m's count record, then the checkpoint (under a new
// sequence number), then deletes older checkpoints and count records below
// KeepFrom: a crash anywhere leaves a checkpoint whose count records are
// all there, and the resumed run writes the same rows again. Records are
// chunked (1 MiB) in the engine_state table, chunk 0 last with the size
// and a CRC-32C, so a torn record is never read as valid. State is written
// at Config.Consistency raised to LOCAL_QUORUM when weaker. Config.State
// names the pipeline in the state tables; Config.Definition is stored and
// checked at Open.
//
// Writer lease (lease.go): one run at a time writes under a state name.
// Open takes a lease, a row of the state table under kind 'lease' taken
// by INSERT IF NOT EXISTS USING TTL (Config.LeaseTTL, 30 s), renewed every
// TTL/3 by UPDATE IF data = ours and given back by Close (DELETE IF data =
// ours), at Config.LeaseSerial (LOCAL_SERIAL). A second run's Open is
// refused, naming the holder and when its lease expires; a run that loses
// the lease (taken by another, or not renewed for its TTL) fails: Done,
// Err, and the next Write, CloseMinute or Close return the error. The
// aggregate role's processes, each under its own state name, hold leases
// apart.
//
// Reads: Reader.Get returns the rows of a list of cells of one (minute,
// product), one query per region. Store answers serve's queries
// (serve.Reader) as the embedded store does: minutes and products from the
// minutes table, rows from the partitions a minute's row lists.
//
// Configuration: ParseURL reads
// cassandra://HOST1,HOST2:9042/KEYSPACE?table=features&state=NAME&consistency=LOCAL_QUORUM&dc=DC1&compression=snappy
// (Config lists every parameter); credentials come from
// DEMANDPIPE_CASSANDRA_USERNAME and DEMANDPIPE_CASSANDRA_PASSWORD or
// password_file=, never from the URL or a flag.
//
// Metrics (namespace demandpipe, subsystem sink, label sink="cassandra"
// on the queue's):
//
//	demandpipe_sink_sent_items_total         rows acknowledged by Cassandra
//	demandpipe_sink_sent_batches_total       CQL batches (or single-row INSERTs) acknowledged
//	demandpipe_sink_failures_total           failed write attempts
//	demandpipe_sink_retries_total            attempts after a failure
//	demandpipe_sink_dropped_items_total      rows given up on (the run fails)
//	demandpipe_sink_dropped_batches_total
//	demandpipe_sink_enqueue_blocked_total    Writes that waited for room (back-pressure)
//	demandpipe_sink_in_flight_writes         gauge: batches being written now
//	demandpipe_sink_queue_items              gauge: rows held by the queue
//	demandpipe_sink_queue_capacity_items     gauge: -sink.queue-capacity
//	demandpipe_sink_batch_items              histogram: rows per batch
//	demandpipe_sink_write_duration_seconds   histogram: write attempt latency
//	demandpipe_sink_cassandra_compression_info{codec,requested}  1
//	demandpipe_sink_cassandra_state_bytes_total    engine state committed (count records, checkpoints)
//	demandpipe_sink_cassandra_state_retries_total  retried state and minutes-row writes
package cassandra
