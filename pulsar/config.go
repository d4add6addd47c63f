package pulsar

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/demandpipe/demandpipe/internal/keyshared"
	"github.com/demandpipe/demandpipe/pulsar/conn"
)

// SpecHelp documents "pulsar://" sources.
const SpecHelp = `pulsar://HOST:6650/persistent://TENANT/NS/TOPIC?subscription=NAME[&k=v...] settings
(pulsar+ssl:// for TLS; a short TOPIC is persistent://public/default/TOPIC):
  subscription=NAME    the durable subscription to consume with (required)
  type=T               failover (default: per-partition order, cumulative acks), exclusive,
                       shared or key_shared (individual acks)
  key-ranges=a-b,c-d   with type=key_shared: the sticky hash ranges (0..65535) this consumer
                       owns, instead of the broker splitting them (a scale-out dedup process
                       owns its riders: pipeline/SCALEOUT.md)
  initial=P            where a NEW subscription starts: earliest (default) or latest
  until=end            end once every message that existed at start is read (a replay that
                       behaves like a file; a run that does not resume reads from the first,
                       and fails if the broker's retention deleted the topic's first messages,
                       which a broker exposing entry indexes tells; without them it warns)
  allow-trimmed=true   with until=end: read what is left of a topic whose start was deleted
  dead-letter=TOPIC    publish every rejected line there (properties reason, line); the
                       durable subscription demandpipe-dead-letters, made at start, keeps
                       them until read (a broker deletes a topic nobody subscribes to)
  receiver-queue=N     messages prefetched per partition (default 1000, 1..1000000)
  max-unacked=N        with type=shared or key_shared: the broker's
                       maxUnackedMessagesPerConsumer (default 50000, the broker's; 0: the
                       broker's limit is off). A broker stops delivering to such a consumer
                       at N messages not acknowledged, and this source holds the lateness
                       plus about a minute of input unacknowledged (~150,000-200,000 at
                       100,000 events a minute): the run fails within a receiver queue of
                       N, saying so, instead of stalling. Raise the broker's limits and this
                       together (above the peak plus receiver-queue), or use failover
  merge-wait=D         partitions are merged in event-time order (a message's event time, else
                       its publish time); a live stream holds a message up to this long for a
                       silent partition (default 100ms, 0..10s)
  ack-group-time=D     acks are sent at most this late (default 100ms, 0..10s)
  ack-group-size=N     or once this many are pending (default 1000, 1..1000000); not with
                       shared or key_shared under max-unacked, which acknowledge each
                       checkpoint's messages in lists the broker confirms
` + conn.SettingsHelp + `
  name=NAME            consumer name (failover picks the active consumer by name)
  Messages are acknowledged only once a checkpoint past them is committed (store:,
  cassandra://); pulsar/RECOVERY.md explains why a restart then equals an uninterrupted run.`

