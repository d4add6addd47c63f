package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/valyala/fastjson"

	"github.com/demandpipe/demandpipe/pulsar/conn"
	"github.com/demandpipe/demandpipe/source"
)

const publishMore = `Each line of FILE (NDJSON; plain, gzip or zstd, as -source=file: reads) becomes one
message, in file order, keyed by its -key field (default rider_id) so that the default
router keeps a rider's events on one partition and Key_Shared keeps them on one
consumer, with its ts as the message's event time (the Pulsar source merges partitions
by it). Blank lines are skipped. Messages are batched (-batch-messages, -batch-delay).

The topic URL takes the connection's settings only, as the source's URL does
(connect-timeout=, operation-timeout=, token-file=, tls-ca-file=; token from env
DEMANDPIPE_PULSAR_TOKEN); a consumer's setting (subscription=, ...) is refused.
An unreachable broker fails within operation-timeout (default 30s).

Try the whole path (docs/PULSAR.md):
  demandpipe gen -o events.ndjson.zst -events 200000
  demandpipe publish -to=pulsar://localhost:6650/persistent://public/default/rides events.ndjson.zst
  demandpipe run -source='pulsar://localhost:6650/persistent://public/default/rides?subscription=demandpipe&until=end' -sink=store:features
No broker at hand? The project's test double speaks the protocol:
  go run ./internal/pulsartest/cmd/pulsartestd -addr 127.0.0.1:6650`

