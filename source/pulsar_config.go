package source

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/demandpipe/demandpipe/internal/keyshared"
)

// PulsarSpecHelp documents "pulsar://" sources.
const PulsarSpecHelp = `pulsar://HOST:6650/persistent://TENANT/NS/TOPIC?subscription=NAME[&k=v...] settings
(pulsar+ssl:// for TLS; a short TOPIC is persistent://public/default/TOPIC):
  subscription=NAME    the durable subscription to consume with (required)
  type=T               failover (default: per-partition order, cumulative acks), exclusive,
                       shared or key_shared (individual acks)
  key-ranges=a-b,c-d   with type=key_shared: the sticky hash ranges (0..65535) this consumer
                       owns, instead of the broker splitting them (a scale-out dedup process
                       owns its riders: pipeline/SCALEOUT.md)
  initial=P            where a NEW subscription starts: earliest (default) or latest
  until=end            end once every message that existed at start is read (a replay that
                       behaves like a file; a run that does not resume reads from the first)
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
  connect-timeout=D    TCP connect timeout (default 10s)
  operation-timeout=D  lookups, subscribe and other requests (default 30s)
  token-file=PATH      JWT token for authentication (or env DEMANDPIPE_PULSAR_TOKEN)
  tls-ca-file=PATH     CA certificates to trust (pulsar+ssl://)
  tls-allow-insecure=true  accept any server certificate (tests only)
                       (a token the broker refuses or a certificate not trusted ends the
                       run at once, saying which setting to fix)
  name=NAME            consumer name (failover picks the active consumer by name)
  Messages are acknowledged only once a checkpoint past them is committed (store:,
  cassandra://); source/RECOVERY.md explains why a restart then equals an uninterrupted run.`

// PulsarConfig configures a Pulsar source (and the publish command's
// connection). ParsePulsarURL fills it from a pulsar:// spec; every field
// has a documented default and Validate names the field and its range.
type PulsarConfig struct {
	// ServiceURL: pulsar://HOST:PORT or pulsar+ssl://HOST:PORT.
	ServiceURL string
	// Topic: the full topic name, persistent://TENANT/NS/TOPIC.
	Topic string
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
	// time; pulsar_merge.go); on a live stream a message
	// waits at most this long for a partition that has sent nothing
	// newer. Default 100ms: a fraction of the engine's 1 s progress tick,
	// far below a minute; the order is exact when every partition's
	// messages arrive within it. Range 0..10s (0: no wait).
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
	// ConnectTimeout bounds a TCP connect (default 10s, 100ms..5m);
	// OperationTimeout lookups, subscribe, seek and flushes (default 30s,
	// the client's; 100ms..10m).
	ConnectTimeout   time.Duration
	OperationTimeout time.Duration
	// Token: a JWT, from env DEMANDPIPE_PULSAR_TOKEN (never from the URL:
	// URLs end up in logs). TokenFile: a file holding one, read by the
	// client at each (re)connection.
	Token     string
	TokenFile string
	// TLSCAFile: CA certificates to trust with pulsar+ssl://.
	// TLSAllowInsecure: accept any certificate (tests only).
	TLSCAFile        string
	TLSAllowInsecure bool
	// Name: the consumer's name (default: the client's, random).
	Name string
}

// DefaultPulsarConfig has every default set; ServiceURL, Topic and
// Subscription remain to be given.
func DefaultPulsarConfig() PulsarConfig {
	return PulsarConfig{
		Type:             "failover",
		Initial:          "earliest",
		ReceiverQueue:    1000,
		MaxUnacked:       DefaultMaxUnacked,
		MergeWait:        100 * time.Millisecond,
		AckGroupTime:     100 * time.Millisecond,
		AckGroupSize:     1000,
		ConnectTimeout:   10 * time.Second,
		OperationTimeout: 30 * time.Second,
	}
}

// DefaultMaxUnacked is PulsarConfig.MaxUnacked's default: a broker's
// maxUnackedMessagesPerConsumer=50000 (conf/broker.conf).
const DefaultMaxUnacked = 50000

const redacted = "REDACTED"

