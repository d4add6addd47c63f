// Package conn is the one connection to Apache Pulsar: the service URL and
// its settings (ParseURL, ParseTopic, ParseService), the timeouts, the
// token (from env DEMANDPIPE_PULSAR_TOKEN or token-file=), TLS, and a
// client that says at once when the broker refuses the credentials or TLS
// fails (Dial). The Pulsar source (package pulsar), `demandpipe publish`
// and the scale-out roles (`run -role=`, package scaleout) all connect
// through it, so a setting means the same everywhere.
package conn

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/demandpipe/demandpipe/internal/redact"
)

// SettingsHelp documents the connection's settings, the query of a
// pulsar:// URL (the Pulsar source's help includes it).
const SettingsHelp = `  connect-timeout=D    TCP connect timeout (default 10s)
  operation-timeout=D  lookups, subscribe and other requests (default 30s)
  token-file=PATH      JWT token for authentication (or env DEMANDPIPE_PULSAR_TOKEN)
  tls-ca-file=PATH     CA certificates to trust (pulsar+ssl://)
  tls-allow-insecure=true  accept any server certificate (tests only)
                       (a token the broker refuses or a certificate not trusted ends the
                       run at once, saying which setting to fix)`

// TokenEnv is the environment variable holding a token.
const TokenEnv = "DEMANDPIPE_PULSAR_TOKEN"

// Config is a client's connection: the broker, the topic, how long to wait
// and the credentials. ParseURL fills it from a pulsar:// URL; every field
// has a documented default and Validate names the field and its range.
type Config struct {
	// ServiceURL: pulsar://HOST:PORT or pulsar+ssl://HOST:PORT.
	ServiceURL string
	// Topic: the full topic name, persistent://TENANT/NS/TOPIC.
	Topic string
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
}

// DefaultConfig has every default set; ServiceURL and Topic remain to be
// given.
func DefaultConfig() Config {
	return Config{ConnectTimeout: 10 * time.Second, OperationTimeout: 30 * time.Second}
}

// TopicName is the full name of topic: a short name is
// persistent://public/default/NAME.
func TopicName(topic string) string {
	if topic != "" && !strings.Contains(topic, "://") {
		return "persistent://public/default/" + topic
	}
	return topic
}

// ParseURL reads "pulsar://HOST:PORT/TOPIC?k=v&..." (or pulsar+ssl://)
// into a config with defaults for what is not given, the token from env
// DEMANDPIPE_PULSAR_TOKEN. It takes the connection's settings and returns
// the others (a consumer's, for the caller to read or refuse). It does not
// validate: call Validate.
func ParseURL(spec string) (Config, url.Values, error) {
	c := DefaultConfig()
	scheme, rest, ok := strings.Cut(spec, "://")
	if !ok || (scheme != "pulsar" && scheme != "pulsar+ssl") {
		return c, nil, fmt.Errorf("pulsar %q: want pulsar://HOST:PORT/persistent://TENANT/NS/TOPIC (or pulsar+ssl://)", redact.URL(spec))
	}
	rest, query, _ := strings.Cut(rest, "?")
	host, topic, _ := strings.Cut(rest, "/")
	if strings.Contains(host, "@") {
		return c, nil, fmt.Errorf("pulsar %q: credentials in the URL are refused (they would end up in logs and shell history): put the token in env %s or in a file (token-file=PATH)", redact.URL(spec), TokenEnv)
	}
	if host == "" {
		return c, nil, fmt.Errorf("pulsar %q: no HOST:PORT after %s://", redact.URL(spec), scheme)
	}
	if !strings.Contains(host, ":") {
		host += ":6650"
		if scheme == "pulsar+ssl" {
			host = strings.TrimSuffix(host, ":6650") + ":6651"
		}
	}
	c.ServiceURL = scheme + "://" + host
	c.Topic = TopicName(topic)
	q, err := url.ParseQuery(query)
	if err != nil {
		return c, nil, fmt.Errorf("pulsar %q: query: %v", redact.URL(spec), err)
	}
	others := url.Values{}
	for k, vs := range q {
		v := vs[len(vs)-1]
		var err error
		switch k {
		case "connect-timeout":
			c.ConnectTimeout, err = time.ParseDuration(v)
		case "operation-timeout":
			c.OperationTimeout, err = time.ParseDuration(v)
		case "token-file":
			c.TokenFile = v
		case "token":
			err = fmt.Errorf("a token in the URL would end up in logs: put it in env %s or in a file (token-file=PATH)", TokenEnv)
			v = redact.Redacted // the refusal must not print the secret it refuses
		case "tls-ca-file":
			c.TLSCAFile = v
		case "tls-allow-insecure":
			c.TLSAllowInsecure, err = strconv.ParseBool(v)
		default:
			others[k] = vs
		}
		if err != nil {
			return c, nil, fmt.Errorf("pulsar: %s=%q: %v\n%s", k, v, err, SettingsHelp)
		}
	}
	c.Token = os.Getenv(TokenEnv)
	return c, others, nil
}

// ParseTopic parses a topic URL with only the connection's settings, as
// `publish -to` takes it: pulsar[+ssl]://HOST[:PORT]/TOPIC[?k=v...].
func ParseTopic(spec string) (Config, error) {
	c, others, err := ParseURL(spec)
	if err != nil {
		return c, err
	}
	return c, onlySettings(spec, others)
}

// ParseService parses a connection without a topic, as `run
// -scaleout.url` takes it: pulsar[+ssl]://HOST[:PORT][?k=v...] with only
// the connection's settings (the token may also come from env
// DEMANDPIPE_PULSAR_TOKEN). The caller sets Topic.
func ParseService(spec string) (Config, error) {
	rest, _, _ := strings.Cut(spec, "?")
	if _, after, ok := strings.Cut(rest, "://"); ok && strings.Contains(after, "/") {
		return DefaultConfig(), fmt.Errorf("pulsar %q: a service URL has no topic: want pulsar://HOST:PORT[?token-file=PATH&tls-ca-file=PATH] (pulsar+ssl:// for TLS)", redact.URL(spec))
	}
	return ParseTopic(spec)
}

// onlySettings refuses the first (in name order) of others, settings that
// are not the connection's.
func onlySettings(spec string, others url.Values) error {
	if len(others) == 0 {
		return nil
	}
	k := slices.Min(slices.Collect(maps.Keys(others)))
	return fmt.Errorf("pulsar %q: %s= is not a connection setting: want token-file, tls-ca-file, tls-allow-insecure, connect-timeout or operation-timeout", redact.URL(spec), k)
}

// Validate checks what a client needs: the service URL, topic, timeouts
// and credentials.
func (c *Config) Validate() error {
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
		return fmt.Errorf("pulsar: both env %s and token-file= are set: keep one", TokenEnv)
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