// Config configures a Pulsar source. ParseURL fills it from a pulsar://
// spec; every field has a documented default and Validate names the field
// and its range.
type Config struct {
	// Config is the connection: ServiceURL, Topic, the timeouts, the
	// credentials and TLS (conn.Config has their defaults).
	conn.Config
	// Subscription: the durable subscription's name (required to consume).
	Subscription string
	// Type: exclusive, failover (default), shared or key_shared. Failover
	// keeps each partition's order for the one active consumer, which the
	// exact resume needs (RECOVERY.md), and allows cumulative acks.
	Type string
	// KeyRanges: with key_shared, the sticky hash ranges this consumer
	// owns ([a b c d ...], inclusive); nil: the broker splits them.
	KeyRanges []int
	// Initial: where a new subscription starts, earliest (default: a new
	// subscription sees the topic's history) or latest.
	Initial string
	// UntilEnd: the stream ends once every message that existed when the
	// first Read ran has been read (GET_LAST_MESSAGE_ID per partition).
	UntilEnd bool
	// AllowTrimmed: an until=end run from the topic's start goes on when
	// the broker's retention has deleted the topic's first messages (a
	// warning instead of an error; Source.checkStart). Default false.
	AllowTrimmed bool
	// DeadLetter: if set, the topic every rejected line is published to;
	// the source subscribes DeadLetterSubscription to it when it starts,
	// so that the dead letters are kept until read.
	DeadLetter string
	// ReceiverQueue: messages the client prefetches per partition. Default
	// 1000, the client's: at ~150 bytes an event, 150 KB a partition.
	// Range 1..1000000.
	ReceiverQueue int
	// MaxUnacked: with type shared or key_shared, the most messages of one
	// partition the broker delivers to this consumer without an
	// acknowledgement: its maxUnackedMessagesPerConsumer (conf/broker.conf
	// default 50000, overridden per namespace or topic). Past it the
	// broker sends nothing until acknowledgements bring the count to half
	// (Consumer.java), and this source acknowledges a message only once a
	// checkpoint past it is durable: the lateness plus about a minute of
	// input, ~150,000-200,000 messages at 100,000 events a minute, stay
	// unacknowledged (without a checkpointing sink, every message). So
	// the source fails the run (Read returns the error) once a partition's
	// messages taken and not acknowledged come within what the client may
	// still hold (ReceiverQueue + 10 + a batch entry) of MaxUnacked, and
	// warns once at 80% of that, rather than stall (a replay for ever; a
	// live run would close its minutes early on the idle timeout).
	// Default 50000, the broker's; 0: the broker's limit is off
	// (maxUnackedMessagesPerConsumer=0), no check. Failover and exclusive
	// have no such limit (cumulative acks). Range 0..1<<30, and above
	// twice ReceiverQueue.
	MaxUnacked int
	// MergeWait: a partitioned topic's messages are handed to the engine
	// merged in event-time order (a message's event time, else its publish
	// time; merge.go); on a live stream a message waits at most this long
	// for a partition that has sent nothing newer. Default 100ms: a
	// fraction of the engine's 1 s progress tick, far below a minute; the
	// order is exact when every partition's messages arrive within it.
	// Range 0..10s (0: no wait).
	MergeWait time.Duration
	// AckGroupTime, AckGroupSize: acks are grouped by the client and sent
	// after AckGroupTime or once AckGroupSize are pending (defaults 100ms
	// and 1000, the client's). A lost group only causes redelivery of
	// messages that a restart drops anyway. Ranges 0..10s and 1..1000000.
	// Shared and key_shared under MaxUnacked do not group: each
	// checkpoint's messages are acknowledged in lists the broker confirms
	// (AckWithResponse), so that the count held against the limit never
	// runs behind the broker's.
	AckGroupTime time.Duration
	AckGroupSize int
	// Name: the consumer's name (default: the client's, random).
	Name string
}

// DefaultConfig has every default set; ServiceURL, Topic and
// Subscription remain to be given.
func DefaultConfig() Config {
	return Config{
		Config:        conn.DefaultConfig(),
		Type:          "failover",
		Initial:       "earliest",
		ReceiverQueue: 1000,
		MaxUnacked:    DefaultMaxUnacked,
		MergeWait:     100 * time.Millisecond,
		AckGroupTime:  100 * time.Millisecond,
		AckGroupSize:  1000,
	}
}

// DefaultMaxUnacked is Config.MaxUnacked's default: a broker's
// maxUnackedMessagesPerConsumer=50000 (conf/broker.conf).
const DefaultMaxUnacked = 50000

