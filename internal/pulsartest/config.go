package pulsartest

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"time"
)

// Config configures a Server. The zero value is usable: every field has a
// default applied by New.
type Config struct {
	// Addr is the TCP address to listen on. Default "127.0.0.1:0" (a free
	// port; read it back with Server.Addr).
	Addr string

	// AdvertisedAddr is the host:port returned in LOOKUP answers, which
	// clients then dial. Default: the listener's address, with an
	// unspecified IP (0.0.0.0, ::) replaced by 127.0.0.1.
	AdvertisedAddr string

	// MaxMessageSize is announced in CONNECTED and bounds incoming frames
	// (plus FramePadding for the command and metadata). Default 5 MiB, the
	// Pulsar broker's default maxMessageSize (5 * 1024 * 1024 = 5242880).
	// Range 1 KiB .. 64 MiB.
	MaxMessageSize int

	// MaxProtocolVersion is the highest protocol version the double
	// claims; CONNECTED answers min(client's, this). Default 20 (v20, the
	// newest in PulsarApi.proto as of client v0.21.0). Range 6 .. 20: below
	// v6 there are no checksums, which the double always sends.
	MaxProtocolVersion int32

	// ServerVersion is the server_version string sent in CONNECTED.
	// Default "pulsartest".
	ServerVersion string

	// Unacknowledged messages are limited on Shared and Key_Shared
	// subscriptions as a broker limits them by default (conf/broker.conf:
	// maxUnackedMessagesPerConsumer=50000,
	// maxUnackedMessagesPerSubscription=200000). Messages are counted as
	// the broker counts them: every message of an entry dispatched and not
	// yet acknowledged (a batch counts its size), a redelivered message
	// again each time it is dispatched; Exclusive and Failover have no
	// limit (they acknowledge cumulatively).
	//
	// A consumer that reaches MaxUnackedMessagesPerConsumer gets nothing
	// more until acknowledgements bring its count down to half the limit
	// (Consumer.java: incrementUnackedMessages sets
	// blockedConsumerOnUnackedMsgs, removePendingAcks clears it at
	// unacked <= max/2); a request for redelivery, or the consumer
	// leaving, releases its count at once. The limit applies to durable
	// subscriptions only (Consumer.getMaxUnackedMessages is 0 for a
	// non-durable one). A subscription whose consumers together reach
	// MaxUnackedMessagesPerSubscription reads no new entries, though it
	// still redelivers, until its count falls below half
	// (PersistentDispatcherMultipleConsumers.addUnAckedMessages and
	// readMoreEntries). Stats.Blocked lists who is blocked.

	// MaxUnackedMessagesPerConsumer: default
	// DefaultMaxUnackedMessagesPerConsumer (50000). Unlimited (-1) turns
	// the limit off, as 0 does in broker.conf. Range -1 .. 1<<30.
	MaxUnackedMessagesPerConsumer int

	// MaxUnackedMessagesPerSubscription: default
	// DefaultMaxUnackedMessagesPerSubscription (200000). Unlimited (-1)
	// turns it off. Range -1 .. 1<<30.
	MaxUnackedMessagesPerSubscription int

	// A Key_Shared subscription whose next entry's key belongs to a
	// consumer that cannot take it (no permits, or blocked on unacked
	// messages) parks the entry for replay and reads on for other keys,
	// up to min(KeySharedLookAheadPerConsumer × connected consumers,
	// KeySharedLookAheadPerSubscription) parked entries
	// (PersistentStickyKeyDispatcherMultipleConsumers.
	// getEffectiveLookAheadLimit; conf/broker.conf:
	// keySharedLookAheadMsgInReplayThresholdPerConsumer=2000,
	// keySharedLookAheadMsgInReplayThresholdPerSubscription=20000, the
	// defaults up to Pulsar 4.2; 5.0 doubles both). Unlimited (-1) turns
	// a component off, as 0 does in broker.conf; with both off the bound
	// is min(MaxUnackedMessagesPerSubscription, consumers ×
	// MaxUnackedMessagesPerConsumer), unbounded if those are off too.

	// KeySharedLookAheadPerConsumer: default
	// DefaultKeySharedLookAheadPerConsumer (2000). Range -1 .. 1<<24.
	KeySharedLookAheadPerConsumer int

	// KeySharedLookAheadPerSubscription: default
	// DefaultKeySharedLookAheadPerSubscription (20000). Range -1 .. 1<<24.
	KeySharedLookAheadPerSubscription int

	// KeySharedReorderAfterReconnect injects a reordering a real broker
	// may make on a Key_Shared subscription after a consumer reconnects
	// (apache/pulsar#10762: while the replay of the messages a consumer
	// left unacknowledged is stuck, PersistentStickyKeyDispatcher
	// MultipleConsumers reads on and dispatches newer entries; since that
	// fix only those of keys with no message waiting for replay, so each
	// key keeps its order, but a newer message of one key then arrives
	// before the replay of an older one of another key). With N > 0, once
	// a consumer leaves a Key_Shared subscription (a disconnect, a close)
	// with entries pending, the dispatcher sends up to N new entries whose
	// hash slot has no entry waiting for replay before the replays; new
	// entries of a slot that has one are parked behind it (look-ahead
	// bound as usual). Deterministic: the same N entries every time.
	// Stats.KeySharedPassedAhead counts them; Server.ReorderKeySharedReplays
	// changes N at run time. Default 0: replays first, in id order, as a
	// broker does when its consumers keep up. Range 0 .. 1<<24.
	KeySharedReorderAfterReconnect int

	// Partitions pre-creates partitioned topics: name -> partition count.
	// Names may be short ("orders") or full
	// ("persistent://public/default/orders"). Counts 1 .. 1024.
	Partitions map[string]int

	// TLS, if set, makes the listener serve TLS with it (it needs
	// Certificates or GetCertificate): clients connect with
	// pulsar+ssl:// (URL says so) and LOOKUP answers name the broker in
	// brokerServiceUrlTls. The one listener serves TLS only, as a broker
	// whose plain port is disabled. Default nil: plain TCP.
	TLS *tls.Config

	// Tokens, if not empty, turns on token authentication: a CONNECT must
	// carry auth_method_name "token" and auth_data equal to one of these,
	// else the double answers ERROR AuthenticationError "Failed to
	// authenticate" (request id -1) and closes the connection, as a broker
	// with AuthenticationProviderToken does (ServerCnx.authenticationFailed).
	// The double compares bytes: it neither parses nor verifies a JWT (no
	// signature, expiry, role or authorization) and sends no auth
	// challenges. Default none: any method and data are accepted.
	Tokens []string

	// Inactive topics are deleted, with their messages, as a Pulsar broker
	// does by default (conf/broker.conf: brokerDeleteInactiveTopicsEnabled=
	// true, brokerDeleteInactiveTopicsFrequencySeconds=60,
	// brokerDeleteInactiveTopicsMode=delete_when_no_subscriptions,
	// brokerDeleteInactiveTopicsMaxInactiveDurationSeconds unset, which
	// means the frequency). Every DeleteInactiveTopicsFrequency the double
	// runs the broker's check (BrokerService.checkGC, then
	// PersistentTopic.checkGC and isActive for each topic): a topic with
	// a producer or a consumer connected, or (delete_when_no_subscriptions)
	// a subscription, or (delete_when_subscriptions_caught_up) a
	// subscription with a backlog, is active; one that has been inactive
	// for DeleteInactiveTopicsMaxInactive is deleted with its messages and
	// its subscriptions, and created again, empty, on its next use. A
	// reader's subscription is non-durable and goes with its consumer, so
	// only a durable subscription keeps an idle topic (inactive.go).

	// DeleteInactiveTopicsDisabled keeps every topic for ever
	// (brokerDeleteInactiveTopicsEnabled=false). Default false: inactive
	// topics are deleted.
	DeleteInactiveTopicsDisabled bool

	// DeleteInactiveTopicsFrequency is how often the check runs
	// (brokerDeleteInactiveTopicsFrequencySeconds). Default 60 s, the
	// broker's. Range 1 ms .. 24 h; tests shorten it to see a deletion.
	DeleteInactiveTopicsFrequency time.Duration

	// DeleteInactiveTopicsMaxInactive is how long a topic must have been
	// inactive to be deleted
	// (brokerDeleteInactiveTopicsMaxInactiveDurationSeconds). Default:
	// DeleteInactiveTopicsFrequency, as in the broker. Range 1 ms .. 24 h.
	DeleteInactiveTopicsMaxInactive time.Duration

	// DeleteInactiveTopicsMode is brokerDeleteInactiveTopicsMode:
	// "delete_when_no_subscriptions" (default, the broker's: any
	// subscription keeps a topic) or "delete_when_subscriptions_caught_up"
	// (only a subscription with unacknowledged messages does; the
	// subscriptions are deleted with the topic).
	DeleteInactiveTopicsMode string

	// Retention and ledger trimming (retention.go) with the broker's
	// defaults: a ledger rolls over after LedgerMaxEntries entries once
	// open for LedgerMinRollover, or after LedgerMaxRollover; closed
	// ledgers before every durable cursor are deleted unless RetentionTime
	// or RetentionSizeMB keep them (0 keeps none: acknowledged messages,
	// and every message of a topic without a durable subscription, go with
	// their ledger). Checked after a rollover, when a durable cursor moves
	// and every RetentionCheckInterval.

	// LedgerMaxEntries is managedLedgerMaxEntriesPerLedger. Default
	// DefaultLedgerMaxEntries (50000). Range 1 .. 1<<30.
	LedgerMaxEntries int
	// LedgerMinRollover is managedLedgerMinLedgerRolloverTimeMinutes.
	// Default 10 min; negative: none (tests roll small ledgers at once).
	// At most 24 h.
	LedgerMinRollover time.Duration
	// LedgerMaxRollover is managedLedgerMaxLedgerRolloverTimeMinutes.
	// Default 4 h. Range 1 ms .. 1000 h.
	LedgerMaxRollover time.Duration
	// RetentionCheckInterval is retentionCheckIntervalInSeconds. Default
	// 2 min. Range 1 ms .. 24 h.
	RetentionCheckInterval time.Duration
	// RetentionTime is defaultRetentionTimeInMinutes: how long a closed,
	// consumed ledger is kept. Default 0 (the broker's: none); negative:
	// for ever (-1 in broker.conf).
	RetentionTime time.Duration
	// RetentionSizeMB is defaultRetentionSizeInMB: how many MB of consumed
	// ledgers are kept. Default 0 (none); -1: no limit, for ever.
	RetentionSizeMB int

	// ExposeEntryIndex gives every message broker entry metadata with its
	// index over the topic's life (counted from 0) and the publish time, as
	// a broker with brokerEntryMetadataInterceptors=org.apache.pulsar.
	// common.intercept.AppendIndexMetadataInterceptor and
	// exposingBrokerEntryMetadataToClientEnabled=true sends it
	// (Message.Index() in the Go client). Default false, the broker's
	// (both settings are off).
	ExposeEntryIndex bool

	// Logf, if set, receives one line per connection event and protocol
	// error. Default: silent.
	Logf func(format string, args ...any)
}

