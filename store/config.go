package store

import (
	"flag"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/demandpipe/demandpipe/feature"
)

// DefaultDir is where -sink=store: and serve -store look without a path.
const DefaultDir = "./demandpipe-data"

// Config configures a Store. Start from DefaultConfig; every field's default
// is documented beside it.
type Config struct {
	// Dir is the pebble directory. Default DefaultDir.
	Dir string
	// Definition is the feature definition the rows follow. A new store
	// records it; an existing store must hold the same one (Open fails
	// otherwise, so 54 numbers are never read under the wrong names). The
	// zero value adopts the stored definition, or feature.Default() for a
	// new store.
	Definition feature.Definition
	// Retention keeps minutes newer than the retention clock minus
	// Retention, whole minutes, 1m..168h. The clock is the newest minute
	// closed by event time (sink.State.Clock: a replay keeps its last two
	// hours too, and the last few riders of an input, whose minutes the
	// end of the input closes, cannot move it), or the newest closed minute
	// for a writer that stages no state. One bad row cannot move it: a
	// minute more than MaxAhead ahead of the machine's clock is refused,
	// and so is a minute already behind the window (it would be deleted
	// at once); both stop the run with an error that names the way out. Default 2h: 120 minutes of a dense metro
	// (~30k rows/minute at ~80 bytes) is ~290 MB before block compression.
	Retention time.Duration
	// CompactEvery is how many minutes of expiry accumulate before the
	// expired key ranges are compacted away (1..1440). Pebble drops files
	// wholly under a range tombstone by itself; the manual compaction bounds
	// the partly covered ones. Default 10: at most ~10 minutes of dead rows
	// linger on disk, ~8% over the 2h default.
	CompactEvery int
	// MemTableBytes is pebble's memtable size (1 MiB..1 GiB). Default
	// 64 MiB: a dense-metro minute (~2.5 MB of rows) fits many times over,
	// so a minute's batch never waits on a flush.
	MemTableBytes int64
	// CacheBytes is pebble's block cache (0..64 GiB). Default 64 MiB: the
	// hot set is the latest minute (a few MB), read by every request.
	CacheBytes int64
	// Compression is the block compression of sstables: "snappy", "minlz",
	// "zstd" or "none". Default "snappy" (pebble's default; see FORMAT.md
	// for bytes per row under each).
	Compression string
	// Sync makes CloseMinute wait for the WAL fsync, so a committed minute
	// survives power loss, not only a killed process. Default true; the
	// fsync costs ~1-5 ms per minute here, nothing at one commit a minute.
	Sync bool
	// MaxAhead: a minute that starts more than this after the machine's
	// clock is refused (-store.max-ahead, 1m..168h, default 10m: the
	// engine's -windows.max-future-skew of 5m plus a minute of margin and
	// a few minutes of clock error). Replays of the past are not affected.
	MaxAhead time.Duration
	// MinFreeBytes: the store refuses to commit (and to open for writing)
	// with less than this available on its filesystem, ending the run with
	// a clear "disk full" error before pebble meets ENOSPC in the middle of
	// a flush (-store.min-free-bytes, 0..1 TiB, 0: no check). Default
	// 256 MiB: two 64 MiB memtables being flushed plus their compaction
	// output, with room; a dense minute is ~3 MB.
	MinFreeBytes int64
	// FS is the filesystem; nil is the operating system's (tests inject
	// faults through pebble's vfs/errorfs).
	FS vfs.FS
	// Now is the machine's clock, injectable for tests. Default time.Now.
	Now func() time.Time
	// ReadOnly opens an existing store for reading only (demandpipe serve).
	// Default false.
	ReadOnly bool
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Dir:           DefaultDir,
		Retention:     2 * time.Hour,
		MaxAhead:      10 * time.Minute,
		MinFreeBytes:  256 << 20,
		Now:           time.Now,
		CompactEvery:  10,
		MemTableBytes: 64 << 20,
		CacheBytes:    64 << 20,
		Compression:   "snappy",
		Sync:          true,
	}
}

