package pipeline

import (
	"cmp"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/dedup"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/kring"
)

// Config holds the engine's knobs. Flags of `demandpipe run` map one to one.
type Config struct {
	// Def is the feature definition (-h3.resolution, -kring.rings,
	// -windows.minutes), or the first of a definitions file.
	Def feature.Definition
	// DefName names Def among several definitions (the first name of a
	// definitions file); "" is feature.DefaultName.
	DefName string
	// Extra are further definitions computed in the same pass (the rest of
	// -definitions=FILE): parsing, event time and dedup run once, each
	// counted event is located once per distinct resolution, and each
	// definition smooths and slides its own windows over its own counts
	// into its own sink (Engine.ExtraSinks). Default none.
	Extra []feature.Named
	// Lateness is how far behind the largest ts seen an event may be and
	// still count (-windows.lateness, default 30s). Minute m closes once
	// largest ts - Lateness >= end of m.
	Lateness time.Duration
	// IdleTimeout: when no input arrives for this long, event time advances
	// with the clock so minutes still close on a quiet live source
	// (-windows.idle-timeout, default 10s).
	IdleTimeout time.Duration
	// Parallelism is the number of parse and H3 workers (-parallelism,
	// default the number of CPUs). Dedup, watermark and the minute close's
	// bookkeeping stay sequential: they define arrival order.
	Parallelism int
	// ChunkBytes is the unit of work handed to a parse worker
	// (-source.chunk-bytes, default 256 KiB: ~580 events of 450 bytes, so
	// the two channel hand-offs per chunk cost well under 1% of parsing it).
	ChunkBytes int
	// MaxLineBytes bounds one input line (-source.max-line-bytes, default
	// 1 MiB); longer lines are rejected as line_too_long and skipped.
	MaxLineBytes int
	// BatchRows bounds the rows handed to the sink in one Write
	// (-sink.write-rows, default 4096: one call per ~300 KB of rows; a
	// sink batches further on its own, e.g. Cassandra's -sink.batch-rows).
	BatchRows int
	// Owns, if set, says which cells' rows this process emits (the
	// aggregate role of a scale-out keeps its regions' cells); nil emits
	// every cell. Not a flag: the scale-out roles set it.
	Owns func(cell uint64) bool
	// MaxMemory bounds the engine's state in bytes (-max-memory, default
	// DefaultMaxMemory: a third of the machine's memory or of the cgroup's
	// limit, since the Go heap holds up to twice the live state between
	// collections); 0: no bound. A quarter is the dedup tables' (16 bytes a
	// key whatever the rider id's length: the dedup_bytes metric), a
	// sixteenth the sequencer's (events ahead of event time and waiting for
	// their product, with their lines: sequencer_bytes), the rest the close
	// state (windows, sparse sources, cell index, disks, scratch:
	// state_bytes). Past it, events are shed and counted (over_budget)
	// instead of the process dying: at dedup, an event whose key has no room
	// (so no event is ever counted twice); at its minute's close, a source
	// in a place the state does not hold yet. Rows then understate those
	// places, by design and visibly.
	MaxMemory int64
	// Future is event time: K riders, and the bound by the machine's clock.
	Future FutureConfig
	// Products, if set, are the only product types counted (-products=FILE,
	// package productfile); an event of any other is rejected as
	// unknown_product in the parse stage, so junk product UUIDs cost only
	// their own events instead of taking the 256 product codes from real
	// products. nil admits every product type.
	Products map[encode.UUID]string
	Dedup    dedup.Config
	Kring    kring.Config
	// Now is the wall clock, injectable for tests. Default time.Now.
	Now func() time.Time

	compactAt int // aggregate.Config.CompactAt: tests lower it
}

// Aggregate is the configuration of the count and close (package
// aggregate) this engine's knobs make: three quarters of MaxMemory (the
// dedup tables have the rest), and Key naming the settings a resume must
// match.
func (c Config) Aggregate() aggregate.Config {
	return aggregate.Config{
		Def: c.Def, Parallelism: c.Parallelism, BatchRows: c.BatchRows,
		MaxMemory: c.closeShare(), Owns: c.Owns, Kring: c.Kring,
		Key: c.configKey(), CompactAt: c.compactAt,
	}
}

