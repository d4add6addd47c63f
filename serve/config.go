package serve

import (
	"flag"
	"fmt"
	"log/slog"
	"math"
	"strings"
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
	// Default "": no names, products are shown by UUID. run -products=FILE
	// sets it to the products file when this flag is not given.
	ProductNames string
	// Basemap is a raster tile URL template the page draws under the
	// hexagons (-serve.basemap=https://tile.example/{z}/{x}/{y}.png): Web
	// Mercator (EPSG:3857) tiles of 256 px addressed z/x/y, as
	// OpenStreetMap's and most providers' are; http or https, one host (no
	// {s} subdomains), {z}, {x} and {y} each present (basemap.go). The
	// browser fetches the tiles from that host, which then learns who looks
	// at which area; the page's Content-Security-Policy admits images from
	// it only when this is set. Default "": no basemap, the page loads
	// nothing from elsewhere (the machines it runs on may have no internet).
	Basemap string
	// BasemapAttribution is the credit the page shows in the map's corner
	// for the tiles, as tile providers' terms require
	// (-serve.basemap-attribution="© OpenStreetMap contributors"): plain
	// text, up to 300 characters; required with Basemap. Default "".
	BasemapAttribution string

	// The guard (guard.go): what stands between the network and the API.
	// None of it applies to /healthz and /readyz, which stay open to load
	// balancers whatever is set here.

	// TLSCert and TLSKey are the PEM files of a certificate (its chain
	// after it) and of its private key (-serve.tls-cert, -serve.tls-key):
	// with both the server speaks HTTPS only (HTTP/2 and HTTP/1.1, TLS 1.2
	// or later). SIGHUP re-reads both; a pair that does not load then keeps
	// the previous one in service and logs why. Both or neither; a file that
	// cannot be read stops the start. Default "": plain HTTP.
	TLSCert, TLSKey string
	// TokenFile holds the bearer tokens that may read the API
	// (-serve.token-file): one per line, at least 16 characters, blank lines
	// and # comments ignored. Every path but /healthz, /readyz, the page (/)
	// and its /assets/ wants "Authorization: Bearer TOKEN" then (401
	// otherwise); the page holds no data, and shows a token field when the
	// API answers 401. The file is re-read when it changes (checked at
	// most once a second, on a request) and on SIGHUP; a version that is
	// missing, or has no token or a malformed line, keeps the previous
	// tokens in service (so write it atomically: a temporary file, then a
	// rename). Default "": no tokens needed.
	TokenFile string
	// MetricsAuth: /metrics wants a token too (-serve.metrics-auth; needs
	// TokenFile). Default false: metrics hold counts and timings, no
	// features, and a scraper then needs no secret.
	MetricsAuth bool
	// AllowedHosts are the Host headers the server answers
	// (-serve.allowed-hosts=h1,h2:port): a name matches on any port, a
	// name:port on that port only; any other Host gets 421 Misdirected
	// Request. This stops DNS rebinding, where a web page on an attacker's
	// name that resolves to this server makes a browser behind the
	// firewall read the API. "*" allows any Host and turns that protection
	// off (for a proxy that rewrites Host to names not known here). Default
	// (empty): the listen address's host, localhost, 127.0.0.1 and ::1;
	// with a wildcard listen address (:8080, 0.0.0.0, [::]) instead of its
	// host, any IP address and the machine's host name: rebinding needs a
	// DNS name, an IP literal in Host cannot be one.
	AllowedHosts []string
	// RateLimit is the requests per second each client may make, a token
	// bucket per IP address (an IPv6 client per /64: one host holds a whole
	// /64 to rotate through) (-serve.rate-limit, 0..1,000,000, 0: off).
	// Past it a request gets 429 with Retry-After. The client is the TCP
	// peer: behind a proxy every client is the proxy, so limit there and set
	// 0 here (X-Forwarded-For is not trusted: anyone can write it). Default
	// 500: one pricing host reading a cell per quote at 500 quotes/s fits,
	// and a runaway retry loop of single reads (~0.1 ms each) is held to
	// ~5% of a core. A request is a request: 500 batches of 1,000 cells
	// (~10 ms each) would take five cores, so a batch-only client is better
	// held lower, by the proxy in front or with this flag.
	RateLimit float64
	// RateBurst is the bucket's size: requests a client may make at once
	// after being idle (-serve.rate-burst, 1..1,000,000). Default 1,000:
	// two seconds at the default rate, for a batch of quotes.
	RateBurst int
	// MaxConns caps the open connections (-serve.max-conns, 0..1,000,000,
	// 0: no cap). A connection past the cap is accepted, answered 503 with
	// Retry-After: 1 and closed, so its client learns at once instead of
	// hanging in the accept queue. Default 1,024: 20-40 KB each (a
	// goroutine, bufio and TLS record buffers), at most ~40 MB at the cap;
	// the Go client keeps up to 64 idle connections, so sixteen busy
	// pricing hosts fit.
	MaxConns int
	// Log receives the guard's few lines: a reload, done or refused. nil
	// means slog.Default().
	Log *slog.Logger

	// Now is the clock for age_seconds; nil means time.Now (tests inject).
	Now func() time.Time
	// Progress is the run's progress, for a server in the engine's own
	// process (`demandpipe run`): before the first minute closes, GET
	// /v1/minutes then says when it should ("first_close", progress.go)
	// and the page counts down to it. Not a flag: the wiring sets it from
	// the engine's pipeline.Stats and the run's settings. Default nil (a
	// standalone `demandpipe serve`, which cannot see the run): the page
	// gives the default lateness's estimate instead.
	Progress *Progress
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
		RateLimit:          500,
		RateBurst:          1000,
		MaxConns:           1024,
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
	if err := validateBasemap(c.Basemap, c.BasemapAttribution); err != nil {
		return err
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("serve.tls-cert=%q, serve.tls-key=%q: give both or neither", c.TLSCert, c.TLSKey)
	}
	if c.MetricsAuth && c.TokenFile == "" {
		return fmt.Errorf("serve.metrics-auth: needs -serve.token-file (the tokens /metrics would want)")
	}
	for _, h := range c.AllowedHosts {
		if _, err := parseAllowedHost(h); err != nil {
			return fmt.Errorf("serve.allowed-hosts=%s: %v", strings.Join(c.AllowedHosts, ","), err)
		}
	}
	if math.IsNaN(c.RateLimit) || c.RateLimit < 0 || c.RateLimit > 1e6 {
		return fmt.Errorf("serve.rate-limit=%v: must be in 0..1000000 requests/s (0: off)", c.RateLimit)
	}
	if c.RateBurst < 1 || c.RateBurst > 1e6 {
		return fmt.Errorf("serve.rate-burst=%d: must be in 1..1000000", c.RateBurst)
	}
	if c.MaxConns < 0 || c.MaxConns > 1e6 {
		return fmt.Errorf("serve.max-conns=%d: must be in 0..1000000 (0: no cap)", c.MaxConns)
	}
	if c.Progress != nil {
		return c.Progress.validate()
	}
	return nil
}