// Validate reports the first out-of-range field, naming its flag and range.
func (c Config) Validate() error {
	if c.Dir == "" {
		return fmt.Errorf("store dir: must not be empty (e.g. -sink=store:%s)", DefaultDir)
	}
	if c.Definition.Rings != nil || c.Definition.Windows != nil {
		if err := c.Definition.Validate(); err != nil {
			return fmt.Errorf("store definition: %w", err)
		}
		if n := c.Definition.NumFeatures(); n > 256 {
			return fmt.Errorf("store definition: %d features, at most 256", n)
		}
	}
	if c.MaxAhead < time.Minute || c.MaxAhead > 168*time.Hour {
		return fmt.Errorf("store.max-ahead=%v: must be in 1m..168h", c.MaxAhead)
	}
	if c.MinFreeBytes < 0 || c.MinFreeBytes > 1<<40 {
		return fmt.Errorf("store.min-free-bytes=%d: must be in 0..%d", c.MinFreeBytes, int64(1)<<40)
	}
	if c.Now == nil {
		return fmt.Errorf("store: Now clock is nil")
	}
	if c.Retention < time.Minute || c.Retention > 168*time.Hour || c.Retention%time.Minute != 0 {
		return fmt.Errorf("store.retention=%v: must be whole minutes in 1m..168h", c.Retention)
	}
	if c.CompactEvery < 1 || c.CompactEvery > 1440 {
		return fmt.Errorf("store.compact-every=%d: must be in 1..1440 minutes", c.CompactEvery)
	}
	if c.MemTableBytes < 1<<20 || c.MemTableBytes > 1<<30 {
		return fmt.Errorf("store.memtable-bytes=%d: must be in 1 MiB..1 GiB", c.MemTableBytes)
	}
	if c.CacheBytes < 0 || c.CacheBytes > 64<<30 {
		return fmt.Errorf("store.cache-bytes=%d: must be in 0..64 GiB", c.CacheBytes)
	}
	if _, ok := compressions[c.Compression]; !ok {
		return fmt.Errorf("store.compression=%q: must be one of snappy, minlz, zstd, none", c.Compression)
	}
	return nil
}

// RegisterFlags binds the tuning fields to fs as -store.retention,
// -store.compact-every, -store.memtable-bytes, -store.cache-bytes,
// -store.compression and -store.sync, with c's values as defaults. The
// directory is the command's own flag (-sink=store:DIR, serve -store=DIR).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.Retention, "store.retention", c.Retention, "keep closed minutes this long behind the newest one closed by event time (whole minutes, 1m..168h)")
	fs.IntVar(&c.CompactEvery, "store.compact-every", c.CompactEvery, "compact expired key ranges after this many expired minutes (1..1440)")
	fs.Int64Var(&c.MemTableBytes, "store.memtable-bytes", c.MemTableBytes, "pebble memtable size in bytes (1 MiB..1 GiB)")
	fs.Int64Var(&c.CacheBytes, "store.cache-bytes", c.CacheBytes, "pebble block cache size in bytes (0..64 GiB)")
	fs.StringVar(&c.Compression, "store.compression", c.Compression, "sstable block compression: snappy, minlz, zstd or none")
	fs.DurationVar(&c.MaxAhead, "store.max-ahead", c.MaxAhead, "refuse minutes that start more than this after the machine's clock, so one bad row cannot move the retention clock")
	fs.Int64Var(&c.MinFreeBytes, "store.min-free-bytes", c.MinFreeBytes, "stop with a clear disk-full error when the store's filesystem has less than this available (0: no check)")
	fs.BoolVar(&c.Sync, "store.sync", c.Sync, "fsync the WAL when a minute closes (survives power loss, not only a killed process)")
}

// retentionMinutes is Retention in whole minutes.
func (c Config) retentionMinutes() int64 { return int64(c.Retention / time.Minute) }
