package cassandra

import (
	"fmt"
	"strings"
	"time"
)

// Schema returns the CQL that creates the keyspace, the feature table and
// the state tables engine_state and minutes (statements separated by
// ";\n"), for `demandpipe schema cassandra` and for Config.CreateSchema. The model and its arithmetic are in
// sink/CASSANDRA.md:
//
//	PRIMARY KEY ((product uuid, minute bigint, region bigint), cell bigint), f blob
//
// A partition is one product's rows of one minute in one region (the
// cell's H3 parent at RegionResolution): at most 343 rows of ~65 bytes
// (~25 KB) at resolution 8, so a pricing read of one cell is one partition
// and of the 217 cells within 8 rings 1-4 (3 or 4 for 96% of centres,
// measured; resolution 4 would make it 1-3 but put a whole metro minute
// in a dozen partitions, i.e. on a handful of replicas). The product UUID is in the key, so no
// product-code mapping crosses processes (codes are run-local). Rows expire
// by the table's default_time_to_live; TimeWindowCompactionStrategy with
// windows of TTL/24 drops whole expired sstables instead of compacting
// them; LZ4 chunks of 16 KiB keep a one-cell read to one small chunk.
func Schema(cfg Config) string {
	return strings.Join(SchemaStatements(cfg), ";\n") + ";\n"
}

// SchemaStatements is Schema as separate statements (a driver runs one at
// a time).
func SchemaStatements(cfg Config) []string {
	repl := fmt.Sprintf("{'class': 'SimpleStrategy', 'replication_factor': %d}", cfg.ReplicationFactor)
	if cfg.LocalDC != "" {
		repl = fmt.Sprintf("{'class': 'NetworkTopologyStrategy', '%s': %d}", cfg.LocalDC, cfg.ReplicationFactor)
	}
	ttl := int64(cfg.TTL / time.Second)
	size, unit := twcsWindow(cfg.TTL)
	return []string{
		fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s", cfg.Keyspace, repl),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s (
	product uuid,
	minute bigint,
	region bigint,
	cell bigint,
	f blob,
	PRIMARY KEY ((product, minute, region), cell)
) WITH default_time_to_live = %d
	AND gc_grace_seconds = %d
	AND compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': '%s', 'compaction_window_size': %d}
	AND compression = {'class': 'LZ4Compressor', 'chunk_length_in_kb': 16}
	AND comment = 'demandpipe features: f = encode.AppendRowValue (encode/FORMAT.md); region = H3 parent of cell at resolution %d'`,
			cfg.Keyspace, cfg.Table, ttl, gcGrace(cfg.TTL), unit, size, cfg.RegionResolution),
		// The engine's state (sink.Checkpointer, state.go): count records
		// and checkpoints in chunks, chunk 0 written last; also the
		// definitions record (registry.go) and the writer lease (lease.go). Deletes only
		// ever remove records no checkpoint needs, and a resurrected one
		// is never read (an old count minute, an older checkpoint
		// sequence), so a short gc_grace is safe.
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s (
	name text,
	kind text,
	key bigint,
	chunk int,
	data blob,
	chunks int,
	size int,
	crc int,
	PRIMARY KEY ((name, kind), key, chunk)
) WITH CLUSTERING ORDER BY (key DESC, chunk ASC)
	AND gc_grace_seconds = 3600
	AND comment = 'demandpipe engine state: kind counts (key = minute), checkpoint (key = sequence), definition (key 0); chunk 0 carries chunks, size, crc (CRC-32C) and commits the record'`,
			cfg.Keyspace, StateTable),
		// The closed minutes (written after their rows), newest first.
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s (
	name text,
	minute bigint,
	rows int,
	closed_ms bigint,
	regions blob,
	PRIMARY KEY (name, minute)
) WITH CLUSTERING ORDER BY (minute DESC)
	AND default_time_to_live = %d
	AND gc_grace_seconds = %d
	AND comment = 'demandpipe closed minutes: regions = per product (UUID order) the 16-byte UUID, a uvarint count and the delta-uvarint region ids of its partitions'`,
			cfg.Keyspace, MinutesTable, ttl, gcGrace(cfg.TTL)),
	}
}

// The state tables' names (one pair per keyspace; rows are keyed by
// Config.StateName).
const (
	StateTable   = "engine_state"
	MinutesTable = "minutes"
)

// twcsWindow sizes TimeWindowCompactionStrategy windows to TTL/24 (rounded
// up to a whole minute): 24 windows live per TTL plus the one being
// written, well under the ~50 past which TWCS reads and compactions
// degrade. 2h -> 5 MINUTES.
func twcsWindow(ttl time.Duration) (size int64, unit string) {
	m := (int64(ttl/time.Minute) + 23) / 24
	m = max(m, 1)
	switch {
	case m%1440 == 0:
		return m / 1440, "DAYS"
	case m%60 == 0:
		return m / 60, "HOURS"
	}
	return m, "MINUTES"
}

// gcGrace: rows are never deleted, only expired, and an expired cell is
// expired on every replica alike, so nothing can be resurrected; a short
// grace (one TTL window's worth, at least an hour) lets TWCS drop whole
// sstables soon after their rows expire.
func gcGrace(ttl time.Duration) int64 {
	return max(int64(3600), int64(ttl/time.Second)/24)
}

// H3 index layout: resolution in bits 52..55, then 15 digits of 3 bits,
// digit r in bits (15-r)*3 .. (15-r)*3+2; digits past the resolution are 7.
const (
	h3ResShift = 52
	h3ResMask  = uint64(15) << h3ResShift
)

// h3Resolution is an H3 index's resolution.
func h3Resolution(cell uint64) int { return int(cell >> h3ResShift & 15) }

// region is the partition's region of cell: its H3 parent at res, or the
// cell itself when it is coarser than res. Pure bit arithmetic (checked
// against h3-go's CellToParent in the tests): no cgo call per row.
func region(cell uint64, res int) uint64 {
	cr := h3Resolution(cell)
	if cr <= res {
		return cell
	}
	p := cell&^h3ResMask | uint64(res)<<h3ResShift
	// Set digits res+1..cr to 7 (those past cr already are).
	for r := res + 1; r <= cr; r++ {
		p |= 7 << ((15 - r) * 3)
	}
	return p
}
