package aggregate

import (
	"fmt"
	"math"
	"runtime"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/kring"
)

// NoMinute is "no minute yet": below every real unix minute, with room to
// subtract windows from it without overflow.
const NoMinute = math.MinInt64 / 4

// Config holds what the count and the close need. pipeline.Config carries
// the same knobs as flags and derives this (pipeline.Config.Aggregate); the
// aggregate role builds it the same way.
type Config struct {
	// Def is the feature definition: resolution, rings, windows.
	Def feature.Definition
	// Parallelism is the number of workers smoothing and sliding a
	// minute's products (default the number of CPUs).
	Parallelism int
	// BatchRows bounds the rows handed to the sink in one Write (default
	// 4096: one call per ~300 KB of rows).
	BatchRows int
	// MaxMemory bounds the close state in bytes (windows, sparse sources,
	// cell index, disks); 0: no bound. 90% is the budget new sources are
	// admitted against, the rest slack for arrays that grow by doubling.
	// Past it a source in a place the state does not hold yet is shed and
	// counted (Stats.OverBudget). pipeline gives it three quarters of its
	// -max-memory (the dedup tables have the rest).
	MaxMemory int64
	// Owns, if set, says which cells' rows are emitted (the aggregate role
	// keeps its regions' cells); nil emits every cell.
	Owns func(cell uint64) bool
	// Kring is the smoothing's configuration (disk cache, the sparse path).
	Kring kring.Config
	// Key names the settings a restart must share with the run that wrote
	// a checkpoint (pipeline.Config's definition, lateness, event time and
	// products); part checkpoints (UseParts) record it and refuse another.
	Key string
	// CompactAt is the cell index size from which it is renumbered to the
	// cells the windows still hold (0: the default, 2^17 cells, ~6 MB:
	// below that renumbering costs more than it frees). Tests lower it.
	CompactAt int
}

// DefaultConfig returns the defaults of pipeline.DefaultConfig's
// definition and knobs.
func DefaultConfig() Config {
	return Config{
		Def:         feature.Default(),
		Parallelism: runtime.NumCPU(),
		BatchRows:   4096,
		Kring:       kring.DefaultConfig(),
	}
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	if err := c.Def.Validate(); err != nil {
		return err
	}
	if c.Parallelism < 1 || c.Parallelism > 256 {
		return fmt.Errorf("parallelism=%d: must be in 1..256", c.Parallelism)
	}
	if c.BatchRows < 1 || c.BatchRows > 1<<20 {
		return fmt.Errorf("sink.write-rows=%d: must be in 1..%d", c.BatchRows, 1<<20)
	}
	if c.MaxMemory < 0 {
		return fmt.Errorf("aggregate: max memory %d is negative", c.MaxMemory)
	}
	if c.CompactAt < 0 {
		return fmt.Errorf("aggregate: compact-at %d is negative", c.CompactAt)
	}
	return c.Kring.Validate()
}