// Named is Def with its name.
func (c Config) Named() feature.Named {
	return feature.Named{Name: cmp.Or(c.DefName, feature.DefaultName), Definition: c.Def}
}

// forDef is c computing d instead of its own definitions: the settings a
// further definition's checkpoints record and its count and close use.
func (c Config) forDef(d feature.Named) Config {
	c.Def, c.DefName, c.Extra = d.Definition, d.Name, nil
	return c
}

// closeShare is each definition's part of MaxMemory: what the dedup tables
// leave, split evenly among the definitions (0: no bound).
func (c Config) closeShare() int64 {
	return (c.MaxMemory - dedupShare(c.MaxMemory) - seqShare(c.MaxMemory)) / int64(1+len(c.Extra))
}

// resolutions are the distinct resolutions of the run's definitions,
// Def's first, and for each definition (Def, then Extra) the index of its
// resolution among them.
func (c Config) resolutions() (res []int, of []int) {
	res = []int{c.Def.Resolution}
	of = []int{0}
	for _, d := range c.Extra {
		i := slices.Index(res, d.Resolution)
		if i < 0 {
			i = len(res)
			res = append(res, d.Resolution)
		}
		of = append(of, i)
	}
	return res, of
}

// DefaultConfig returns the contract's defaults.
func DefaultConfig() Config {
	return Config{
		Def:          feature.Default(),
		Lateness:     30 * time.Second,
		IdleTimeout:  10 * time.Second,
		Parallelism:  runtime.NumCPU(),
		ChunkBytes:   256 << 10,
		MaxLineBytes: 1 << 20,
		BatchRows:    4096,
		MaxMemory:    DefaultMaxMemory(),
		Future:       DefaultFutureConfig(),
		Dedup:        dedup.DefaultConfig(),
		Kring:        kring.DefaultConfig(),
		Now:          time.Now,
	}
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	if err := c.Def.Validate(); err != nil {
		return err
	}
	if c.Lateness < 0 || c.Lateness > 24*time.Hour {
		return fmt.Errorf("windows.lateness=%s: must be in 0s..24h", c.Lateness)
	}
	if c.IdleTimeout < 100*time.Millisecond || c.IdleTimeout > 24*time.Hour {
		return fmt.Errorf("windows.idle-timeout=%s: must be in 100ms..24h", c.IdleTimeout)
	}
	if c.Parallelism < 1 || c.Parallelism > 256 {
		return fmt.Errorf("parallelism=%d: must be in 1..256", c.Parallelism)
	}
	if c.ChunkBytes < 4<<10 || c.ChunkBytes > 64<<20 {
		return fmt.Errorf("source.chunk-bytes=%d: must be in 4096..%d", c.ChunkBytes, 64<<20)
	}
	if c.MaxLineBytes < 1<<10 || c.MaxLineBytes > 256<<20 {
		return fmt.Errorf("source.max-line-bytes=%d: must be in 1024..%d", c.MaxLineBytes, 256<<20)
	}
	if c.BatchRows < 1 || c.BatchRows > 1<<20 {
		return fmt.Errorf("sink.write-rows=%d: must be in 1..%d", c.BatchRows, 1<<20)
	}
	if c.MaxMemory != 0 && c.MaxMemory < 16<<20 {
		return fmt.Errorf("max-memory=%d: must be 0 (no bound) or at least 16 MiB", c.MaxMemory)
	}
	if len(c.Extra) > 0 {
		all := append([]feature.Named{c.Named()}, c.Extra...)
		if err := feature.ValidateSet(all); err != nil {
			return err
		}
	}
	if err := c.Future.Validate(); err != nil {
		return err
	}
	if err := c.Dedup.Validate(); err != nil {
		return err
	}
	if err := c.Kring.Validate(); err != nil {
		return err
	}
	if c.Now == nil {
		return fmt.Errorf("pipeline: Now clock is nil")
	}
	return nil
}

