package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
  curl '127.0.0.1:8080/v1/features?lat=40.758&lng=-73.9855&product=UUID'`

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
		cst, err := cassandra.OpenStore(ctx, cc, cassandra.StoreOptions{})
		if err != nil {
			return err
		}
		defer cst.Close()
		st, where = cst, cc.String()
	} else {
		sc.Dir, sc.ReadOnly = *dir, true
		lst, err := store.Open(sc, reg)
		if err != nil {
			return err
		}
		defer lst.Close()
		st = lst
		failed, storeErr = lst.Done(), lst.Err
	}
	srv, err := startServer(*addr, vc, st, reg, reg)
	if err != nil {
		return err
	}
	latest := "no closed minute yet"
	if m, ok := st.LatestMinute(); ok {
		latest = "latest minute " + time.UnixMilli(m*60000).UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(os.Stderr, "demandpipe: serving %s (%s) on http://%s/\n", where, latest, srv.Addr)
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
	Done chan error // receives the error if serving stops on its own
}

// startServer serves the API of st on addr, with /metrics from gather,
// until Shutdown. run -serve=ADDR uses it beside the writing store.
func startServer(addr string, cfg serve.Config, st serve.Reader, reg prometheus.Registerer, gather prometheus.Gatherer) (*runningServer, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	if st != nil {
		api, err := serve.New(cfg, st, reg)
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
		Done: make(chan error, 1),
	}
	go func() {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Done <- fmt.Errorf("serve: %w", err)
		}
		close(s.Done)
	}()
	return s, nil
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
