package pulsar

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// deadLetter is the engine's rejects writer when dead-letter= is set: it
// reads the engine's reject lines ({"line":N,"reason":"…","text":"…"}) and
// publishes each text to the dead-letter topic with properties reason and
// line. A failed publish fails the run: Write and flush return it (a
// rejected message must never be acknowledged without its copy stored).
type deadLetter struct {
	prod    pulsar.Producer
	keep    pulsar.Consumer // on DeadLetterSubscription, nil if another consumer holds it
	topic   string
	timeout time.Duration
	stats   *counters
	tee     io.Writer
	partial []byte // a reject line cut between two Writes

	mu  sync.Mutex
	err error
}

// DeadLetterSubscription is the durable subscription the source makes on
// its dead-letter topic when it starts, so that the dead letters are kept
// until someone reads them: whoever handles them consumes this
// subscription (and acknowledges what it has dealt with).
//
// Without it a dead-letter topic has a producer only while a run goes,
// and no subscription: a Pulsar broker deletes such a topic, with its
// messages, a minute or two after the run ends
// (brokerDeleteInactiveTopicsEnabled=true, every 60 s,
// delete_when_no_subscriptions: PersistentTopic.checkGC), and with the
// default retention (0) it keeps nothing a subscription does not hold
// even before that. An unacknowledged message on a durable subscription
// is kept whatever the retention, and the subscription keeps the topic.
const DeadLetterSubscription = "demandpipe-dead-letters"

func newDeadLetter(client pulsar.Client, cfg Config, stats *counters) (*deadLetter, error) {
	keep, err := keepDeadLetters(client, cfg)
	if err != nil {
		return nil, err
	}
	prod, err := client.CreateProducer(pulsar.ProducerOptions{
		Topic:       cfg.DeadLetter,
		SendTimeout: cfg.OperationTimeout,
	})
	if err != nil {
		if keep != nil {
			keep.Close()
		}
		return nil, fmt.Errorf("pulsar: dead-letter producer on %s: %w (is the topic's namespace there?)", cfg.DeadLetter, err)
	}
	return &deadLetter{prod: prod, keep: keep, topic: cfg.DeadLetter, timeout: cfg.OperationTimeout, stats: stats}, nil
}

// keepDeadLetters makes sure DeadLetterSubscription exists on the
// dead-letter topic before anything is published there: it subscribes
// (Shared, from the earliest message, so that dead letters of earlier
// runs still on the topic are kept too). The consumer, which never
// receives, stays until the source closes (closing it at once races the
// client's start of the consumer, which logs errors); the subscription
// stays after it. A subscription busy with a consumer of another type
// (someone reading the dead letters) exists already: then nil, no error.
func keepDeadLetters(client pulsar.Client, cfg Config) (pulsar.Consumer, error) {
	c, err := client.Subscribe(pulsar.ConsumerOptions{
		Topic:                       cfg.DeadLetter,
		SubscriptionName:            DeadLetterSubscription,
		Type:                        pulsar.Shared,
		SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest,
		ReceiverQueueSize:           1,
	})
	if err != nil {
		if strings.Contains(err.Error(), "ConsumerBusy") {
			return nil, nil
		}
		return nil, fmt.Errorf("pulsar: the subscription %s that keeps the dead letters on %s: %w (is the topic's namespace there?)", DeadLetterSubscription, cfg.DeadLetter, err)
	}
	return c, nil
}

func (d *deadLetter) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (d *deadLetter) setErr(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = err
	}
}

// Write publishes every complete reject line in b (asynchronously: flush
// waits for them) and passes b to tee.
func (d *deadLetter) Write(b []byte) (int, error) {
	if err := d.failed(); err != nil {
		return 0, err
	}
	if d.tee != nil {
		if _, err := d.tee.Write(b); err != nil {
			return 0, fmt.Errorf("rejects file: %w", err)
		}
	}
	d.partial = append(d.partial, b...)
	for {
		i := bytes.IndexByte(d.partial, '\n')
		if i < 0 {
			break
		}
		if err := d.publish(d.partial[:i]); err != nil {
			d.setErr(err)
			return 0, err
		}
		d.partial = d.partial[:copy(d.partial, d.partial[i+1:])]
	}
	return len(b), nil
}

func (d *deadLetter) publish(line []byte) error {
	var r struct {
		Line   int64  `json:"line"`
		Reason string `json:"reason"`
		Text   string `json:"text"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return fmt.Errorf("pulsar dead letter: reading the engine's reject line: %v (a bug: report it with the -rejects file)", err)
	}
	msg := &pulsar.ProducerMessage{
		Payload:    []byte(r.Text),
		Properties: map[string]string{"reason": r.Reason, "line": strconv.FormatInt(r.Line, 10)},
	}
	d.prod.SendAsync(context.Background(), msg, func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
		if err != nil {
			d.setErr(fmt.Errorf("pulsar dead letter: publishing line %d (%s) to %s failed: %w; nothing after it is acknowledged, so a rerun will see it again: check the broker and the topic", r.Line, r.Reason, d.topic, err))
			return
		}
		d.stats.deadLettered.Add(1)
	})
	return nil
}

// flush waits until every line written so far is stored by the broker.
func (d *deadLetter) flush() error {
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	if err := d.prod.FlushWithCtx(ctx); err != nil {
		d.setErr(fmt.Errorf("pulsar dead letter: flushing to %s: %w; nothing after it is acknowledged: check the broker and the topic", d.topic, err))
	}
	return d.failed()
}

func (d *deadLetter) close() error {
	err := d.flush()
	d.prod.Close()
	if d.keep != nil {
		d.keep.Close() // the subscription stays
	}
	return err
}
