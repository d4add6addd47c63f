// Package store is demandpipe's embedded, persistent feature store: the
// default sink (-sink=store:DIR) and the data behind the HTTP API (package
// serve). It keeps the rows of closed minutes in a pebble LSM, one key per
// (minute, product, cell), in the compact binary row encoding of package
// encode (encode/FORMAT.md).
//
// # Keys
//
// One tag byte, then the payload; big-endian numbers so that byte order is
// numeric order:
//
//	"d"                          feature definition name and format version
//	"m" | minute(4)              a closed minute: rows (uvarint), close time ms (varint)
//	"p" | code(1)                product code -> UUID (16 bytes)
//	"r" | minute(4) code(1) cell(8)  a row's features (encode.AppendRowValue)
//	"k"                          the engine's checkpoint (sink.Checkpointer)
//	"c" | minute(4)              the engine's source counts of a minute
//	"t"                          the retention clock: newest minute closed by event time (varint)
//	"K" | len(1) part | minute(4)  a part's checkpoint after minute (sink.PartCheckpointer, parts.go)
//	"C" | len(1) part | minute(4)  a part's source counts of a minute
//
// Rows sort by (minute, product, cell): a (minute, product, cell) read is a
// point lookup, a batch of cells is a run of forward seeks in one iterator,
// and a whole minute is one contiguous range, so retention removes expired
// minutes with two range tombstones (rows and markers) instead of a delete
// per row, and pebble drops the covered files whole.
//
// # Writes
//
// The engine calls Write with the rows of the minute being closed, then
// CloseMinute. Rows accumulate in one pebble batch together with the
// minute's marker and any new product codes, and CloseMinute applies that
// batch atomically and (by default) waits for the WAL fsync: a reader sees a
// minute whole or not at all, and a SIGKILL loses at most the minute that
// was being written. Products are stored by UUID under persistent one-byte
// codes of the store's own (a run's codes depend on arrival order).
//
// # Reads
//
// Get, GetMany, Scan, LatestMinute, Minutes and Products are safe for
// concurrent use with each other and with the writer, and never wait for it:
// pebble reads see the latest applied batch without locks. A cell without a
// row in a closed minute reads as all-zero features with Found=false.
//
// # Metrics
//
// Namespace demandpipe, subsystem store:
//
//	demandpipe_store_rows_written_total          rows committed
//	demandpipe_store_rows_dropped_total          rows not stored: their minute was never closed before Close
//	demandpipe_store_bytes_written_total         encoded key+value bytes committed
//	demandpipe_store_minute_commits_total        minutes committed (zero-row minutes too)
//	demandpipe_store_commit_duration_seconds     histogram: CloseMinute's batch apply + fsync
//	demandpipe_store_minute_expirations_total    minutes removed by retention
//	demandpipe_store_compactions_total           manual compactions of expired ranges
//	demandpipe_store_reads_total{op}             read calls: get, get_many, scan
//	demandpipe_store_read_rows_total             rows returned by reads (found or zero)
//	demandpipe_store_disk_bytes                  gauge: pebble's disk space usage
//	demandpipe_store_compaction_debt_bytes       bytes pebble must compact to bring the LSM into shape
//	demandpipe_store_l0_sublevels                sublevels in level 0 (write stalls start past ~20)
//	demandpipe_store_write_stalls_total          times pebble stalled writes
//	demandpipe_store_latest_minute_timestamp_seconds  gauge: start of the newest closed minute, unix seconds (0 when none)
package store
