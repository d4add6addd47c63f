package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/demandpipe/demandpipe/definitions"
	"github.com/demandpipe/demandpipe/job"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/sink/cassandra"
	"github.com/demandpipe/demandpipe/store"
)

const serveSynopsis = `demandpipe serve -store=DIR -addr=HOST:PORT

Serves the features of a store that a finished run wrote, over HTTP, until
SIGINT or SIGTERM (in-flight requests finish first). To serve a store while
the engine writes it, use run -serve=ADDR instead: a store has one owner
process.`

const serveMore = `API (JSON; bad requests get 400 with {"error":"…"}):
  GET  /v1/features?h3=CELL&product=UUID[&minute=2024-06-01T10:07:00Z][&avg=true]
  GET  /v1/features?lat=40.758&lng=-73.9855&product=UUID
  POST /v1/features:batch   {"product":UUID,"cells":["882a100d65fffff",…]}  (up to 1,000)
  GET  /v1/minutes, /v1/products, /v1/definition, /v1/map, /healthz, /readyz, /metrics
  GET  /                    live hexagon heat map of the latest minute

Example:
  demandpipe serve -store=./demandpipe-data -addr=127.0.0.1:8080 &
  curl '127.0.0.1:8080/v1/features?lat=40.758&lng=-73.9855&product=UUID'

A map under the page's hexagons (off by default: the page then loads nothing from
elsewhere; the same flags work on run -serve=ADDR):
  -serve.basemap=https://tile.example/{z}/{x}/{y}.png   raster tiles, Web Mercator 256 px
                      z/x/y, as OpenStreetMap's; the browser fetches them from that host
  -serve.basemap-attribution='© OpenStreetMap contributors'   the provider's credit the
                      page shows on the map, as its terms require (needed with a basemap)

Securing it (the same flags work on run -serve=ADDR; /healthz and /readyz stay
open to balancers whatever is set):
  -serve.tls-cert=FILE -serve.tls-key=FILE   HTTPS only; SIGHUP reloads the pair, and a
                      pair that does not load keeps the old one (logged)
  -serve.token-file=FILE   bearer tokens, one a line (# comments, 16+ characters,
                      openssl rand -hex 32): /v1/... and unknown paths want
                      "Authorization: Bearer TOKEN", else 401; the page at / and its
                      assets stay open (no data in them): the page shows a token
                      field on a 401, or takes #token=… from its link; /metrics
                      too with -serve.metrics-auth. Re-read within a second of a change
                      (write it atomically: a temp file, then mv) and on SIGHUP
  -serve.allowed-hosts=H[:PORT],…   Host headers answered, others get 421 (DNS
                      rebinding); default the listen host, localhost, 127.0.0.1, ::1
                      (a wildcard listen address: any IP and the host name); * any
  -serve.rate-limit=500 -serve.rate-burst=1000   per client IP (IPv6 /64), else 429 with
                      Retry-After; behind a proxy every client is the proxy: 0 turns it off
  -serve.max-conns=1024   a connection past it is answered 503 and closed
  Refusals are counted in demandpipe_serve_refused_total{reason}.

  demandpipe serve -addr=:8443 -serve.tls-cert=cert.pem -serve.tls-key=key.pem \
    -serve.token-file=tokens -serve.allowed-hosts=features.internal &
  curl --cacert ca.pem -H "Authorization: Bearer $TOKEN" \
    'https://features.internal:8443/v1/minutes'
  kill -HUP %1   # after renewing cert.pem and key.pem`

// serveCommand implements `demandpipe serve`.
func serveCommand(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dir := fs.String("store", store.DefaultDir, "store directory written by run -sink=store:DIR, or cassandra://HOSTS/KEYSPACE?table=… written by run -sink=cassandra://…")
	addr := fs.String("addr", "127.0.0.1:8080", "HOST:PORT to listen on")
	sc := store.DefaultConfig()
	fs.Int64Var(&sc.CacheBytes, "store.cache-bytes", sc.CacheBytes, "pebble block cache size in bytes (0..64 GiB)")
	vc := serve.DefaultConfig()
	vc.RegisterFlags(fs)
	if err := parse(fs, args, serveSynopsis, serveMore); err != nil {
		return err
	}
	reg := job.NewRegistry()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var st serve.Reader
	var sv *job.Served
	var failed <-chan struct{} // closed when the embedded store fails (corruption, a full disk)
	storeErr := func() error { return nil }
	where := *dir
	if strings.HasPrefix(*dir, "cassandra://") {
		// The pricing services' reads from Cassandra, exactly as from the
		// embedded store (sink/cassandra's Store).
		cc, err := cassandra.ParseURL(*dir)
		if err != nil {
			return err
		}
		var closeAll func()
		sv, closeAll, err = job.OpenCassandraDefinitions(ctx, *dir, slog.Default())
		if err != nil {
			return err
		}
		defer closeAll()
		st, where = sv.Readers[0], cc.String()
	} else {
		stores, f, err := job.OpenDefinitionStores(*dir, sc, reg)
		if err != nil {
			return err
		}
		defer func() {
			for _, lst := range stores {
				lst.Close()
			}
		}()
		st = stores[0]
		sv = &job.Served{Names: f.Definitions, Active: func() string { return f.Active }}
		if len(stores) > 1 {
			w := definitions.NewWatcher(*dir, f)
			w.Err = func(err error) { slog.Warn("definitions file: keeping the last good one", "err", err.Error()) }
			sv.Active = func() string { return w.Current().Active }
		}
		for _, lst := range stores {
			sv.Readers = append(sv.Readers, lst)
		}
		var stopWatch func()
		failed, storeErr, stopWatch = job.AnyFailed(stores)
		defer stopWatch()
	}
	if sv == nil {
		sv = job.One(st)
	}
	srv, err := job.StartServer(*addr, vc, sv, reg, reg)
	if err != nil {
		return err
	}
	latest := "no closed minute yet"
	if m, ok := st.LatestMinute(); ok {
		latest = "latest minute " + time.UnixMilli(m*60000).UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(os.Stderr, "demandpipe: serving %s (%s) on %s\n", where, latest, srv.URL)
	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "demandpipe: stopping: finishing in-flight requests")
	case err := <-srv.Done:
		return err
	case <-failed:
		// A corrupt table does not heal: stop answering (the read that
		// found it answered 500) and exit non-zero, so a supervisor sees it.
		srv.Shutdown(time.Second)
		return fmt.Errorf("serve: the store failed, stopping: %w", storeErr())
	}
	return srv.Shutdown(5 * time.Second)
}
