package serve

import (
	"flag"
	"fmt"
	"time"
)

// Config configures the HTTP API and page. Start from DefaultConfig.
type Config struct {
	// MaxBatchCells bounds the cells (and points) of one POST
	// /v1/features:batch (1..10,000). Default 1,000, the contract's limit:
	// a 1,000-cell answer of 54 features is ~1.3 MB of JSON.
	MaxBatchCells int
	// MaxBodyBytes bounds a request body (1 KiB..16 MiB). Default 256 KiB:
	// 1,000 cells of ~20 bytes each, or 1,000 points of ~45, with room.
	MaxBodyBytes int64
	// MapMaxCells bounds the cells of one heat map answer (1..200,000); the
	// hottest are kept. Default 20,000: a dense metro's non-zero cells fit,
	// ~3 MB of JSON with boundaries, which an SVG draws in ~100 ms.
	MapMaxCells int
	// BoundaryCacheCells bounds the cache of cell boundaries the map
	// reuses between refreshes (0 disables; at most 10,000,000). Default
	// 200,000 (~25 MB): computing a boundary is ~1.5 us of cgo, caching
	// turns a 20,000-cell refresh from ~30 ms into ~3 ms.
	BoundaryCacheCells int
	// PageRefresh is how often the page reloads the map (1s..1h). Default
	// 10s: a minute closes every 60 s, so a new minute shows within ~10 s.
	PageRefresh time.Duration
	// ReadyMaxAge: /readyz says ready only while the latest minute ended at
	// most this long ago, and not in the future (-serve.ready-max-age,
	// 0..24h, 0: any closed minute will do, e.g. to serve a replay of old
	// data). Default 3m: a minute closes ~30 s (the lateness) after its
	// end, once a minute, so a live store's latest minute is 30-90 s old;
	// 3m tolerates one missed close before a balancer takes it out.
	ReadyMaxAge time.Duration
	// ProductNames is a file naming product types for people
	// (-serve.product-names=FILE): CSV lines uuid,name or JSON
	// {"uuid":"name",…}; see names.go. The page's picker and the "names"
	// field of GET /v1/products use it; the API still takes UUIDs only.
	// Default "": no names, products are shown by UUID.
	ProductNames string
	// Now is the clock for age_seconds; nil means time.Now (tests inject).
	Now func() time.Time
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		MaxBatchCells:      1000,
		MaxBodyBytes:       256 << 10,
		MapMaxCells:        20000,
		BoundaryCacheCells: 200000,
		PageRefresh:        10 * time.Second,
		ReadyMaxAge:        3 * time.Minute,
	}
}

// Validate reports the first out-of-range field, naming its flag and range.
func (c Config) Validate() error {
	if c.MaxBatchCells < 1 || c.MaxBatchCells > 10000 {
		return fmt.Errorf("serve.max-batch-cells=%d: must be in 1..10000", c.MaxBatchCells)
	}
	if c.MaxBodyBytes < 1<<10 || c.MaxBodyBytes > 16<<20 {
		return fmt.Errorf("serve.max-body-bytes=%d: must be in 1 KiB..16 MiB", c.MaxBodyBytes)
	}
	if c.MapMaxCells < 1 || c.MapMaxCells > 200000 {
		return fmt.Errorf("serve.map-max-cells=%d: must be in 1..200000", c.MapMaxCells)
	}
	if c.BoundaryCacheCells < 0 || c.BoundaryCacheCells > 10_000_000 {
		return fmt.Errorf("serve.boundary-cache-cells=%d: must be in 0..10000000", c.BoundaryCacheCells)
	}
	if c.ReadyMaxAge < 0 || c.ReadyMaxAge > 24*time.Hour {
		return fmt.Errorf("serve.ready-max-age=%v: must be in 0..24h", c.ReadyMaxAge)
	}
	if c.PageRefresh < time.Second || c.PageRefresh > time.Hour {
		return fmt.Errorf("serve.page-refresh=%v: must be in 1s..1h", c.PageRefresh)
	}
	return nil
}

// RegisterFlags binds the fields to fs as -serve.max-batch-cells,
// -serve.max-body-bytes, -serve.map-max-cells, -serve.boundary-cache-cells,
// -serve.ready-max-age, -serve.product-names and -serve.page-refresh, with
// c's values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.MaxBatchCells, "serve.max-batch-cells", c.MaxBatchCells, "most cells (and points) in one POST /v1/features:batch (1..10000)")
	fs.Int64Var(&c.MaxBodyBytes, "serve.max-body-bytes", c.MaxBodyBytes, "largest request body in bytes (1 KiB..16 MiB)")
	fs.IntVar(&c.MapMaxCells, "serve.map-max-cells", c.MapMaxCells, "most cells in one heat map answer, the hottest kept (1..200000)")
	fs.IntVar(&c.BoundaryCacheCells, "serve.boundary-cache-cells", c.BoundaryCacheCells, "cell boundaries cached for the heat map (0..10000000)")
	fs.DurationVar(&c.ReadyMaxAge, "serve.ready-max-age", c.ReadyMaxAge, "/readyz is ready only while the latest minute is at most this old and not in the future (0: any closed minute)")
	fs.StringVar(&c.ProductNames, "serve.product-names", c.ProductNames, "file naming product types for the page and /v1/products: CSV lines uuid,name or JSON {\"uuid\":\"name\"} (empty: UUIDs only)")
	fs.DurationVar(&c.PageRefresh, "serve.page-refresh", c.PageRefresh, "how often the page at / reloads the map (1s..1h)")
}