// FramePadding is the room allowed above MaxMessageSize for the command and
// message metadata in a frame, the same 10 KiB the Go client allows.
const FramePadding = 10 << 10

// Defaults of the Config fields that a broker's conf/broker.conf sets, and
// the value that turns such a limit off.
const (
	DefaultMaxUnackedMessagesPerConsumer     = 50000  // maxUnackedMessagesPerConsumer
	DefaultMaxUnackedMessagesPerSubscription = 200000 // maxUnackedMessagesPerSubscription
	DefaultKeySharedLookAheadPerConsumer     = 2000   // keySharedLookAheadMsgInReplayThresholdPerConsumer
	DefaultKeySharedLookAheadPerSubscription = 20000  // keySharedLookAheadMsgInReplayThresholdPerSubscription

	// Unlimited in a limit's field turns the limit off (0 in broker.conf;
	// 0 in Config means the default).
	Unlimited = -1
)

const (
	defaultMaxMessageSize = 5 << 20
	defaultProtocol       = 20

	// defaultInactiveFrequency is brokerDeleteInactiveTopicsFrequencySeconds=60
	// in conf/broker.conf.
	defaultInactiveFrequency = 60 * time.Second
)

// The values of Config.DeleteInactiveTopicsMode, those of the broker's
// brokerDeleteInactiveTopicsMode (InactiveTopicDeleteMode).
const (
	DeleteWhenNoSubscriptions = "delete_when_no_subscriptions"
	DeleteWhenCaughtUp        = "delete_when_subscriptions_caught_up"
)

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = defaultMaxMessageSize
	}
	if c.MaxProtocolVersion == 0 {
		c.MaxProtocolVersion = defaultProtocol
	}
	if c.ServerVersion == "" {
		c.ServerVersion = "pulsartest"
	}
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&c.MaxUnackedMessagesPerConsumer, DefaultMaxUnackedMessagesPerConsumer},
		{&c.MaxUnackedMessagesPerSubscription, DefaultMaxUnackedMessagesPerSubscription},
		{&c.KeySharedLookAheadPerConsumer, DefaultKeySharedLookAheadPerConsumer},
		{&c.KeySharedLookAheadPerSubscription, DefaultKeySharedLookAheadPerSubscription},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.DeleteInactiveTopicsFrequency == 0 {
		c.DeleteInactiveTopicsFrequency = defaultInactiveFrequency
	}
	if c.DeleteInactiveTopicsMaxInactive == 0 {
		// ServiceConfiguration: the max inactive duration, when not set,
		// is the frequency.
		c.DeleteInactiveTopicsMaxInactive = c.DeleteInactiveTopicsFrequency
	}
	if c.DeleteInactiveTopicsMode == "" {
		c.DeleteInactiveTopicsMode = DeleteWhenNoSubscriptions
	}
	if c.LedgerMaxEntries == 0 {
		c.LedgerMaxEntries = DefaultLedgerMaxEntries
	}
	switch {
	case c.LedgerMinRollover == 0:
		c.LedgerMinRollover = DefaultLedgerMinRollover
	case c.LedgerMinRollover < 0:
		c.LedgerMinRollover = 0
	}
	if c.LedgerMaxRollover == 0 {
		c.LedgerMaxRollover = DefaultLedgerMaxRollover
	}
	if c.RetentionCheckInterval == 0 {
		c.RetentionCheckInterval = DefaultRetentionCheck
	}
}

