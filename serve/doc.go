// Package serve is the HTTP JSON API over the feature store, and a page
// that draws the latest minute as a hexagon heat map.
//
//	GET  /v1/features?h3=CELL&product=UUID[&minute=RFC3339][&avg=true]
//	GET  /v1/features?lat=DEG&lng=DEG&product=UUID[&minute=…][&avg=true]
//	POST /v1/features:batch  {"product":UUID,"minute"?,"avg"?,"cells":[CELL…],"points":[{"lat","lng"}…]}
//	GET  /v1/minutes         closed minutes, latest first (before the first: when it should close)
//	GET  /v1/products        product UUIDs the store knows, and their names (-serve.product-names)
//	GET  /v1/definition      the feature definition (resolution, rings, windows, aggregate)
//	GET  /v1/map?product=UUID[&k=K&w=W&minute=…]   one feature of every cell, with boundaries
//	GET  /v1/overview?product=UUID[&minute=…]      every feature's cells, max, sum, levels; a suggested view
//	GET  /healthz, /readyz   liveness; readiness (a closed minute exists)
//	GET  /                   the page: heat map, timeline, top cells (files embedded in the binary)
//
// A row answer names every feature by ring and window, so a reader never
// depends on array positions:
//
//	{"h3":"882a100d65fffff","product_type":"…","minute":"2024-06-01T10:07:00Z",
//	 "age_seconds":12.5,"found":true,"features":[{"k":0,"w":1,"value":3},…]}
//
// age_seconds is how long ago the minute ended. found=false says the cell
// had no row in that closed minute, so every feature is zero. avg=true adds
// "avg": value divided by the number of cells in the disk of radius k
// (3k(k+1)+1, fewer near a pentagon).
//
// Status codes: 400 with {"error":"…"} for any malformed request (cell,
// resolution, coordinates, unknown product, minute, unknown parameter,
// batch too large, bad JSON); 404 for a minute that is not closed or past
// retention; 503 before the first minute closes; 405 for a wrong method;
// from the guard 401, 421, 429 and 503 (see Guard).
//
// The page (web/app.js says what it does) draws the hexagons in Web
// Mercator. Over several definitions (Definitions) it has a definition
// picker: "active (NAME)", which follows promotions, or one by name, which
// then goes into every API call (definition=NAME) and the page's URL. -serve.basemap=https://tile.example/{z}/{x}/{y}.png puts raster
// tiles of that template under them, fetched by the browser, with the
// provider's credit (-serve.basemap-attribution, required with it) in the
// map's corner (basemap.go); without it the page loads nothing from
// elsewhere, and its Content-Security-Policy admits images from the tile
// host only when one is set. The page says how old the latest minute is,
// and tells a live store (its latest minute at most 3 min old by the
// server's clock) from a replay; before the first minute closes it says
// when it will. In the run's own process (Config.Progress, progress.go)
// the server knows the run's event time T, its lateness and its first
// minute m, which closes once T reaches m's end plus the lateness; GET
// /v1/minutes then adds
//
//	"first_close":{"minute":"2024-06-01T10:07:00Z","event_time":"2024-06-01T10:07:48.250Z",
//	  "lateness_seconds":30,"riders":16,"rate":1.000,"rate_measured":true,"eta_seconds":41.750}
//
// eta_seconds being the event time left over the pace of event time
// against the wall clock (rate, measured between requests: 20 for
// -source=gen:speed=20; 1 assumed until measured), and the page counts
// it down. minute is null before an event is counted, event_time before
// K (riders) riders are seen, eta_seconds without both or while event
// time stands still. A standalone server knows neither, and the page
// gives the default lateness's estimate: about 90 s after a live run
// starts.
//
// In front of the handlers, a Guard (guard.go) serves HTTPS with a
// certificate pair that SIGHUP reloads (tls.go), caps connections (503),
// limits each client's request rate (429, ratelimit.go), answers only the
// allowed Host headers (421, against DNS rebinding) and wants a bearer
// token of a token file that it re-reads on change (401, tokens.go);
// /healthz and /readyz stay open to load balancers. Config documents each
// knob and its default.
//
// Metrics (namespace demandpipe, subsystem serve):
//
//	demandpipe_serve_requests_total{handler,code}
//	demandpipe_serve_request_duration_seconds{handler}
//	demandpipe_serve_refused_total{reason}  conns, rate, host, unauthorized
//	demandpipe_serve_reloads_total{what,result}  tls, tokens; ok, error
//	demandpipe_serve_connections
//	demandpipe_serve_rate_clients
//	demandpipe_serve_tokens  (with a token file)
//	demandpipe_serve_tls_cert_expiry_timestamp_seconds  (with TLS)
package serve
