// Package cqltest is a CQL native protocol test double: a real TCP server that
// speaks enough of Cassandra's protocol (v3, v4 and v5) for the Go driver
// (github.com/apache/cassandra-gocql-driver/v2) and the DataStax Python driver
// to connect, create a schema, write and read rows. It keeps everything in
// memory, in one process, with no replication and no persistence; consistency
// levels are checked against the live nodes it stands for (Config.LiveNodes,
// default 1), as a real coordinator checks them. With Config.Nodes > 1 it is
// a cluster of that many nodes sharing the one store (node.go, ring.go):
// each listens on its own loopback address, owns one Murmur3 token and lists
// the others in system.peers, so drivers build a token ring and route by it,
// and Stats.Nodes shows whether each write reached a replica of its
// partition. It is NOT a database: use it for tests and demos where no
// Cassandra can run, never to hold data.
//
// Frames are decoded and encoded with github.com/datastax/go-cassandra-native-protocol;
// the accept loop, handshake, compression and v5 segments are our own (that
// library's CqlServer advertises no compression, compares the name with
// upper case and cannot listen on port 0; its segment codec reads at most
// 8x-compressed LZ4). BATCH bodies, nearly every row of a bulk load, are
// decoded in place by batch.go (checked against the library's decoding) so
// that the double costs its clients' benchmarks little CPU.
//
// # Using it
//
// In a Go test:
//
//	srv, err := cqltest.Start(cqltest.Config{}) // 127.0.0.1, any free port, one live node
//	defer srv.Close()
//	cluster := gocql.NewCluster("127.0.0.1")
//	cluster.Port = srv.Port()
//	cluster.Compressor = lz4.LZ4Compressor{} // optional; snappy too
//
// As a process (another language's tests, a demo):
//
//	go run ./internal/cqltest/cmd/cqltestd -addr 127.0.0.1:9042 -latency 2ms -control 127.0.0.1:9142
//	cqlsh-like clients and drivers then connect to 127.0.0.1:9042, e.g. in Python:
//	Cluster(["127.0.0.1"], port=9042, protocol_version=5, compression="lz4",
//	        schema_metadata_enabled=False, token_metadata_enabled=False)
//	curl -XPOST '127.0.0.1:9142/fault?kind=overloaded&n=3'; curl 127.0.0.1:9142/stats
//	curl -XPOST '127.0.0.1:9142/nodes?live=1'   # (started with -live-nodes 3) two nodes die
//	curl -XPOST 127.0.0.1:9142/prepared/forget   # EXECUTEs get UNPREPARED, drivers re-prepare
//
// Three nodes with distinct token ranges (127.0.0.1, .2 and .3 at one port;
// the addresses are printed), for token-aware routing:
//
//	srv, err := cqltest.Start(cqltest.Config{Nodes: 3}) // srv.Addrs() lists them
//	go run ./internal/cqltest/cmd/cqltestd -addr 127.0.0.1:9042 -nodes 3 -control 127.0.0.1:9142
//	curl 127.0.0.1:9142/stats   # "Nodes": per node, writes coordinated by a replica or not
//
// # Supported
//
//   - Protocol v3, v4 and v5, as Cassandra 4.0 and 5.0. A v1, v2 or v6
//     request is answered with the PROTOCOL_ERROR "Invalid or unsupported
//     protocol version" and the connection is closed, so drivers negotiate
//     down (gocql v2 asks for v5 first and gets it).
//   - v5 framing (segment.go): after STARTUP's READY every byte is a
//     segment of one or more whole envelopes (self-contained) or of a part
//     of one envelope larger than 128 KiB - 1 (a run of segments that are
//     not), with a CRC24 over its header (3 bytes, 5 with lz4) and a CRC32
//     over its payload; with lz4 the payload is one LZ4 block (sent as is
//     when that is not smaller), else uncompressed. Responses are packed
//     into segments as Cassandra packs them. A CRC mismatch is answered
//     with Cassandra's PROTOCOL_ERROR and closes the connection; snappy in
//     a v5 STARTUP is refused (v5 allows lz4 only). v5 messages: 4-byte
//     query flags, keyspace and now_in_seconds in QUERY, EXECUTE and
//     BATCH, result metadata ids in PREPARED and EXECUTE.
//   - OPTIONS (SUPPORTED lists CQL_VERSION, PROTOCOL_VERSIONS 3/v3 4/v4 5/v5,
//     COMPRESSION lz4 and snappy in lower case), STARTUP with or without
//     compression (v3, v4: the envelope body, lz4 as a 4-byte big-endian
//     length + LZ4 block, snappy as one Snappy block; v5: the segments),
//     REGISTER (READY; a SCHEMA_CHANGE event is pushed, by every node, to
//     the connections that registered for it after each schema change, so
//     drivers refresh their schema and token-aware ones learn a new
//     keyspace's replication; no topology or status events). No
//     authentication.
//   - QUERY with positional values, PREPARE (bind variable specs named like
//     Cassandra's, partition-key indexes so drivers route by token, result
//     columns of a SELECT), EXECUTE (UNPREPARED 0x2500 for unknown ids, so
//     drivers re-prepare; Server.ForgetPrepared drops them all, as a cache
//     eviction does), BATCH (logged, unlogged, of queries or prepared ids;
//     UNPREPARED for an unknown id in it too).
//     Pipelining: every request runs in its own goroutine and is answered on its
//     stream id. Paging of SELECT results by page size.
//   - Consistency levels as Cassandra 4.0/5.0 checks them before contacting
//     replicas (ConsistencyLevel.blockFor, ReplicaPlans.assureSufficientLiveReplicas;
//     consistency.go): a QUERY, EXECUTE or BATCH that reads or writes a user
//     keyspace needing more live replicas than min(its replication factor in
//     DataCenter, LiveNodes) is answered UNAVAILABLE (0x1000) with the
//     consistency, required and alive counts, and applies nothing. ONE, TWO,
//     THREE need 1, 2, 3; QUORUM (and SERIAL) the sum of the factors / 2 + 1;
//     LOCAL_QUORUM the local factor / 2 + 1; ALL the sum; LOCAL_ONE 1 in the
//     local DC; EACH_QUORUM a local quorum in every DC of a
//     NetworkTopologyStrategy keyspace (other DCs have no live node here);
//     ANY never fails. With the default single node, a keyspace of
//     replication_factor 3 fails LOCAL_QUORUM (required 2, alive 1), as on a
//     real one-node cluster. SetLiveNodes (and POST /nodes) kills or revives
//     nodes while running. With Config.Nodes > 1 the live replicas are
//     counted per partition: those of its replicas on the ring (below)
//     among nodes 0..LiveNodes-1.
//   - A token ring with Config.Nodes > 1 (ring.go): node i owns the one
//     token i*2^64/N - 2^63 (the DataStax initial_token formula; one token
//     per node, not the vnodes of cassandra.yaml's num_tokens: 16, 256
//     before 4.0); a partition's token is Murmur3Partitioner's
//     (utils/MurmurHash.hash3_x64_128 with its sign-extended tail, the
//     key CompositeType-encoded when it has several columns), its primary
//     replica the first node whose token is >= it (wrapping), and its
//     replicas the next replication-factor distinct nodes clockwise
//     (SimpleStrategy, and NetworkTopologyStrategy with one rack).
//     Server.Replicas lists them. Every node serves every request; a
//     write coordinated by a node that is not a replica of its partition
//     is served as well, and counted (NodeStats.NonReplicaWrites): on a
//     real cluster it costs an extra hop.
//   - system.local (Murmur3Partitioner, the node's token, release_version
//     4.0.11), system.peers and system.peers_v2 (with one node empty: the
//     other LiveNodes count only for consistency; with Config.Nodes > 1
//     each node's lists the others, native_port in peers_v2), and the
//     system_schema tables keyspaces, tables, columns (rebuilt on every schema
//     change), views, types, functions, aggregates, indexes, triggers (empty).
//   - CREATE KEYSPACE / TABLE [IF NOT EXISTS] with types ascii, bigint, blob,
//     boolean, counter (as bigint bytes), date, decimal, double, duration, float,
//     inet, int, smallint, text/varchar, time, timestamp, timeuuid, tinyint,
//     uuid, varint, list<>, set<>, map<>, tuple<>, frozen<>; PRIMARY KEY
//     ((pk1, pk2), ck1, ...), STATIC, WITH options (recorded; default_time_to_live
//     applied; compaction, compression, ... shown in system_schema.tables),
//     CLUSTERING ORDER BY. USE, DROP TABLE, DROP KEYSPACE, TRUNCATE.
//   - INSERT ... VALUES (...) [IF NOT EXISTS] [USING TTL t [AND TIMESTAMP ts]];
//     UPDATE ... SET c = v, ... WHERE <whole primary key by =>
//     [IF EXISTS | IF c op v [AND ...]];
//     SELECT * | cols | COUNT(*) FROM t [WHERE c = v AND c IN (v, ...) AND
//     c IN ? AND ck < v ...] [ORDER BY ...] [LIMIT n] [ALLOW FILTERING];
//     DELETE [c, ...] FROM t [USING TIMESTAMP ts] WHERE <whole partition key
//     by = or IN> [AND clustering conditions] (a partition, rows, a range,
//     or cells of rows) [IF EXISTS | IF c op v [AND ...]]. Values are bind
//     markers or literals (strings, numbers, booleans, null, 0x blobs,
//     collections).
//   - Lightweight transactions (lwt_test.go), as Cassandra 4.0/5.0 answers
//     them: INSERT IF NOT EXISTS (with USING TTL), UPDATE and DELETE IF
//     EXISTS or IF conditions on regular columns with = != < <= > >= (null
//     equal only to null; against a null column or a missing row only !=
//     holds: cql3/conditions/ColumnCondition.java compareWithOperator).
//     The answer is the row [applied]; not applied, followed by the
//     current row's columns (every column in SELECT * order for IF [NOT]
//     EXISTS, the conditions' columns in IF order otherwise), or [applied]
//     alone when there is no row (cql3/statements/ModificationStatement.java
//     buildCasResultSet). The check and the write are atomic; the write
//     carries the Paxos ballot's timestamp, the server's clock made
//     strictly increasing, not the client's (USING TIMESTAMP is refused:
//     "Cannot provide custom timestamp for conditional updates"). The
//     serial consistency (SERIAL when the client sends none) must be SERIAL
//     or LOCAL_SERIAL and the commit consistency must not be
//     (db/ConsistencyLevel.java validateForCas, validateForCasCommit); a
//     plain write at either is refused (validateForWrite); the live
//     replicas must meet the serial level's quorum, then the commit's,
//     else UNAVAILABLE at that level. IN on the key is refused, and a
//     DELETE with IF conditions must name one row.
//
// Values are not decoded: a cell is the bytes the client sent and goes back
// with the schema's type. A bound value is checked against its column's type
// first, as Cassandra's serializers check it: 4 bytes for a bigint is INVALID
// "Expected 8 or 0 byte long (4)" (fixed sizes of every fixed-size type,
// ASCII and UTF-8 text, TimeUUID version, collections element by element).
// Rows are keyed by the encoded partition key; within a
// partition they are ordered by clustering key, numerically for tinyint,
// smallint, int, bigint, counter, timestamp, time, float and double, and by
// unsigned bytes for every other type (right for text, blob and date; NOT
// Cassandra's order for timeuuid, uuid, varint, decimal, inet or boolean).
//
// Writes, timestamps and tombstones are Cassandra's (cells.go): every cell
// carries its write timestamp (USING TIMESTAMP, else the request's default
// timestamp, which gocql sends by default, else the server's clock in
// microseconds, strictly increasing; one for a whole BATCH) and, when
// written with a TTL (USING TTL or default_time_to_live), its own expiry.
// The highest timestamp wins whatever the order of arrival
// (db/rows/Cells.java reconcile: on a tie a tombstone beats a value, then
// the greater value wins); INSERT writes the row marker, UPDATE does not.
// DELETE of a partition, a row, a clustering range or cells (and null
// values) are tombstones at the statement's timestamp: a delete wins a tie,
// and a write older than a delete stays deleted even if it arrives later.
// Reads count the tombstones they pass (expired cells included) and warn
// past Config.TombstoneWarnThreshold (1,000), fail with READ_FAILURE past
// Config.TombstoneFailureThreshold (100,000), as db/ReadCommand.java.
// A full scan returns partitions in key-byte order, not token order.
//
// # Differences from the real server
//
//   - One store holds everything; with one node the other LiveNodes count
//     only for consistency levels and system.peers is empty; with
//     Config.Nodes > 1 every node serves the same rows (no replication, no
//     hinted handoff, no read repair: nothing to disagree), a node
//     "down" for LiveNodes still answers clients, and Down stops them all.
//     No replica ever times out or disagrees unless a fault is injected.
//   - Tombstones (and expired cells) are never purged unless
//     Config.PurgeTombstones, which purges them gc_grace_seconds after
//     their deletion, as if a compaction then took all of their partition's
//     sstables. A real node lies in between: TimeWindowCompactionStrategy
//     drops whole expired sstables, while a partition written to all the
//     time keeps its tombstones until a major compaction.
//   - Tombstone counting follows ReadCommand's rules closely, not
//     exactly: a range deletion counts two bounds whenever a read's slice
//     is not one row it misses; a paged read recounts nothing, as each
//     page counts from its first row.
//   - Range deletions of one shape (the same columns and operators) merge
//     when the newer covers the older, as in a memtable; others are kept
//     side by side.
//   - An empty value passes the type check for every type (Cassandra
//     refuses it for a few); inet and decimal are checked loosely.
//   - Protocol v6 (beta) is refused; a v5 envelope's compression flag is
//     ignored (Cassandra's v5 pipeline has no envelope decompressor
//     either).
//   - Prepared statements are kept until ForgetPrepared, Close or a DROP;
//     a real node also evicts them (prepared_statements_cache_size) and
//     reloads them after a restart (system.prepared_statements).
//
// # Not supported
//
// Authentication, events other than SCHEMA_CHANGE, tracing, named bind values,
// secondary indexes, materialized views, user types, functions, aggregates,
// counters arithmetic (UPDATE c = c + 1), collection updates, IN and
// collection-element IF conditions, conditional batches, serial reads
// (a SELECT at SERIAL reads as any other), WRITETIME() and TTL() in SELECT,
// static columns kept per partition (they are kept per row), tokens and
// token() in WHERE, and
// consistency beyond the live-replica check: no replica ever times out or
// disagrees unless a fault is injected, a read at ANY is not refused, a
// lightweight transaction never meets contention (no Paxos round to lose:
// no WRITE_TIMEOUT of type CAS unless injected, no CAS_WRITE_UNKNOWN),
// and TRUNCATE does not need every node up. Unsupported CQL gets a SYNTAX_ERROR or INVALID error naming the
// problem.
//
// # Faults and statistics
//
// Server.SetLatency adds a service time to every statement on a user keyspace;
// requests sleep in parallel, so N requests in flight complete N per service
// time. Server.InjectFault fails the next n statements and Server.SetFaultRate
// a fraction of them with OVERLOADED, WRITE_TIMEOUT (READ_TIMEOUT for reads),
// WRITE_TIMEOUT after applying the write (FaultTimeoutApplied: a timeout
// does not say the write was not applied), UNAVAILABLE, SERVER_ERROR, or by
// closing the connection. Server.ForgetPrepared makes the next EXECUTE and
// BATCH of every prepared id answer UNPREPARED. DropConnections
// closes every connection; Down stops listening and closes connections, and
// the server comes back on the same address with its data after a delay (or
// on Up). System-table queries are never delayed or failed, so drivers can
// always discover the node.
//
// Server.Stats reports connections, the compression each negotiated, protocol
// versions used and refused, v5 segments and large envelopes, requests by
// opcode, statements by kind, batches and the distinct partitions each
// touched, rows written, errors by name, injected faults, reads past the
// tombstone thresholds, the in-flight peak, and bytes received and sent;
// and, per node (Stats.Nodes), its requests and the single-partition writes
// and BATCHes it coordinated as the partition's primary replica, as another
// replica, or as no replica.
//
// An UNAVAILABLE for a consistency the live nodes cannot meet is not an
// injected fault: it is not counted in Stats.Injected, only in Stats.Errors.
//
// A note for users of gocql v2 against this single node: SimpleRetryPolicy and
// ExponentialBackoffRetryPolicy retry on the *next host* only, so with one node
// they never retry; use a RetryPolicy whose GetRetryType returns gocql.Retry.
package cqltest
