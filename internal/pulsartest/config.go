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

	// MaxReplay bounds how many entries a Key_Shared subscription may park
	// for later (because the consumer owning their key has no permits)
	// before it stops reading ahead. Default 10000. Range 1 .. 1<<24.
	MaxReplay int

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

	// Logf, if set, receives one line per connection event and protocol
	// error. Default: silent.
	Logf func(format string, args ...any)
}

// FramePadding is the room allowed above MaxMessageSize for the command and
// message metadata in a frame, the same 10 KiB the Go client allows.
const FramePadding = 10 << 10

const (
	defaultMaxMessageSize = 5 << 20
	defaultProtocol       = 20
	defaultMaxReplay      = 10000

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
	if c.MaxReplay == 0 {
		c.MaxReplay = defaultMaxReplay
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
	if c.MaxReplay < 0 || c.MaxReplay > 1<<24 {
		return fmt.Errorf("pulsartest: Config.MaxReplay %d out of range [1, 16777216]", c.MaxReplay)
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