// RedactURL returns a source or sink spec fit to print: user info before
// the host ("user:password@") and the values of token= and password=
// replaced by REDACTED. Specs that are not URLs come back as they are.
func RedactURL(spec string) string {
	scheme, rest, ok := strings.Cut(spec, "://")
	if !ok {
		return spec
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	host, path, hasPath := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = redacted + "@" + host[i+1:]
	}
	out := scheme + "://" + host
	if hasPath {
		out += "/" + path
	}
	if !hasQuery {
		return out
	}
	parts := strings.Split(query, "&")
	for i, p := range parts {
		k, _, _ := strings.Cut(p, "=")
		if k == "token" || k == "password" {
			parts[i] = k + "=" + redacted
		}
	}
	return out + "?" + strings.Join(parts, "&")
}

// PulsarTokenEnv is the environment variable holding a token.
const PulsarTokenEnv = "DEMANDPIPE_PULSAR_TOKEN"

// ParsePulsarURL reads "pulsar://HOST:PORT/TOPIC?k=v&..." (or
// pulsar+ssl://) into a config with defaults for what is not given. It
// does not validate: call Validate (consuming) or ValidateConnection
// (publishing).
func ParsePulsarURL(spec string) (PulsarConfig, error) {
	c := DefaultPulsarConfig()
	scheme, rest, ok := strings.Cut(spec, "://")
	if !ok || (scheme != "pulsar" && scheme != "pulsar+ssl") {
		return c, fmt.Errorf("pulsar %q: want pulsar://HOST:PORT/persistent://TENANT/NS/TOPIC?subscription=NAME (or pulsar+ssl://)", RedactURL(spec))
	}
	rest, query, _ := strings.Cut(rest, "?")
	host, topic, _ := strings.Cut(rest, "/")
	if strings.Contains(host, "@") {
		return c, fmt.Errorf("pulsar %q: credentials in the URL are refused (they would end up in logs and shell history): put the token in env %s or in a file (token-file=PATH)", RedactURL(spec), PulsarTokenEnv)
	}
	if host == "" {
		return c, fmt.Errorf("pulsar %q: no HOST:PORT after %s://", RedactURL(spec), scheme)
	}
	if !strings.Contains(host, ":") {
		host += ":6650"
		if scheme == "pulsar+ssl" {
			host = strings.TrimSuffix(host, ":6650") + ":6651"
		}
	}
	c.ServiceURL = scheme + "://" + host
	c.Topic = topic
	if topic != "" && !strings.Contains(topic, "://") {
		c.Topic = "persistent://public/default/" + topic
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return c, fmt.Errorf("pulsar %q: query: %v", RedactURL(spec), err)
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
		case "dead-letter":
			c.DeadLetter = v
			if v != "" && !strings.Contains(v, "://") {
				c.DeadLetter = "persistent://public/default/" + v
			}
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
		case "connect-timeout":
			c.ConnectTimeout, err = time.ParseDuration(v)
		case "operation-timeout":
			c.OperationTimeout, err = time.ParseDuration(v)
		case "token-file":
			c.TokenFile = v
		case "token":
			err = fmt.Errorf("a token in the URL would end up in logs: put it in env %s or in a file (token-file=PATH)", PulsarTokenEnv)
		case "tls-ca-file":
			c.TLSCAFile = v
		case "tls-allow-insecure":
			c.TLSAllowInsecure, err = strconv.ParseBool(v)
		case "name":
			c.Name = v
		default:
			return c, fmt.Errorf("pulsar: unknown setting %q\n%s", k, PulsarSpecHelp)
		}
		if err != nil {
			if k == "token" {
				v = redacted // the refusal must not print the secret it refuses
			}
			return c, fmt.Errorf("pulsar: %s=%q: %v\n%s", k, v, err, PulsarSpecHelp)
		}
	}
	c.Token = os.Getenv(PulsarTokenEnv)
	return c, nil
}

// serviceSettings are the settings of a connection alone: what
// ParsePulsarService accepts.
var serviceSettings = map[string]bool{"token-file": true, "tls-ca-file": true, "tls-allow-insecure": true,
	"connect-timeout": true, "operation-timeout": true}

