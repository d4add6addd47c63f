// Command pulsartestd runs the pulsartest Pulsar test double as a process.
// It is a test double, not a broker: messages live in memory only and are
// lost on exit, authentication accepts any token, and there is no
// replication, retention, schema registry, transactions or admin REST API.
// See the package documentation of internal/pulsartest.
//
//	go run ./internal/pulsartest/cmd/pulsartestd -addr 127.0.0.1:6650 \
//	    -partitions orders=3 -partitions events=2 -control 127.0.0.1:8089
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
	"strconv"
	"strings"
	"syscall"

	"github.com/demandpipe/demandpipe/internal/pulsartest"
)

// partitionsFlag collects repeated -partitions topic=N flags.
type partitionsFlag map[string]int

func (p partitionsFlag) String() string { return fmt.Sprint(map[string]int(p)) }

func (p partitionsFlag) Set(v string) error {
	name, n, ok := strings.Cut(v, "=")
	if !ok {
		return errors.New("want topic=N")
	}
	k, err := strconv.Atoi(n)
	if err != nil {
		return fmt.Errorf("partition count %q: %v", n, err)
	}
	p[name] = k
	return nil
}

func main() {
	parts := partitionsFlag{}
	addr := flag.String("addr", "127.0.0.1:6650", "TCP address for the Pulsar binary protocol")
	advertised := flag.String("advertised", "", "host:port returned in LOOKUP answers (default: the listen address)")
	maxMsg := flag.Int("max-message-size", 5<<20, "maximum message size announced to clients, bytes")
	control := flag.String("control", "", "if set, HTTP address for fault injection and stats (POST /drop, /stall?for=1s, /restart, /disconnect?topic=&sub=, GET /stats)")
	verbose := flag.Bool("v", false, "log connections and protocol errors")
	flag.Var(parts, "partitions", "partitioned topic as name=N (repeatable)")
	flag.Parse()

	cfg := pulsartest.Config{Addr: *addr, AdvertisedAddr: *advertised, MaxMessageSize: *maxMsg, Partitions: parts}
	if *verbose {
		cfg.Logf = log.Printf
	}
	srv, err := pulsartest.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("pulsartestd (test double, in-memory only) serving %s", srv.URL())

	var hs *http.Server
	if *control != "" {
		ln, err := net.Listen("tcp", *control)
		if err != nil {
			log.Fatal(err)
		}
		hs = &http.Server{Handler: srv.ControlHandler()}
		go hs.Serve(ln)
		log.Printf("control API on http://%s", ln.Addr())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if hs != nil {
		hs.Close()
	}
	srv.Close()
}
