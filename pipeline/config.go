package pipeline

import (
	"fmt"
	"runtime"
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
	// (-sink.batch-rows, default 4096).
	BatchRows int
	Dedup     dedup.Config
	Kring     kring.Config
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
		return fmt.Errorf("sink.batch-rows=%d: must be in 1..%d", c.BatchRows, 1<<20)
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
