package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/demandpipe/demandpipe/definitions"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/buildinfo"
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
	reg := newRegistry()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var st serve.Reader
	var sv *served
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
		sv, closeAll, err = openCassandraDefinitions(ctx, *dir, slog.Default())
		if err != nil {
			return err
		}
		defer closeAll()
		st, where = sv.readers[0], cc.String()
	} else {
		stores, f, err := openDefinitionStores(*dir, sc, reg)
		if err != nil {
			return err
		}
		defer func() {
			for _, lst := range stores {
				lst.Close()
			}
		}()
		st = stores[0]
		sv = &served{names: f.Definitions, active: func() string { return f.Active }}
		if len(stores) > 1 {
			w := definitions.NewWatcher(*dir, f)
			w.Err = func(err error) { slog.Warn("definitions file: keeping the last good one", "err", err.Error()) }
			sv.active = func() string { return w.Current().Active }
		}
		for _, lst := range stores {
			sv.readers = append(sv.readers, lst)
		}
		var stopWatch func()
		failed, storeErr, stopWatch = anyFailed(stores)
		defer stopWatch()
	}
	if sv == nil {
		sv = one(st)
	}
	srv, err := startServer(*addr, vc, sv, reg, reg)
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

// newRegistry is a fresh registry with the Go runtime and process
// collectors and demandpipe_build_info: one per command, so that commands
// can run more than once in a process (tests) without duplicate
// registrations.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Get().Collector())
	return reg
}

// runningServer is an HTTP server started by startServer.
type runningServer struct {
	*http.Server
	Addr string     // the address it listens on (a :0 port resolved)
	URL  string     // http://ADDR/, or https:// with -serve.tls-cert
	Done chan error // receives the error if serving stops on its own
}

// served is what the API answers: each definition's name and reader (the
// first definition's first) and which is active at a request (nil: the
// first).
type served struct {
	names   []string
	readers []serve.Reader
	active  func() string
}

// one is the API of a store of one definition; nil serves no API.
func one(st serve.Reader) *served {
	if st == nil {
		return nil
	}
	return &served{names: []string{feature.DefaultName}, readers: []serve.Reader{st}}
}

// startServer serves the API of sv on addr, with /metrics from gather,
// until Shutdown, behind the guard of cfg (serve.Guard: TLS, tokens,
// allowed hosts, rate and connection limits), which SIGHUP reloads. run
// -serve=ADDR uses it beside the writing store.
func startServer(addr string, cfg serve.Config, sv *served, reg prometheus.Registerer, gather prometheus.Gatherer) (*runningServer, error) {
	guard, err := serve.NewGuard(cfg, addr, reg)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	if sv != nil {
		api, err := serve.NewDefinitions(cfg, sv.names, sv.readers, sv.active, reg)
		if err != nil {
			return nil, err
		}
		mux.Handle("/", api)
	} else {
		// A sink the API cannot read (Cassandra, ndjson): metrics and
		// liveness only, so that the run can still be watched.
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"status":"ok"}` + "\n"))
		})
		mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, `{"error":"this run writes to a sink the API cannot read: only /metrics and /healthz are served"}`, http.StatusNotFound)
		})
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	s := &runningServer{
		Server: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
		},
		Addr: ln.Addr().String(),
		URL:  "http://" + ln.Addr().String() + "/",
		Done: make(chan error, 1),
	}
	if guard.TLS() {
		s.URL = "https://" + ln.Addr().String() + "/"
	}
	stopReload := reloadOnSIGHUP(guard)
	go func() {
		if err := guard.Serve(s.Server, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Done <- fmt.Errorf("serve: %w", err)
		}
		stopReload()
		close(s.Done)
	}()
	return s, nil
}

// reloadOnSIGHUP re-reads the guard's certificate pair and token file on
// each SIGHUP until stop is called (once, when serving ends). Only when
// there is something to reload: otherwise SIGHUP keeps its default,
// ending the process. The guard logs each outcome.
func reloadOnSIGHUP(g *serve.Guard) (stop func()) {
	if !g.Reloadable() {
		return func() {}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range hup {
			g.Reload()
		}
	}()
	return func() {
		signal.Stop(hup) // no send on hup after this returns
		close(hup)
		<-done
	}
}

// Shutdown stops accepting, waits up to grace for in-flight requests, and
// then closes what is left.
func (s *runningServer) Shutdown(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := s.Server.Shutdown(ctx)
	if err != nil {
		s.Server.Close()
	}
	<-s.Done
	return err
}

// openDefinitionStores opens, read-only, the store in dir and, when it has
// a definitions file, each further definition's store beside it (metrics
// labelled by definition). Without the file dir holds one definition,
// named default.
func openDefinitionStores(dir string, sc store.Config, reg prometheus.Registerer) ([]*store.Store, definitions.File, error) {
	f, err := definitions.Load(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		f = definitions.File{Definitions: []string{feature.DefaultName}, Active: feature.DefaultName}
	case err != nil:
		return nil, f, err
	}
	var out []*store.Store
	for _, n := range f.Definitions {
		c := sc
		c.Dir, c.ReadOnly = f.StoreDir(dir, n), true
		r := reg
		if len(f.Definitions) > 1 {
			r = definitionRegisterer(reg, n)
		}
		lst, err := store.Open(c, r)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, f, fmt.Errorf("definition %s: %w", n, err)
		}
		out = append(out, lst)
	}
	return out, f, nil
}

// anyFailed is closed when any of the stores fails, with that store's
// error; stop ends its watch (the stores' Done is closed only on failure).
func anyFailed(stores []*store.Store) (failed <-chan struct{}, err func() error, stop func()) {
	if len(stores) == 1 {
		return stores[0].Done(), stores[0].Err, func() {}
	}
	done, quit := make(chan struct{}), make(chan struct{})
	var first error
	var once sync.Once
	for _, st := range stores {
		go func() {
			select {
			case <-st.Done():
				once.Do(func() { first = st.Err(); close(done) })
			case <-quit:
			}
		}()
	}
	return done, func() error {
		select {
		case <-done:
			return first
		default:
			return nil
		}
	}, func() { close(quit) }
}