// RegisterFlags binds the fields to fs as -serve.max-batch-cells,
// -serve.max-body-bytes, -serve.map-max-cells, -serve.boundary-cache-cells,
// -serve.ready-max-age, -serve.product-names, -serve.page-refresh,
// -serve.basemap, -serve.basemap-attribution and the
// guard's -serve.tls-cert, -serve.tls-key, -serve.token-file,
// -serve.metrics-auth, -serve.allowed-hosts, -serve.rate-limit,
// -serve.rate-burst and -serve.max-conns, with c's values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.MaxBatchCells, "serve.max-batch-cells", c.MaxBatchCells, "most cells (and points) in one POST /v1/features:batch (1..10000)")
	fs.Int64Var(&c.MaxBodyBytes, "serve.max-body-bytes", c.MaxBodyBytes, "largest request body in bytes (1 KiB..16 MiB)")
	fs.IntVar(&c.MapMaxCells, "serve.map-max-cells", c.MapMaxCells, "most cells in one heat map answer, the hottest kept (1..200000)")
	fs.IntVar(&c.BoundaryCacheCells, "serve.boundary-cache-cells", c.BoundaryCacheCells, "cell boundaries cached for the heat map (0..10000000)")
	fs.DurationVar(&c.ReadyMaxAge, "serve.ready-max-age", c.ReadyMaxAge, "/readyz is ready only while the latest minute is at most this old and not in the future (0: any closed minute)")
	fs.StringVar(&c.ProductNames, "serve.product-names", c.ProductNames, "file naming product types for the page and /v1/products: CSV lines uuid,name or JSON {\"uuid\":\"name\"} (empty: UUIDs only)")
	fs.DurationVar(&c.PageRefresh, "serve.page-refresh", c.PageRefresh, "how often the page at / reloads the map (1s..1h)")
	fs.StringVar(&c.Basemap, "serve.basemap", c.Basemap, "raster tiles under the page's hexagons: a URL template of Web Mercator 256 px tiles, https://tile.example/{z}/{x}/{y}.png; the browser fetches them from that host (empty: none, the page loads nothing from elsewhere)")
	fs.StringVar(&c.BasemapAttribution, "serve.basemap-attribution", c.BasemapAttribution, "the tile provider's credit the page shows over the map, as its terms require, e.g. '© OpenStreetMap contributors' (required with -serve.basemap)")
	fs.StringVar(&c.TLSCert, "serve.tls-cert", c.TLSCert, "PEM certificate (chain) file: serve HTTPS only, with -serve.tls-key; SIGHUP reloads the pair, a pair that does not load keeps the old one (empty: plain HTTP)")
	fs.StringVar(&c.TLSKey, "serve.tls-key", c.TLSKey, "PEM private key file of -serve.tls-cert")
	fs.StringVar(&c.TokenFile, "serve.token-file", c.TokenFile, "file of bearer tokens, one per line (# comments): every path but /healthz, /readyz, the page and its assets then wants 'Authorization: Bearer TOKEN', else 401; re-read when it changes (within a second) and on SIGHUP (empty: no tokens)")
	fs.BoolVar(&c.MetricsAuth, "serve.metrics-auth", c.MetricsAuth, "/metrics wants a token of -serve.token-file too")
	fs.Var(hostsFlag{&c.AllowedHosts}, "serve.allowed-hosts", "Host headers answered, name or name:port, comma-separated; others get 421 (against DNS rebinding); * allows any, without that protection (empty: the listen host, localhost, 127.0.0.1, ::1; with a wildcard listen address any IP and the host name)")
	fs.Float64Var(&c.RateLimit, "serve.rate-limit", c.RateLimit, "requests/s per client IP (IPv6: per /64), a token bucket; past it 429 with Retry-After; behind a proxy every client is the proxy (0..1000000, 0: off)")
	fs.IntVar(&c.RateBurst, "serve.rate-burst", c.RateBurst, "requests a client may make at once after being idle: the bucket of -serve.rate-limit (1..1000000)")
	fs.IntVar(&c.MaxConns, "serve.max-conns", c.MaxConns, "most open connections; one past it is answered 503 with Retry-After and closed (0..1000000, 0: no cap)")
}

// hostsFlag is -serve.allowed-hosts: a comma-separated list; empty means
// the default list (Config.AllowedHosts).
type hostsFlag struct{ hosts *[]string }

func (f hostsFlag) String() string {
	if f.hosts == nil {
		return ""
	}
	return strings.Join(*f.hosts, ",")
}

func (f hostsFlag) Set(v string) error {
	var hosts []string
	for _, h := range strings.Split(v, ",") {
		if h = strings.TrimSpace(h); h != "" {
			if _, err := parseAllowedHost(h); err != nil {
				return err
			}
			hosts = append(hosts, h)
		}
	}
	*f.hosts = hosts
	return nil
}
