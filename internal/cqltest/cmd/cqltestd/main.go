// Command cqltestd runs the cqltest CQL test double as a process: an in-memory
// stand-in for a one-node Cassandra, for tests and demos only, not a database.
// See the cqltest package documentation for what it supports.
//
//	go run ./internal/cqltest/cmd/cqltestd -addr 127.0.0.1:9042 -latency 2ms -control 127.0.0.1:9142
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/demandpipe/demandpipe/internal/cqltest"
)

func main() {
	var cfg cqltest.Config
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:9042", "CQL listen address (port 0: any free port)")
	flag.DurationVar(&cfg.Latency, "latency", 0, "service time of each statement on a user keyspace")
	flag.StringVar(&cfg.ClusterName, "cluster-name", cqltest.DefaultClusterName, "system.local cluster_name")
	flag.StringVar(&cfg.DataCenter, "dc", cqltest.DefaultDataCenter, "system.local data_center")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "seed for fault rates")
	fault := flag.String("fault", "none", "fault for a fraction of statements: overloaded, timeout, unavailable, server-error, drop")
	rate := flag.Float64("fault-rate", 0, "fraction of statements that get -fault (0..1)")
	control := flag.String("control", "", "HTTP control address (GET /stats, POST /fault, /latency, /drop, /down, /up); empty: off")
	verbose := flag.Bool("v", false, "log connections and protocol errors")
	flag.Parse()

	f, err := cqltest.ParseFault(*fault)
	if err != nil {
		log.Fatal(err)
	}
	if *rate < 0 || *rate > 1 {
		log.Fatalf("-fault-rate %v: want 0..1", *rate)
	}
	if *verbose {
		cfg.Logf = log.Printf
	}
	srv, err := cqltest.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	srv.SetFaultRate(f, *rate)
	fmt.Fprintf(os.Stderr, "cqltestd: CQL test double (in memory, not a database) listening on %s\n", srv.Addr())

	var hs *http.Server
	if *control != "" {
		ln, err := net.Listen("tcp", *control)
		if err != nil {
			log.Fatal(err)
		}
		hs = &http.Server{Handler: srv.ControlHandler()}
		go func() {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Print(err)
			}
		}()
		fmt.Fprintf(os.Stderr, "cqltestd: control on http://%s\n", ln.Addr())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if hs != nil {
		hs.Close()
	}
	srv.Close()
}