// Validate reports the first out-of-range field. New calls it after
// applying defaults, so zero fields are valid.
func (c *Config) Validate() error {
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return fmt.Errorf("pulsartest: Config.Addr %q: %v", c.Addr, err)
		}
	}
	if c.AdvertisedAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdvertisedAddr); err != nil {
			return fmt.Errorf("pulsartest: Config.AdvertisedAddr %q: %v", c.AdvertisedAddr, err)
		}
	}
	if c.MaxMessageSize != 0 && (c.MaxMessageSize < 1<<10 || c.MaxMessageSize > 64<<20) {
		return fmt.Errorf("pulsartest: Config.MaxMessageSize %d out of range [1024, 67108864]", c.MaxMessageSize)
	}
	if c.MaxProtocolVersion != 0 && (c.MaxProtocolVersion < 6 || c.MaxProtocolVersion > 20) {
		return fmt.Errorf("pulsartest: Config.MaxProtocolVersion %d out of range [6, 20]", c.MaxProtocolVersion)
	}
	for _, f := range []struct {
		name string
		v    int
		max  int
	}{
		{"MaxUnackedMessagesPerConsumer", c.MaxUnackedMessagesPerConsumer, 1 << 30},
		{"MaxUnackedMessagesPerSubscription", c.MaxUnackedMessagesPerSubscription, 1 << 30},
		{"KeySharedLookAheadPerConsumer", c.KeySharedLookAheadPerConsumer, 1 << 24},
		{"KeySharedLookAheadPerSubscription", c.KeySharedLookAheadPerSubscription, 1 << 24},
	} {
		if f.v < Unlimited || f.v > f.max {
			return fmt.Errorf("pulsartest: Config.%s %d out of range [-1 (Unlimited), %d] (0: the default)", f.name, f.v, f.max)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"DeleteInactiveTopicsFrequency", c.DeleteInactiveTopicsFrequency}, {"DeleteInactiveTopicsMaxInactive", c.DeleteInactiveTopicsMaxInactive}} {
		if d.v != 0 && (d.v < time.Millisecond || d.v > 24*time.Hour) {
			return fmt.Errorf("pulsartest: Config.%s %v out of range [1ms, 24h]", d.name, d.v)
		}
	}
	switch c.DeleteInactiveTopicsMode {
	case "", DeleteWhenNoSubscriptions, DeleteWhenCaughtUp:
	default:
		return fmt.Errorf("pulsartest: Config.DeleteInactiveTopicsMode %q: want %s or %s", c.DeleteInactiveTopicsMode, DeleteWhenNoSubscriptions, DeleteWhenCaughtUp)
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
		return fmt.Errorf("pulsartest: Config.TLS has no certificate (set Certificates)")
	}
	if slices.Contains(c.Tokens, "") {
		return fmt.Errorf("pulsartest: Config.Tokens holds an empty token")
	}
	if c.LedgerMaxEntries < 0 || c.LedgerMaxEntries > 1<<30 {
		return fmt.Errorf("pulsartest: Config.LedgerMaxEntries %d out of range [1, 1073741824] (0: the default)", c.LedgerMaxEntries)
	}
	if c.LedgerMinRollover > 24*time.Hour {
		return fmt.Errorf("pulsartest: Config.LedgerMinRollover %v over 24h", c.LedgerMinRollover)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		max  time.Duration
	}{{"LedgerMaxRollover", c.LedgerMaxRollover, 1000 * time.Hour}, {"RetentionCheckInterval", c.RetentionCheckInterval, 24 * time.Hour}} {
		if d.v != 0 && (d.v < time.Millisecond || d.v > d.max) {
			return fmt.Errorf("pulsartest: Config.%s %v out of range [1ms, %v]", d.name, d.v, d.max)
		}
	}
	if c.RetentionSizeMB < Unlimited {
		return fmt.Errorf("pulsartest: Config.RetentionSizeMB %d: want -1 (no limit), 0 (none) or a size in MB", c.RetentionSizeMB)
	}
	if c.KeySharedReorderAfterReconnect < 0 || c.KeySharedReorderAfterReconnect > 1<<24 {
		return fmt.Errorf("pulsartest: Config.KeySharedReorderAfterReconnect %d out of range [0, 16777216]", c.KeySharedReorderAfterReconnect)
	}
	for name, n := range c.Partitions {
		if n < 1 || n > 1024 {
			return fmt.Errorf("pulsartest: Config.Partitions[%q] = %d out of range [1, 1024]", name, n)
		}
		if _, err := normalizeTopic(name); err != nil {
			return fmt.Errorf("pulsartest: Config.Partitions: %v", err)
		}
	}
	return nil
}