// ParsePulsarService parses a connection without a topic, as
// `run -scaleout.url` takes it: pulsar[+ssl]://HOST[:PORT][?k=v...] with
// only the connection's settings (token-file, tls-ca-file,
// tls-allow-insecure, connect-timeout, operation-timeout; the token may
// also come from env DEMANDPIPE_PULSAR_TOKEN). The caller sets Topic.
func ParsePulsarService(spec string) (PulsarConfig, error) {
	rest, query, _ := strings.Cut(spec, "?")
	if _, after, ok := strings.Cut(rest, "://"); ok && strings.Contains(after, "/") {
		return DefaultPulsarConfig(), fmt.Errorf("pulsar %q: a service URL has no topic: want pulsar://HOST:PORT[?token-file=PATH&tls-ca-file=PATH] (pulsar+ssl:// for TLS)", RedactURL(spec))
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return DefaultPulsarConfig(), fmt.Errorf("pulsar %q: query: %v", RedactURL(spec), err)
	}
	for k := range q {
		if !serviceSettings[k] && k != "token" { // ParsePulsarURL explains why not token=
			return DefaultPulsarConfig(), fmt.Errorf("pulsar %q: %s= is not a connection setting: want token-file, tls-ca-file, tls-allow-insecure, connect-timeout or operation-timeout", RedactURL(spec), k)
		}
	}
	return ParsePulsarURL(spec)
}

// ValidateConnection checks what a client needs: the service URL, topic,
// timeouts and credentials.
func (c *PulsarConfig) ValidateConnection() error {
	switch {
	case !strings.HasPrefix(c.ServiceURL, "pulsar://") && !strings.HasPrefix(c.ServiceURL, "pulsar+ssl://"):
		return fmt.Errorf("pulsar: ServiceURL %q: want pulsar://HOST:PORT or pulsar+ssl://HOST:PORT", c.ServiceURL)
	case c.Topic == "":
		return fmt.Errorf("pulsar: no topic: put it after the host, e.g. pulsar://localhost:6650/persistent://public/default/rides")
	case !strings.HasPrefix(c.Topic, "persistent://") && !strings.HasPrefix(c.Topic, "non-persistent://"):
		return fmt.Errorf("pulsar: topic %q: want persistent://TENANT/NS/TOPIC", c.Topic)
	case strings.Count(strings.SplitN(c.Topic, "://", 2)[1], "/") != 2:
		return fmt.Errorf("pulsar: topic %q: want persistent://TENANT/NS/TOPIC (three parts)", c.Topic)
	case c.ConnectTimeout < 100*time.Millisecond || c.ConnectTimeout > 5*time.Minute:
		return fmt.Errorf("pulsar: connect-timeout %s out of range [100ms, 5m]", c.ConnectTimeout)
	case c.OperationTimeout < 100*time.Millisecond || c.OperationTimeout > 10*time.Minute:
		return fmt.Errorf("pulsar: operation-timeout %s out of range [100ms, 10m]", c.OperationTimeout)
	case c.Token != "" && c.TokenFile != "":
		return fmt.Errorf("pulsar: both env %s and token-file= are set: keep one", PulsarTokenEnv)
	case (c.TLSCAFile != "" || c.TLSAllowInsecure) && !strings.HasPrefix(c.ServiceURL, "pulsar+ssl://"):
		return fmt.Errorf("pulsar: tls-ca-file and tls-allow-insecure need pulsar+ssl://")
	}
	for _, f := range []struct{ name, path string }{{"token-file", c.TokenFile}, {"tls-ca-file", c.TLSCAFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("pulsar: %s: %v", f.name, err)
		}
	}
	return nil
}

// Validate checks a consumer's config, naming the field and its range.
func (c *PulsarConfig) Validate() error {
	if err := c.ValidateConnection(); err != nil {
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
func (c *PulsarConfig) Identity() string {
	return "pulsar:" + c.Topic + " subscription=" + c.Subscription
}

// cumulative reports whether the subscription type allows cumulative acks.
func (c *PulsarConfig) cumulative() bool { return c.Type == "exclusive" || c.Type == "failover" }

// unackedLimit is the broker's limit on messages delivered to this
// consumer and not acknowledged, per partition: MaxUnacked for shared and
// key_shared, 0 (none) for failover and exclusive.
func (c *PulsarConfig) unackedLimit() int64 {
	if c.cumulative() {
		return 0
	}
	return int64(c.MaxUnacked)
}