// ParseURL reads "pulsar://HOST:PORT/TOPIC?k=v&..." (or pulsar+ssl://)
// into a config with defaults for what is not given: the connection's
// settings (conn.ParseURL) and the consumer's. It does not validate: call
// Validate.
func ParseURL(spec string) (Config, error) {
	c := DefaultConfig()
	cc, q, err := conn.ParseURL(spec)
	c.Config = cc
	if err != nil {
		return c, err
	}
	for k, vs := range q {
		v := vs[len(vs)-1]
		var err error
		switch k {
		case "subscription":
			c.Subscription = v
		case "type":
			c.Type = v
		case "key-ranges":
			c.KeyRanges, err = keyshared.ParseRanges(v)
		case "initial":
			c.Initial = v
		case "until":
			if v != "end" {
				err = errors.New("want until=end")
			}
			c.UntilEnd = true
		case "allow-trimmed":
			c.AllowTrimmed, err = strconv.ParseBool(v)
		case "dead-letter":
			c.DeadLetter = conn.TopicName(v)
		case "receiver-queue":
			c.ReceiverQueue, err = strconv.Atoi(v)
		case "max-unacked":
			c.MaxUnacked, err = strconv.Atoi(v)
		case "merge-wait":
			c.MergeWait, err = time.ParseDuration(v)
		case "ack-group-time":
			c.AckGroupTime, err = time.ParseDuration(v)
		case "ack-group-size":
			c.AckGroupSize, err = strconv.Atoi(v)
		case "name":
			c.Name = v
		default:
			return c, fmt.Errorf("pulsar: unknown setting %q\n%s", k, SpecHelp)
		}
		if err != nil {
			return c, fmt.Errorf("pulsar: %s=%q: %v\n%s", k, v, err, SpecHelp)
		}
	}
	return c, nil
}

// Validate checks a consumer's config, naming the field and its range.
func (c *Config) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	switch {
	case c.Subscription == "":
		return fmt.Errorf("pulsar: no subscription: add ?subscription=NAME (the same name on every run, to resume)")
	case c.Type != "exclusive" && c.Type != "failover" && c.Type != "shared" && c.Type != "key_shared":
		return fmt.Errorf("pulsar: type %q: want exclusive, failover, shared or key_shared", c.Type)
	case c.Initial != "earliest" && c.Initial != "latest":
		return fmt.Errorf("pulsar: initial %q: want earliest or latest", c.Initial)
	case c.ReceiverQueue < 1 || c.ReceiverQueue > 1_000_000:
		return fmt.Errorf("pulsar: receiver-queue %d out of range [1, 1000000]", c.ReceiverQueue)
	case c.MaxUnacked < 0 || c.MaxUnacked > 1<<30:
		return fmt.Errorf("pulsar: max-unacked %d out of range [0 (the broker's limit is off), 1073741824]", c.MaxUnacked)
	case c.unackedLimit() > 0 && c.MaxUnacked <= 2*c.ReceiverQueue:
		return fmt.Errorf("pulsar: max-unacked=%d with receiver-queue=%d: want max-unacked above twice receiver-queue (the broker counts the messages the client prefetches, and the run fails within a receiver queue of the limit)", c.MaxUnacked, c.ReceiverQueue)
	case c.MergeWait < 0 || c.MergeWait > 10*time.Second:
		return fmt.Errorf("pulsar: merge-wait %s out of range [0, 10s]", c.MergeWait)
	case c.AckGroupTime < 0 || c.AckGroupTime > 10*time.Second:
		return fmt.Errorf("pulsar: ack-group-time %s out of range [0, 10s]", c.AckGroupTime)
	case c.AckGroupSize < 1 || c.AckGroupSize > 1_000_000:
		return fmt.Errorf("pulsar: ack-group-size %d out of range [1, 1000000]", c.AckGroupSize)
	case len(c.KeyRanges) > 0 && c.Type != "key_shared":
		return fmt.Errorf("pulsar: key-ranges needs type=key_shared (it is %s)", c.Type)
	case c.DeadLetter == c.Topic:
		return fmt.Errorf("pulsar: dead-letter %q is the topic consumed: name another topic", c.DeadLetter)
	}
	return nil
}

// Identity names the input for checkpoints: topic and subscription, not
// the host (a cluster is reached under many names; the subscription's
// cursor is what continues).
func (c *Config) Identity() string {
	return "pulsar:" + c.Topic + " subscription=" + c.Subscription
}

// cumulative reports whether the subscription type allows cumulative acks.
func (c *Config) cumulative() bool { return c.Type == "exclusive" || c.Type == "failover" }

// unackedLimit is the broker's limit on messages delivered to this
// consumer and not acknowledged, per partition: MaxUnacked for shared and
// key_shared, 0 (none) for failover and exclusive.
func (c *Config) unackedLimit() int64 {
	if c.cumulative() {
		return 0
	}
	return int64(c.MaxUnacked)
}