// FutureConfig is event time (docs/CONTRACT.md "Semantics" 1a; sequence.go): the
// watermark follows T, the ConfirmRiders-th largest of distinct riders'
// latest accepted times, so that fewer than ConfirmRiders riders cannot move
// it; and no event is ever held or rejected for being far from another one.
type FutureConfig struct {
	// MaxSkew bounds ts by the machine's clock (-windows.max-future-skew,
	// default 5m): an event with ts > now + MaxSkew is rejected as future,
	// on every source, since no confirmation can make it true. 0 turns event
	// time by riders off as well: the watermark then follows the largest ts
	// of all (one rider can move it), the rule-off run the tests compare
	// against.
	MaxSkew time.Duration
	// ConfirmRiders is K (-windows.future-confirm-riders, default 16): the
	// watermark is the K-th largest of distinct riders' latest times, so
	// K-1 riders with any clocks can neither close a minute early nor make
	// anyone else's events late. Minutes close only once K riders have
	// been seen (a finite input closes the rest at its end); a dense
	// stream's K-th rider trails its newest event by milliseconds (16
	// riders: ~10 ms at the live city's 1,600 events/s).
	ConfirmRiders int
	// ProductReserve is how many of the 256 one-byte product codes wait
	// for confirmed products (-windows.product-reserve, default 64): once
	// fewer codes than this are free (neither unused nor reusable, see
	// sequencer.reusable), a new product type gets a code only after
	// ConfirmRiders distinct riders have used it, and its events wait for
	// that (hold.go), each until its minute closes; the ones never
	// confirmed are then rejected as unconfirmed_product. So fewer than K
	// riders cannot take the last codes from the products that come after
	// them: 1,000 junk UUIDs ahead of real data take 192 codes and cost
	// only their own events. 0: no reserve (every product takes a code
	// while one is free); 256: every new product waits for K riders.
	ProductReserve int
}

// DefaultFutureConfig returns the documented defaults.
func DefaultFutureConfig() FutureConfig {
	return FutureConfig{MaxSkew: 5 * time.Minute, ConfirmRiders: 16, ProductReserve: 64}
}

// maxConfirmRiders bounds K: the sequencer scans its K riders for an event
// newer than the K-th (~1 ns each), so K stays small.
const maxConfirmRiders = 1024

// Validate reports the first bad field.
func (c FutureConfig) Validate() error {
	if c.MaxSkew < 0 || c.MaxSkew > 365*24*time.Hour {
		return fmt.Errorf("windows.max-future-skew=%s: must be in 0s (off)..8760h", c.MaxSkew)
	}
	if c.ConfirmRiders < 1 || c.ConfirmRiders > maxConfirmRiders {
		return fmt.Errorf("windows.future-confirm-riders=%d: must be in 1..%d", c.ConfirmRiders, maxConfirmRiders)
	}
	if c.ProductReserve < 0 || c.ProductReserve > encode.MaxProducts {
		return fmt.Errorf("windows.product-reserve=%d: must be in 0..%d", c.ProductReserve, encode.MaxProducts)
	}
	return nil
}

func (c FutureConfig) rule() futureRule {
	k := c.ConfirmRiders
	if c.MaxSkew == 0 {
		k = 1 // off: the largest ts of all
	}
	return futureRule{skew: c.MaxSkew.Milliseconds(), confirm: k, reserve: c.ProductReserve}
}

// seqShare is the sequencer's part of MaxMemory (0: no bound): the events
// it keeps ahead of event time and those waiting for their product, with
// their lines, a sixteenth (16 MiB of 256: ~40,000 lines of 400 bytes).
// Past it such an event is rejected at once (future, too_many_products),
// as past maxAhead and maxHeld.
func seqShare(maxMemory int64) int64 { return maxMemory / 16 }

// dedupShare is the dedup tables' part of MaxMemory (0: no bound): a
// quarter, 64 MiB of 256: 4M slots, room for 3M keys of one minute.
func dedupShare(maxMemory int64) int64 { return maxMemory / 4 }

// DefaultMaxMemory is a third of the memory this process may use: the
// machine's (MemTotal in /proc/meminfo) or, if lower, its cgroup's limit
// (memory.max). 0 (no bound) where neither can be read. Read once: every
// DefaultConfig asks for it.
var DefaultMaxMemory = sync.OnceValue(readMaxMemory)

func readMaxMemory() int64 {
	limit := int64(0)
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					limit = kb << 10
				}
			}
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 && (limit == 0 || v < limit) {
			limit = v
		}
	}
	return limit / 3
}
