package pipeline

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/demandpipe/demandpipe/dedup"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/kring"
)

// Config holds the engine's knobs. Flags of `demandpipe run` map one to one.
type Config struct {
	// Def is the feature definition (-h3.resolution, -kring.rings,
	// -windows.minutes).
	Def feature.Definition
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
	// MaxMemory bounds the close state (windows, sparse sources, cell index,
	// disks, scratch: the state_bytes metric) in bytes (-max-memory, default
	// DefaultMaxMemory: a third of the machine's memory or of the cgroup's
	// limit, since the Go heap holds up to twice the live state between
	// collections); 0: no bound. Past it, sources in places the state does
	// not hold yet are shed at their minute's close and counted
	// (over_budget), instead of the process dying: rows then understate
	// those places, by design and visibly.
	MaxMemory int64
	// Future is the rule for events far ahead of event time.
	Future FutureConfig
	Dedup  dedup.Config
	Kring  kring.Config
	// Now is the wall clock, injectable for tests. Default time.Now.
	Now func() time.Time
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

// FutureConfig is the future rule (README "Semantics"; sequence.go): an event
// more than MaxSkew ahead of the event-time frontier is held until
// ConfirmRiders distinct riders confirm the new time, and rejected as
// future if they never do.
type FutureConfig struct {
	// MaxSkew: how far ahead of the frontier an event may be and still
	// count at once (-windows.max-future-skew, default 5m; 0 turns the rule
	// off). On a live source it also bounds ts by the wall clock: ts > now +
	// MaxSkew is future. Events within MaxSkew still move the watermark, so
	// a clock up to MaxSkew fast can close minutes early: smaller is
	// stricter, but a genuine jump of the stream is then held for as long as
	// it takes ConfirmRiders riders to arrive.
	MaxSkew time.Duration
	// ConfirmRiders: distinct riders, held since the last accepted event,
	// that confirm a jump of the stream (-windows.future-confirm-riders,
	// default 16). A jump is confirmed only when no accepted event arrives
	// between the held ones, so bad clocks (a fraction p of events, at
	// random) confirm with probability about p^16: 1e-16 for p = 10%.
	// A genuine jump waits for 16 riders: ~10 ms at the live city's
	// 1,600 events/s, 16 minutes on a stream of one event a minute.
	ConfirmRiders int
	// MaxHeld bounds the events held at once (-windows.future-max-held,
	// default 10000, ~6 MB at ~600 bytes each); the oldest is rejected past it.
	MaxHeld int
	// MaxHold: a held event is rejected once the frontier has moved this far
	// since it was held (-windows.future-max-hold, default 10m of event
	// time, so replays and live runs behave alike).
	MaxHold time.Duration
}

// DefaultFutureConfig returns the documented defaults.
func DefaultFutureConfig() FutureConfig {
	return FutureConfig{MaxSkew: 5 * time.Minute, ConfirmRiders: 16, MaxHeld: 10000, MaxHold: 10 * time.Minute}
}

// Validate reports the first bad field.
func (c FutureConfig) Validate() error {
	if c.MaxSkew < 0 || c.MaxSkew > 365*24*time.Hour {
		return fmt.Errorf("windows.max-future-skew=%s: must be in 0s (off)..8760h", c.MaxSkew)
	}
	if c.ConfirmRiders < 1 || c.ConfirmRiders > 10000 {
		return fmt.Errorf("windows.future-confirm-riders=%d: must be in 1..10000", c.ConfirmRiders)
	}
	if c.MaxHeld < c.ConfirmRiders || c.MaxHeld > 10_000_000 {
		return fmt.Errorf("windows.future-max-held=%d: must be in windows.future-confirm-riders (%d)..10000000", c.MaxHeld, c.ConfirmRiders)
	}
	if c.MaxHold < time.Minute || c.MaxHold > 365*24*time.Hour {
		return fmt.Errorf("windows.future-max-hold=%s: must be in 1m..8760h", c.MaxHold)
	}
	return nil
}

func (c FutureConfig) rule(live bool) futureRule {
	return futureRule{skew: c.MaxSkew.Milliseconds(), confirm: c.ConfirmRiders, maxHeld: c.MaxHeld, maxHold: c.MaxHold.Milliseconds(), live: live}
}

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
