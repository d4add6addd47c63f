// Command pulsartestd runs the pulsartest Pulsar test double as a process.
// It is a test double, not a broker: messages live in memory only and are
// lost on exit, authentication (off unless -token or -token-file is given)
// compares tokens byte for byte without verifying them, and there is no
// replication, schema registry, transactions or admin REST API.
// See the package documentation of internal/pulsartest.
//
//	go run ./internal/pulsartest/cmd/pulsartestd -addr 127.0.0.1:6650 \
//	    -partitions orders=3 -partitions events=2 -control 127.0.0.1:8089
//
// As a broker with its default configuration, it deletes a topic, with
// its messages, once the topic has had no producer, no consumer and no
// subscription for a minute or two (-delete-inactive-topics=false keeps
// every topic; -delete-inactive-topics-frequency and -max-inactive change
// the timing), and a Shared or Key_Shared consumer gets no more than
// 50,000 messages it has not acknowledged, a subscription 200,000, until
// acknowledgements bring the count to half
// (-max-unacked-messages-per-consumer,
// -max-unacked-messages-per-subscription; 0 turns a limit off).
// -key-shared-reorder-after-reconnect=N injects the out-of-order
// Key_Shared replay a broker may make after a consumer reconnects
// (apache/pulsar#10762; off by default). With the broker's default
// retention (0), a topic's ledger rolls over after 50,000 entries and 10
// minutes, and closed ledgers every durable subscription has consumed (all
// of them, on a topic without one) are deleted: a replay from "earliest"
// reads only what is left (-ledger-max-entries, -ledger-min-rollover,
// -retention-time, -retention-size-mb; -expose-entry-index gives each
// message its index, as a broker with AppendIndexMetadataInterceptor).
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
	"time"

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

// settings are what the flags ask for: the double's configuration and
// the process's own options.
type settings struct {
	cfg     pulsartest.Config
	control string
	verbose bool
}

