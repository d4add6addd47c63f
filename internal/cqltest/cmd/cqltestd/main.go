// Command cqltestd runs the cqltest CQL test double as a process: an in-memory
// stand-in for a one-node Cassandra (or, with -nodes, a small cluster), for
// tests and demos only, not a database.
// See the cqltest package documentation for what it supports.
//
//	go run ./internal/cqltest/cmd/cqltestd -addr 127.0.0.1:9042 -latency 2ms -control 127.0.0.1:9142
//
// -live-nodes (default 1) is how many live nodes the double's consistency
// checks count: with 1, as on a real one-node cluster, a keyspace with
// replication_factor 3 answers LOCAL_QUORUM reads and writes with
// UNAVAILABLE; create keyspaces with replication_factor 1 (the sink's ?rf=1)
// or run with -live-nodes 3.
//
// -nodes N (default 1) runs a cluster of N nodes sharing one store, so that
// drivers build a token ring and route by it: node i listens on -addr's
// IPv4 address + i at the same port (127.0.0.1:9042, 127.0.0.2:9042,
// 127.0.0.3:9042; Linux routes all of 127/8 to loopback), owns one evenly
// spaced Murmur3 token and lists the others in system.peers and
// system.peers_v2. A partition's replicas are the next replication-factor
// nodes clockwise from its token, and /stats counts per node the writes it
// coordinated as a replica or not (Stats.Nodes). -live-nodes then defaults
// to N and may not exceed it. It prints every node's address:
//
//	go run ./internal/cqltest/cmd/cqltestd -addr 127.0.0.1:9042 -nodes 3 -control 127.0.0.1:9142
//
// -cpuprofile writes a CPU profile of the double itself, and -gogc (default
// 400) sets its garbage collector's target: it holds every row in memory.
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
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/demandpipe/demandpipe/internal/cqltest"
)

func main() {
	var cfg cqltest.Config
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:9042", "CQL listen address (port 0: any free port)")
	flag.DurationVar(&cfg.Latency, "latency", 0, "service time of each statement on a user keyspace")
	flag.StringVar(&cfg.ClusterName, "cluster-name", cqltest.DefaultClusterName, "system.local cluster_name")
	flag.StringVar(&cfg.DataCenter, "dc", cqltest.DefaultDataCenter, "system.local data_center")
	flag.IntVar(&cfg.Nodes, "nodes", cqltest.DefaultNodes, "nodes of the cluster, node i listening on -addr's IPv4 address + i at the same port, each owning one Murmur3 token, so drivers route by token (1.."+strconv.Itoa(cqltest.MaxNodes)+")")
	flag.IntVar(&cfg.LiveNodes, "live-nodes", cqltest.DefaultLiveNodes, "live nodes (all in -dc) that consistency levels count: a keyspace's live replicas are min(its replication factor, this); fewer than a level needs answers UNAVAILABLE (with -nodes N: default N, nodes 0..this-1 are up)")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "seed for fault rates")
	flag.IntVar(&cfg.TombstoneWarnThreshold, "tombstone-warn", cqltest.DefaultTombstoneWarnThreshold, "tombstones a read may pass before its answer carries a warning (Cassandra's tombstone_warn_threshold)")
	flag.IntVar(&cfg.TombstoneFailureThreshold, "tombstone-failure", cqltest.DefaultTombstoneFailureThreshold, "tombstones a read may pass before it fails with READ_FAILURE (tombstone_failure_threshold)")
	flag.BoolVar(&cfg.PurgeTombstones, "purge-tombstones", false, "purge tombstones and expired cells gc_grace_seconds after their deletion, as if a compaction then took every sstable of their partition (default: kept for ever, as in a partition no compaction purges)")
	fault := flag.String("fault", "none", "fault for a fraction of statements: overloaded, timeout, timeout-applied, unavailable, server-error, drop")
	rate := flag.Float64("fault-rate", 0, "fraction of statements that get -fault (0..1)")
	control := flag.String("control", "", "HTTP control address (GET /stats, POST /fault, /latency, /drop, /down, /up, /nodes, /prepared/forget); empty: off")
	verbose := flag.Bool("v", false, "log connections and protocol errors")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the double to this file until it stops (measuring its own cost)")
	gcPercent := flag.Int("gogc", 400, "garbage collector target percentage (debug.SetGCPercent; the GOGC environment variable, if set, wins)")
	flag.Parse()

	// The double keeps every row in memory as many small objects, and at
	// Go's default GOGC=100 a third of its CPU goes to marking them again
	// and again (a replay of 800k rows: 3.3 s of CPU at 100, 2.6 s at
	// 400; sink/CASSANDRA.md). It is a stand-in for a server on other
	// machines, so its cost should disturb a measurement on the same box
	// as little as it can: trade memory (a few times the rows held) for it.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(*gcPercent)
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

	f, err := cqltest.ParseFault(*fault)
	if err != nil {
		log.Fatal(err)
	}
	if *rate < 0 || *rate > 1 {
		log.Fatalf("-fault-rate %v: want 0..1", *rate)
	}
	// Config takes 0 for its defaults; a 0 given here is a mistake.
	if cfg.Nodes < 1 || cfg.Nodes > cqltest.MaxNodes {
		log.Fatalf("-nodes %d: want 1..%d", cfg.Nodes, cqltest.MaxNodes)
	}
	if cfg.LiveNodes < 1 || cfg.LiveNodes > cqltest.MaxLiveNodes {
		log.Fatalf("-live-nodes %d: want 1..%d (this node is one of them)", cfg.LiveNodes, cqltest.MaxLiveNodes)
	}
	if cfg.Nodes > 1 && !flagSet("live-nodes") {
		cfg.LiveNodes = 0 // Config's default with Nodes > 1: every node up
	}
	if *verbose {
		cfg.Logf = log.Printf
	}
	// Signals are caught before the server starts and says where it
	// listens: a SIGINT right after that line must stop it cleanly, not
	// kill it (a script that starts it and stops it at once).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := cqltest.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	srv.SetFaultRate(f, *rate)
	if cfg.Nodes == 1 {
		fmt.Fprintf(os.Stderr, "cqltestd: CQL test double (in memory, not a database) listening on %s\n", srv.Addr())
	} else {
		fmt.Fprintf(os.Stderr, "cqltestd: CQL test double (in memory, not a database), %d nodes, listening on %s\n", cfg.Nodes, strings.Join(srv.Addrs(), ", "))
	}

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

	<-ctx.Done()
	if hs != nil {
		hs.Close()
	}
	srv.Close()
}

// flagSet reports whether the command line set the named flag.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
