package job

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
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
	"github.com/demandpipe/demandpipe/store"
)

// NewRegistry is a fresh registry with the Go runtime and process
// collectors and demandpipe_build_info: one per command, so that commands
// can run more than once in a process (tests) without duplicate
// registrations.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Get().Collector())
	return reg
}

// Server is an HTTP server started by StartServer.
type Server struct {
	*http.Server
	Addr string     // the address it listens on (a :0 port resolved)
	URL  string     // http://ADDR/, or https:// with -serve.tls-cert
	Done chan error // receives the error if serving stops on its own
}

// Served is what the API answers: each definition's name and reader (the
// first definition's first) and which is active at a request (nil: the
// first).
type Served struct {
	Names   []string
	Readers []serve.Reader
	Active  func() string
}

// One is the API of a store of one definition; nil serves no API.
func One(st serve.Reader) *Served {
	if st == nil {
		return nil
	}
	return &Served{Names: []string{feature.DefaultName}, Readers: []serve.Reader{st}}
}

// StartServer serves the API of sv on addr, with /metrics from gather,
// until Shutdown, behind the guard of cfg (serve.Guard: TLS, tokens,
// allowed hosts, rate and connection limits), which SIGHUP reloads. run
// -serve=ADDR uses it beside the writing store.
func StartServer(addr string, cfg serve.Config, sv *Served, reg prometheus.Registerer, gather prometheus.Gatherer) (*Server, error) {
	guard, err := serve.NewGuard(cfg, addr, reg)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	if sv != nil {
		api, err := serve.NewDefinitions(cfg, sv.Names, sv.Readers, sv.Active, reg)
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
	s := &Server{
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
func (s *Server) Shutdown(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := s.Server.Shutdown(ctx)
	if err != nil {
		s.Server.Close()
	}
	<-s.Done
	return err
}

// OpenDefinitionStores opens, read-only, the store in dir and, when it has
// a definitions file, each further definition's store beside it (metrics
// labelled by definition). Without the file dir holds one definition,
// named default.
func OpenDefinitionStores(dir string, sc store.Config, reg prometheus.Registerer) ([]*store.Store, definitions.File, error) {
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
			r = DefinitionRegisterer(reg, n)
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

// AnyFailed is closed when any of the stores fails, with that store's
// error; stop ends its watch (the stores' Done is closed only on failure).
func AnyFailed(stores []*store.Store) (failed <-chan struct{}, err func() error, stop func()) {
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