// parseFlags reads the command line (without the program name).
func parseFlags(args []string) (settings, error) {
	fs := flag.NewFlagSet("pulsartestd", flag.ContinueOnError)
	parts := partitionsFlag{}
	var tokens tokensFlag
	addr := fs.String("addr", "127.0.0.1:6650", "TCP address for the Pulsar binary protocol")
	advertised := fs.String("advertised", "", "host:port returned in LOOKUP answers (default: the listen address)")
	maxMsg := fs.Int("max-message-size", 5<<20, "maximum message size announced to clients, bytes")
	control := fs.String("control", "", "if set, HTTP address for fault injection and stats (POST /drop, /stall?for=1s, /restart, /disconnect?topic=&sub=, /reorder-key-shared?n=, GET /stats)")
	verbose := fs.Bool("v", false, "log connections, protocol errors and topics deleted for inactivity")
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) file: serve TLS (clients use pulsar+ssl://); needs -tls-key")
	tlsKey := fs.String("tls-key", "", "PEM private key file for -tls-cert")
	deleteInactive := fs.Bool("delete-inactive-topics", true, "delete a topic, with its messages, once it has had no producer, no consumer and no subscription for -delete-inactive-topics-max-inactive, as a broker does by default (brokerDeleteInactiveTopicsEnabled)")
	inactiveEvery := fs.Duration("delete-inactive-topics-frequency", time.Minute, "how often inactive topics are looked for (brokerDeleteInactiveTopicsFrequencySeconds)")
	inactiveFor := fs.Duration("delete-inactive-topics-max-inactive", 0, "how long a topic must be inactive to be deleted (brokerDeleteInactiveTopicsMaxInactiveDurationSeconds; default: the frequency)")
	inactiveMode := fs.String("delete-inactive-topics-mode", pulsartest.DeleteWhenNoSubscriptions, "brokerDeleteInactiveTopicsMode: "+pulsartest.DeleteWhenNoSubscriptions+" (any subscription keeps a topic) or "+pulsartest.DeleteWhenCaughtUp+" (only one with a backlog does)")
	maxUnackedConsumer := fs.Int("max-unacked-messages-per-consumer", pulsartest.DefaultMaxUnackedMessagesPerConsumer, "Shared and Key_Shared: a consumer with this many messages delivered and not acknowledged gets no more until acknowledgements bring it to half, as a broker by default (maxUnackedMessagesPerConsumer; 0: no limit)")
	maxUnackedSub := fs.Int("max-unacked-messages-per-subscription", pulsartest.DefaultMaxUnackedMessagesPerSubscription, "Shared and Key_Shared: a subscription with this many messages delivered and not acknowledged reads no new ones until acknowledgements bring it below half (maxUnackedMessagesPerSubscription; 0: no limit)")
	lookAheadConsumer := fs.Int("key-shared-look-ahead-per-consumer", pulsartest.DefaultKeySharedLookAheadPerConsumer, "Key_Shared: entries parked for busy keys, per connected consumer, before the subscription stops reading ahead (keySharedLookAheadMsgInReplayThresholdPerConsumer; 0: no per-consumer bound)")
	lookAheadSub := fs.Int("key-shared-look-ahead-per-subscription", pulsartest.DefaultKeySharedLookAheadPerSubscription, "Key_Shared: at most this many entries parked per subscription (keySharedLookAheadMsgInReplayThresholdPerSubscription; 0: no per-subscription bound)")
	reorder := fs.Int("key-shared-reorder-after-reconnect", 0, "Key_Shared fault: once a consumer leaves with messages pending, pass up to N new entries of keys with nothing waiting for replay ahead of the replay, as a broker may (apache/pulsar#10762); 0: off (also POST /reorder-key-shared?n=N)")
	ledgerEntries := fs.Int("ledger-max-entries", pulsartest.DefaultLedgerMaxEntries, "entries after which a topic's ledger rolls over, once open for -ledger-min-rollover (managedLedgerMaxEntriesPerLedger)")
	ledgerMin := fs.Duration("ledger-min-rollover", pulsartest.DefaultLedgerMinRollover, "how long a ledger stays open at least (managedLedgerMinLedgerRolloverTimeMinutes; 0: none)")
	ledgerMax := fs.Duration("ledger-max-rollover", pulsartest.DefaultLedgerMaxRollover, "a ledger with entries rolls over after this long (managedLedgerMaxLedgerRolloverTimeMinutes)")
	retentionTime := fs.Duration("retention-time", 0, "how long closed ledgers every durable subscription has consumed are kept (defaultRetentionTimeInMinutes; 0, the broker's default: none, acknowledged messages are deleted with their ledger; -1ns: for ever)")
	retentionSize := fs.Int("retention-size-mb", 0, "how many MB of consumed ledgers are kept (defaultRetentionSizeInMB; 0: none; -1: no limit)")
	retentionCheck := fs.Duration("retention-check-interval", pulsartest.DefaultRetentionCheck, "how often ledgers are rolled over and trimmed besides at a rollover and an acknowledgement (retentionCheckIntervalInSeconds)")
	exposeIndex := fs.Bool("expose-entry-index", false, "send broker entry metadata with each message's index and publish time, as a broker with AppendIndexMetadataInterceptor and exposingBrokerEntryMetadataToClientEnabled=true (both off by default)")
	fs.Var(parts, "partitions", "partitioned topic as name=N (repeatable)")
	fs.Var(&tokens, "token", "accept this token (auth method \"token\"; repeatable); with any -token or -token-file, CONNECTs without an accepted token are refused")
	fs.Var(tokenFilesFlag{&tokens}, "token-file", "accept the token held in this file (repeatable)")
	if err := fs.Parse(args); err != nil {
		return settings{}, err
	}
	tc, err := tlsConfig(*tlsCert, *tlsKey)
	if err != nil {
		return settings{}, err
	}
	cfg := pulsartest.Config{Addr: *addr, AdvertisedAddr: *advertised, MaxMessageSize: *maxMsg, Partitions: parts, TLS: tc, Tokens: tokens,
		DeleteInactiveTopicsDisabled: !*deleteInactive, DeleteInactiveTopicsFrequency: *inactiveEvery,
		DeleteInactiveTopicsMaxInactive: *inactiveFor, DeleteInactiveTopicsMode: *inactiveMode,
		MaxUnackedMessagesPerConsumer: limit(*maxUnackedConsumer), MaxUnackedMessagesPerSubscription: limit(*maxUnackedSub),
		KeySharedLookAheadPerConsumer: limit(*lookAheadConsumer), KeySharedLookAheadPerSubscription: limit(*lookAheadSub),
		KeySharedReorderAfterReconnect: *reorder,
		LedgerMaxEntries:               *ledgerEntries, LedgerMinRollover: *ledgerMin, LedgerMaxRollover: *ledgerMax,
		RetentionTime: *retentionTime, RetentionSizeMB: *retentionSize, RetentionCheckInterval: *retentionCheck,
		ExposeEntryIndex: *exposeIndex}
	if *ledgerMin == 0 {
		cfg.LedgerMinRollover = -1 // the flag's 0 is none; Config's 0 is the default
	}
	if err := cfg.Validate(); err != nil {
		return settings{}, err
	}
	return settings{cfg: cfg, control: *control, verbose: *verbose}, nil
}

// limit maps a limit flag to its Config field: 0 turns the limit off, as
// in broker.conf (in Config 0 means the default and Unlimited is off);
// a negative flag stays negative, for Validate to refuse.
func limit(v int) int {
	switch {
	case v == 0:
		return pulsartest.Unlimited
	case v < 0:
		return v - 1
	}
	return v
}

func main() {
	st, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		log.Fatal(err)
	}
	cfg := st.cfg
	if st.verbose {
		cfg.Logf = log.Printf
	}
	// Signals are caught before the server starts and says where it
	// listens: a SIGINT right after that line must stop it cleanly, not
	// kill it (a script that starts it and stops it at once).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := pulsartest.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	auth := "no authentication"
	if len(cfg.Tokens) > 0 {
		auth = fmt.Sprintf("token authentication (%d accepted)", len(cfg.Tokens))
	}
	inactive := "inactive topics kept"
	if !cfg.DeleteInactiveTopicsDisabled {
		every := cfg.DeleteInactiveTopicsFrequency
		if every == 0 {
			every = time.Minute
		}
		inactive = "inactive topics deleted (checked every " + every.String() + ")"
	}
	log.Printf("pulsartestd (test double, in-memory only) serving %s, %s, %s", srv.URL(), auth, inactive)

	var hs *http.Server
	if st.control != "" {
		ln, err := net.Listen("tcp", st.control)
		if err != nil {
			log.Fatal(err)
		}
		hs = &http.Server{Handler: srv.ControlHandler()}
		go hs.Serve(ln)
		log.Printf("control API on http://%s", ln.Addr())
	}

	<-ctx.Done()
	if hs != nil {
		hs.Close()
	}
	srv.Close()
}
