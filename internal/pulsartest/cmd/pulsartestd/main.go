// Command pulsartestd runs the pulsartest Pulsar test double as a process.
// It is a test double, not a broker: messages live in memory only and are
// lost on exit, authentication (off unless -token or -token-file is given)
// compares tokens byte for byte without verifying them, and there is no
// replication, retention, schema registry, transactions or admin REST API.
// See the package documentation of internal/pulsartest.
//
//	go run ./internal/pulsartest/cmd/pulsartestd -addr 127.0.0.1:6650 \
//	    -partitions orders=3 -partitions events=2 -control 127.0.0.1:8089
//
// With TLS (clients use pulsar+ssl://) and a token:
//
//	go run ./internal/pulsartest/cmd/pulsartestd -addr 127.0.0.1:6651 \
//	    -tls-cert server.pem -tls-key server-key.pem -token-file token.txt
package main

import (
	"context"
	"crypto/tls"
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

// tokensFlag collects repeated -token values.
type tokensFlag []string

func (p *tokensFlag) String() string { return fmt.Sprint(len(*p), " tokens") }

func (p *tokensFlag) Set(v string) error {
	if v == "" {
		return errors.New("empty token")
	}
	*p = append(*p, v)
	return nil
}

// tokenFilesFlag collects repeated -token-file values, each a file holding
// one token (leading and trailing spaces and newlines trimmed, as the Go
// client trims a token file).
type tokenFilesFlag struct{ tokens *tokensFlag }

func (p tokenFilesFlag) String() string { return "" }

func (p tokenFilesFlag) Set(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return p.tokens.Set(strings.Trim(string(b), " \n"))
}

// tlsConfig loads a certificate and key for the listener; both or neither
// must be given.
func tlsConfig(certFile, keyFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
}

func main() {
	parts := partitionsFlag{}
	var tokens tokensFlag
	addr := flag.String("addr", "127.0.0.1:6650", "TCP address for the Pulsar binary protocol")
	advertised := flag.String("advertised", "", "host:port returned in LOOKUP answers (default: the listen address)")
	maxMsg := flag.Int("max-message-size", 5<<20, "maximum message size announced to clients, bytes")
	control := flag.String("control", "", "if set, HTTP address for fault injection and stats (POST /drop, /stall?for=1s, /restart, /disconnect?topic=&sub=, GET /stats)")
	verbose := flag.Bool("v", false, "log connections and protocol errors")
	tlsCert := flag.String("tls-cert", "", "PEM certificate (chain) file: serve TLS (clients use pulsar+ssl://); needs -tls-key")
	tlsKey := flag.String("tls-key", "", "PEM private key file for -tls-cert")
	flag.Var(parts, "partitions", "partitioned topic as name=N (repeatable)")
	flag.Var(&tokens, "token", "accept this token (auth method \"token\"; repeatable); with any -token or -token-file, CONNECTs without an accepted token are refused")
	flag.Var(tokenFilesFlag{&tokens}, "token-file", "accept the token held in this file (repeatable)")
	flag.Parse()

	tc, err := tlsConfig(*tlsCert, *tlsKey)
	if err != nil {
		log.Fatal(err)
	}
	cfg := pulsartest.Config{Addr: *addr, AdvertisedAddr: *advertised, MaxMessageSize: *maxMsg, Partitions: parts, TLS: tc, Tokens: tokens}
	if *verbose {
		cfg.Logf = log.Printf
	}
	srv, err := pulsartest.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	auth := "no authentication"
	if len(tokens) > 0 {
		auth = fmt.Sprintf("token authentication (%d accepted)", len(tokens))
	}
	log.Printf("pulsartestd (test double, in-memory only) serving %s, %s", srv.URL(), auth)

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