func publishCommand(args []string) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	to := fs.String("to", "", "the topic: pulsar://HOST:6650/persistent://TENANT/NS/TOPIC (pulsar+ssl:// for TLS)")
	key := fs.String("key", "rider_id", "the JSON field whose string value keys each message (empty: no key, round-robin partitions)")
	byKey := fs.Bool("batch-by-key", false, "batch messages by key, one key per batch entry: needed by consumers on a Key_Shared subscription (run -role=dedup with key-ranges=), which receive an entry by one key; keeps each key's order, not the file's across keys; slower when keys rarely repeat (0.4x the messages per second, measured once here)")
	batchMessages := fs.Int("batch-messages", 1000, "messages per batch at most (1: no batching)")
	batchDelay := fs.Duration("batch-delay", 10*time.Millisecond, "a batch is sent at most this long after its first message")
	sendTimeout := fs.Duration("send-timeout", 30*time.Second, "a message not stored by the broker within this long fails the publish")
	progress := fs.String("progress", "auto", "a progress line on stderr every second: auto (when stderr is a terminal), always or never")
	// FILE is the one argument after the flags.
	var file string
	if n := len(args); n > 0 && (len(args[n-1]) == 0 || args[n-1][0] != '-' || args[n-1] == "-") {
		file, args = args[n-1], args[:n-1]
	}
	if err := parse(fs, args, "demandpipe publish -to=pulsar://HOST:6650/TOPIC [flags] FILE: publish an NDJSON file to a Pulsar topic, one message per line.", publishMore); err != nil {
		return err
	}
	switch {
	case file == "":
		return fmt.Errorf("no FILE: demandpipe publish -to=pulsar://HOST:6650/TOPIC events.ndjson (- for stdin)")
	case *to == "":
		return fmt.Errorf("no -to: give the topic, e.g. -to=pulsar://localhost:6650/persistent://public/default/rides")
	case *batchMessages < 1:
		return fmt.Errorf("-batch-messages=%d: want 1 or more", *batchMessages)
	case *progress != "auto" && *progress != "always" && *progress != "never":
		return fmt.Errorf("-progress=%q: want auto, always or never", *progress)
	}
	cfg, err := conn.ParseTopic(*to)
	if err != nil {
		return err
	}
	in, err := source.OpenFile(file)
	if err != nil {
		return err
	}
	defer in.Close()
	client, err := conn.Dial(cfg)
	if err != nil {
		return err
	}
	defer client.Close()
	var prod pulsar.Producer
	err = client.Do(func() (err error) {
		prod, err = client.CreateProducer(pulsar.ProducerOptions{
			Topic:           cfg.Topic,
			SendTimeout:     *sendTimeout,
			DisableBatching: *batchMessages == 1,
			// A batch entry is routed by one key (Key_Shared): messages
			// of several keys in one entry reach a consumer that does not
			// own all of them. Batching by key keeps each key's order but
			// not the file's across keys (a small lateness then sees late
			// events), so it is asked for.
			BatcherBuilderType:      batcher(*byKey && *key != ""),
			BatchingMaxMessages:     uint(*batchMessages),
			BatchingMaxPublishDelay: *batchDelay,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("pulsar: producer on %s at %s: %w (is the broker up? -to=%s)", cfg.Topic, cfg.ServiceURL, err, *to)
	}
	defer prod.Close()

	p := &publisher{prod: prod, key: *key}
	start := time.Now()
	stopProgress := make(chan struct{})
	var progressDone sync.WaitGroup
	if *progress == "always" || (*progress == "auto" && isTerminal(os.Stderr)) {
		progressDone.Add(1)
		go func() {
			defer progressDone.Done()
			p.progress(stopProgress, start)
		}()
	}
	err = p.run(in)
	close(stopProgress)
	progressDone.Wait()
	took := time.Since(start)
	fmt.Fprintf(os.Stderr, "published %d messages (%d bytes) to %s in %.2fs (%.0f/s)", p.acked.Load(), p.bytes.Load(), cfg.Topic, took.Seconds(), float64(p.acked.Load())/max(took.Seconds(), 1e-9))
	if p.blank > 0 {
		fmt.Fprintf(os.Stderr, "; %d blank lines skipped", p.blank)
	}
	if *key != "" && p.unkeyed > 0 {
		fmt.Fprintf(os.Stderr, "; %d lines without a string %q sent without a key", p.unkeyed, *key)
	}
	fmt.Fprintln(os.Stderr)
	return err
}

// publisher sends lines in order and counts what the broker stored.
type publisher struct {
	prod           pulsar.Producer
	key            string
	blank, unkeyed int64
	sent           atomic.Int64
	acked, bytes   atomic.Int64

	mu    sync.Mutex
	first error
}

func (p *publisher) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first
}

func (p *publisher) run(in io.Reader) error {
	r := bufio.NewReaderSize(in, 1<<20)
	var parser fastjson.Parser
	var wg sync.WaitGroup
	defer wg.Wait()
	for lineNo := int64(1); ; lineNo++ {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			if len(bytes.TrimSpace(line)) == 0 {
				p.blank++
			} else {
				if err := p.failed(); err != nil {
					return err
				}
				msg := &pulsar.ProducerMessage{Payload: line}
				if v, perr := parser.ParseBytes(line); perr == nil && v.Type() == fastjson.TypeObject {
					if p.key != "" {
						if k := v.GetStringBytes(p.key); k != nil {
							msg.Key = string(k)
						}
					}
					// The event's time, for consumers that merge partitions
					// by it (the Pulsar source does).
					if ts := v.Get("ts"); ts != nil && ts.Type() == fastjson.TypeNumber {
						if ms, err := ts.Int64(); err == nil && ms > 0 {
							msg.EventTime = time.UnixMilli(ms)
						}
					}
				}
				if p.key != "" && msg.Key == "" {
					p.unkeyed++
				}
				n, at := int64(len(line)), lineNo
				wg.Add(1)
				p.sent.Add(1)
				p.prod.SendAsync(context.Background(), msg, func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
					defer wg.Done()
					if err != nil {
						p.mu.Lock()
						if p.first == nil {
							p.first = fmt.Errorf("pulsar: line %d was not stored: %w (is the broker up? -send-timeout raises the wait)", at, err)
						}
						p.mu.Unlock()
						return
					}
					p.acked.Add(1)
					p.bytes.Add(n)
				})
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the file: %w", err)
		}
	}
	if err := p.prod.FlushWithCtx(context.Background()); err != nil && p.failed() == nil {
		return fmt.Errorf("pulsar: flush: %w", err)
	}
	wg.Wait()
	return p.failed()
}

func (p *publisher) progress(stop <-chan struct{}, start time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			fmt.Fprint(os.Stderr, "\r\033[K")
			return
		case <-t.C:
			n := p.acked.Load()
			fmt.Fprintf(os.Stderr, "\r\033[Kpublished %d messages (%d in flight), %.0f/s", n, p.sent.Load()-n, float64(n)/time.Since(start).Seconds())
		}
	}
}

// batcher is the producer's batch builder.
func batcher(byKey bool) pulsar.BatcherBuilderType {
	if byKey {
		return pulsar.KeyBasedBatchBuilder
	}
	return pulsar.DefaultBatchBuilder
}
