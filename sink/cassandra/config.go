package cassandra

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/sink"
)

// Environment variables holding credentials. They are never read from a
// flag or the URL (both end up in shell history, ps and logs).
const (
	EnvUsername = "DEMANDPIPE_CASSANDRA_USERNAME"
	EnvPassword = "DEMANDPIPE_CASSANDRA_PASSWORD"
)

// Config is where and how the sink writes. ParseURL builds one from
// cassandra://HOST1,HOST2:9042/KEYSPACE?table=features&consistency=LOCAL_QUORUM&dc=DC1&compression=snappy
// (query parameters listed on each field).
type Config struct {
	// Hosts are the contact points, "host" or "host:port". Required.
	Hosts []string
	// Port is the port of hosts given without one. Default 9042.
	Port int
	// Keyspace and Table name the feature table. Defaults "demandpipe" and
	// "features" (?table=).
	Keyspace string
	Table    string
	// State names this pipeline in the engine_state and minutes tables
	// (?state=, default: Table), so pipelines writing different feature
	// tables can share a keyspace. Two runs must never share one name:
	// the writer lease (Lease) refuses the second.
	State string
	// Definition is the feature definition the engine computes (set from
	// the run's flags, not the URL). Open stores it with the state and
	// refuses a table holding another one; Write refuses rows of another
	// width; Store reads it back for serve. Zero: nothing is stored or
	// checked, and a Store over such a table needs it set (else it takes
	// feature.Default()).
	Definition feature.Definition
	// Consistency of writes and reads (?consistency=, default LOCAL_QUORUM:
	// with replication factor 3 a write survives one replica down and a
	// LOCAL_QUORUM read sees it). It needs rf/2+1 live replicas, so a
	// one-node cluster needs rf=1; Open fails at once, saying so, when the
	// live replicas cannot meet it (or the state's LOCAL_QUORUM floor).
	Consistency string
	// LocalDC (?dc=) makes routing prefer that data centre's replicas
	// (DCAwareRoundRobinPolicy under the token-aware policy). Empty: any
	// host (RoundRobinHostPolicy), right for one data centre.
	LocalDC string
	// Compression of CQL frames (?compression=snappy|lz4|none, default
	// snappy: on our request bodies (147 B/row raw) the S2-based Snappy
	// encoder sends ~51 B/row for ~155 ns/row of client CPU, the driver's
	// lz4 ~51 B/row for ~500 ns/row (CASSANDRA.md). snappy pins protocol
	// v4: v5 frames allow only lz4.
	Compression string
	// Username and Password come from DEMANDPIPE_CASSANDRA_USERNAME and
	// DEMANDPIPE_CASSANDRA_PASSWORD, or the password from a file
	// (?password_file=). Never logged (String redacts it).
	Username, Password string
	PasswordFile       string
	// TLS turns on TLS (?tls=true; implied by ca, cert or key). CAFile
	// (?ca=) verifies the server (default: the system roots); CertFile and
	// KeyFile (?cert=, ?key=) are a client certificate. ServerName
	// (?server_name=) overrides the name verified.
	TLS                       bool
	CAFile, CertFile, KeyFile string
	ServerName                string
	// CreateSchema (?create=true) applies Schema at Open: keyspace and table
	// IF NOT EXISTS. Default false: production schemas are applied by a
	// person (`demandpipe schema cassandra`).
	CreateSchema bool
	// ReplicationFactor of a keyspace created by CreateSchema (?rf=,
	// default 3). With LocalDC set the keyspace uses
	// NetworkTopologyStrategy {LocalDC: rf}, else SimpleStrategy.
	ReplicationFactor int
	// TTL of rows (?ttl=, default 2h: the store's retention), the table's
	// default_time_to_live.
	TTL time.Duration
	// RegionResolution is the H3 resolution of the partition's region, the
	// parent of the row's cell (?region_res=, default 5: ~253 km2, 343
	// cells of resolution 8; CASSANDRA.md has the arithmetic).
	RegionResolution int
	// ConnectTimeout bounds a connection's dial and handshake (?connect_timeout=,
	// default 5s). NumConns is connections per host (?conns=, default 2).
	ConnectTimeout time.Duration
	NumConns       int
	// ReconnectInterval is how often a host marked down is dialled again
	// (default 1s; gocql's 60s would keep a node that came back idle for a
	// minute while the queue's retries run out).
	ReconnectInterval time.Duration
	// Lease (?lease=, default true) makes Open take the writer lease of
	// the state name (lease.go): a second run writing under the same
	// state= (by default: the same table) is refused, naming the holder,
	// and a run that loses the lease fails. false: no lease (a migration
	// that writes beside a run on purpose, a cluster without lightweight
	// transactions).
	Lease bool
	// LeaseTTL (?lease_ttl=, default 30s, whole seconds in 3s..1h) is how
	// long the lease outlives its last renewal; it is renewed every
	// LeaseTTL/3, and a run whose renewals have failed for LeaseTTL - 1s
	// stops (Cassandra counts TTLs in whole seconds, so the record may go
	// a second early). A crashed run's successor on another machine waits up to
	// it (the refusal says how long); a renewal may keep failing for
	// 2/3 of it (a coordinator restarting, a long pause) before the run
	// stops. 30 s: a renewal every 10 s is 0.1 lightweight transaction a
	// second (four round trips each on a real cluster), nothing beside the
	// rows, and a restart elsewhere is back within a minute.
	LeaseTTL time.Duration
	// LeaseSerial (?lease_serial=, default LOCAL_SERIAL) is the serial
	// consistency of the lease's transactions: LOCAL_SERIAL needs a
	// quorum of the local data centre's replicas, SERIAL of all of them.
	// Runs that may start in different data centres need SERIAL, else each
	// could take the lease in its own.
	LeaseSerial string
	// Queue holds the write queue's knobs (-sink.writers, -sink.batch-rows,
	// ...); flags, not URL parameters.
	Queue sink.QueueConfig
}

// Defaults for Config.
const (
	DefaultPort              = 9042
	DefaultKeyspace          = "demandpipe"
	DefaultTable             = "features"
	DefaultConsistency       = "LOCAL_QUORUM"
	DefaultCompression       = "snappy"
	DefaultReplicationFactor = 3
	DefaultTTL               = 2 * time.Hour
	DefaultRegionResolution  = 5
	DefaultConnectTimeout    = 5 * time.Second
	DefaultNumConns          = 2
	DefaultReconnectInterval = time.Second
	DefaultLeaseTTL          = 30 * time.Second
	DefaultLeaseSerial       = "LOCAL_SERIAL"
)

// DefaultConfig returns the defaults (no hosts).
func DefaultConfig() Config {
	return Config{
		Port: DefaultPort, Keyspace: DefaultKeyspace, Table: DefaultTable,
		Consistency: DefaultConsistency, Compression: DefaultCompression,
		ReplicationFactor: DefaultReplicationFactor, TTL: DefaultTTL,
		RegionResolution: DefaultRegionResolution, ConnectTimeout: DefaultConnectTimeout,
		NumConns: DefaultNumConns, ReconnectInterval: DefaultReconnectInterval,
		Lease: true, LeaseTTL: DefaultLeaseTTL, LeaseSerial: DefaultLeaseSerial,
		Queue: sink.DefaultQueueConfig(),
	}
}

// ParseURL parses a cassandra:// URL over DefaultConfig and reads
// credentials from the environment or the password file.
func ParseURL(raw string) (Config, error) {
	return ParseURLInto(DefaultConfig(), raw)
}

// ParseURLInto parses a cassandra:// URL over base (which carries the
// queue's flags) and reads credentials.
func ParseURLInto(base Config, raw string) (Config, error) {
	c := base
	u, err := url.Parse(raw)
	if err != nil {
		// url's error quotes the URL; ours names the parameter instead.
		return c, fmt.Errorf("sink cassandra: cannot parse the URL: want cassandra://HOST[,HOST...][:PORT]/KEYSPACE?table=...")
	}
	if u.Scheme != "cassandra" {
		return c, fmt.Errorf("sink cassandra: scheme %q: want cassandra://HOST[,HOST...][:PORT]/KEYSPACE", u.Scheme)
	}
	if u.User != nil {
		return c, fmt.Errorf("sink cassandra: credentials in the URL are refused: set %s and %s, or password_file=", EnvUsername, EnvPassword)
	}
	if u.Host == "" {
		return c, errors.New("sink cassandra: no host: want cassandra://HOST[,HOST...][:PORT]/KEYSPACE")
	}
	c.Hosts = nil
	for _, h := range strings.Split(u.Host, ",") {
		c.Hosts = append(c.Hosts, strings.TrimSpace(h))
	}
	if ks := strings.Trim(u.Path, "/"); ks != "" {
		c.Keyspace = ks
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return c, fmt.Errorf("sink cassandra: URL parameters: %v", err)
	}
	for key, vals := range query {
		v := vals[len(vals)-1]
		bad := func(want string) error {
			return fmt.Errorf("sink cassandra: %s=%q: want %s", key, v, want)
		}
		switch key {
		case "table":
			c.Table = v
		case "state":
			c.State = v
		case "consistency":
			c.Consistency = strings.ToUpper(v)
		case "dc":
			c.LocalDC = v
		case "compression":
			c.Compression = strings.ToLower(v)
		case "password_file":
			c.PasswordFile = v
		case "tls":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return c, bad("true or false")
			}
			c.TLS = b
		case "ca":
			c.CAFile, c.TLS = v, true
		case "cert":
			c.CertFile, c.TLS = v, true
		case "key":
			c.KeyFile, c.TLS = v, true
		case "server_name":
			c.ServerName = v
		case "create":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return c, bad("true or false")
			}
			c.CreateSchema = b
		case "rf":
			n, err := strconv.Atoi(v)
			if err != nil {
				return c, bad("an integer")
			}
			c.ReplicationFactor = n
		case "ttl":
			d, err := time.ParseDuration(v)
			if err != nil {
				return c, bad("a duration, e.g. 2h")
			}
			c.TTL = d
		case "region_res":
			n, err := strconv.Atoi(v)
			if err != nil {
				return c, bad("an integer")
			}
			c.RegionResolution = n
		case "connect_timeout":
			d, err := time.ParseDuration(v)
			if err != nil {
				return c, bad("a duration, e.g. 5s")
			}
			c.ConnectTimeout = d
		case "conns":
			n, err := strconv.Atoi(v)
			if err != nil {
				return c, bad("an integer")
			}
			c.NumConns = n
		case "lease":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return c, bad("true or false")
			}
			c.Lease = b
		case "lease_ttl":
			d, err := time.ParseDuration(v)
			if err != nil {
				return c, bad("a duration, e.g. 30s")
			}
			c.LeaseTTL = d
		case "lease_serial":
			c.LeaseSerial = strings.ToUpper(v)
		case "username", "password", "user", "pass":
			return c, fmt.Errorf("sink cassandra: %s= in the URL is refused: set %s and %s, or password_file=", key, EnvUsername, EnvPassword)
		default:
			return c, fmt.Errorf("sink cassandra: unknown URL parameter %q (known: table, state, consistency, dc, compression, tls, ca, cert, key, server_name, password_file, create, rf, ttl, region_res, connect_timeout, conns, lease, lease_ttl, lease_serial)", key)
		}
	}
	if err := c.readCredentials(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// readCredentials fills Username and Password from the environment and the
// password file (which wins over the environment's password).
func (c *Config) readCredentials() error {
	if u := os.Getenv(EnvUsername); u != "" {
		c.Username = u
	}
	if p := os.Getenv(EnvPassword); p != "" {
		c.Password = p
	}
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			// The path is not secret; the content never appears.
			return fmt.Errorf("sink cassandra: password_file: %w", err)
		}
		c.Password = strings.TrimRight(string(b), "\r\n")
	}
	if c.Password != "" && c.Username == "" {
		return fmt.Errorf("sink cassandra: a password without a user name: set %s", EnvUsername)
	}
	return nil
}

// Validate reports the first out-of-range field.
func (c Config) Validate() error {
	if len(c.Hosts) == 0 {
		return errors.New("sink cassandra: no hosts")
	}
	for _, h := range c.Hosts {
		if h == "" {
			return errors.New("sink cassandra: an empty host in the host list")
		}
		if strings.Contains(h, ":") {
			if _, p, err := net.SplitHostPort(h); err != nil {
				return fmt.Errorf("sink cassandra: host %q: %v", h, err)
			} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("sink cassandra: host %q: port must be in 1..65535", h)
			}
		}
	}
	switch {
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("sink cassandra: port %d: must be in 1..65535", c.Port)
	case !validIdent(c.Keyspace):
		return fmt.Errorf("sink cassandra: keyspace %q: want 1..48 letters, digits or _, starting with a letter", c.Keyspace)
	case !validIdent(c.Table):
		return fmt.Errorf("sink cassandra: table=%q: want 1..48 letters, digits or _, starting with a letter", c.Table)
	case c.Table == StateTable || c.Table == MinutesTable:
		return fmt.Errorf("sink cassandra: table=%q: the name of a state table; choose another", c.Table)
	case c.State != "" && !validIdent(c.State):
		return fmt.Errorf("sink cassandra: state=%q: want 1..48 letters, digits or _, starting with a letter", c.State)
	case c.Compression != "snappy" && c.Compression != "lz4" && c.Compression != "none":
		return fmt.Errorf("sink cassandra: compression=%q: want snappy, lz4 or none", c.Compression)
	case c.ReplicationFactor < 1 || c.ReplicationFactor > 10:
		return fmt.Errorf("sink cassandra: rf=%d: must be in 1..10", c.ReplicationFactor)
	case c.TTL < time.Minute || c.TTL > 365*24*time.Hour || c.TTL%time.Second != 0:
		return fmt.Errorf("sink cassandra: ttl=%v: must be whole seconds in 1m..8760h", c.TTL)
	case c.RegionResolution < 0 || c.RegionResolution > 15:
		return fmt.Errorf("sink cassandra: region_res=%d: must be in 0..15", c.RegionResolution)
	case c.ConnectTimeout <= 0 || c.ConnectTimeout > 5*time.Minute:
		return fmt.Errorf("sink cassandra: connect_timeout=%v: must be in (0, 5m]", c.ConnectTimeout)
	case c.NumConns < 1 || c.NumConns > 64:
		return fmt.Errorf("sink cassandra: conns=%d: must be in 1..64", c.NumConns)
	case c.ReconnectInterval <= 0:
		return fmt.Errorf("sink cassandra: ReconnectInterval %v: must be > 0", c.ReconnectInterval)
	case (c.CertFile == "") != (c.KeyFile == ""):
		return errors.New("sink cassandra: cert= and key= go together (a client certificate and its key)")
	case c.LocalDC != "" && !validDC(c.LocalDC):
		return fmt.Errorf("sink cassandra: dc=%q: want letters, digits, '_' or '-'", c.LocalDC)
	case c.Lease && (c.LeaseTTL < 3*time.Second || c.LeaseTTL > time.Hour || c.LeaseTTL%time.Second != 0):
		return fmt.Errorf("sink cassandra: lease_ttl=%v: must be whole seconds in 3s..1h", c.LeaseTTL)
	case c.Lease && c.LeaseSerial != "SERIAL" && c.LeaseSerial != "LOCAL_SERIAL":
		return fmt.Errorf("sink cassandra: lease_serial=%q: want LOCAL_SERIAL or SERIAL", c.LeaseSerial)
	}
	if _, err := gocql.ParseConsistencyWrapper(c.Consistency); err != nil {
		return fmt.Errorf("sink cassandra: consistency=%q: want ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM or LOCAL_ONE", c.Consistency)
	}
	if c.Definition.Rings != nil {
		if err := c.Definition.Validate(); err != nil {
			return fmt.Errorf("sink cassandra: definition: %w", err)
		}
	}
	if err := c.Queue.Validate(); err != nil {
		return fmt.Errorf("sink cassandra: %w", err)
	}
	return nil
}

// StateName is the pipeline's name in the state tables: State, or Table.
func (c Config) StateName() string {
	if c.State != "" {
		return c.State
	}
	return c.Table
}

// definition is Definition, or the default when unset.
func (c Config) definition() feature.Definition {
	if c.Definition.Rings == nil {
		return feature.Default()
	}
	return c.Definition
}

// String describes c without its password.
func (c Config) String() string {
	auth := "none"
	if c.Username != "" {
		auth = "user " + c.Username + " (password set)"
	}
	lease := "off"
	if c.Lease {
		lease = c.LeaseTTL.String() + " " + c.LeaseSerial
	}
	return fmt.Sprintf("cassandra hosts=%s keyspace=%s table=%s consistency=%s dc=%q compression=%s tls=%t auth=%s writers=%d batch-rows=%d lease=%s",
		strings.Join(c.Hosts, ","), c.Keyspace, c.Table, c.Consistency, c.LocalDC, c.Compression, c.TLS, auth, c.Queue.Writers, c.Queue.BatchRows, lease)
}

// GoString keeps %#v from printing the password too.
func (c Config) GoString() string { return c.String() }

func validIdent(s string) bool {
	if len(s) == 0 || len(s) > 48 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case (r >= '0' && r <= '9' || r == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

func validDC(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return len(s) > 0 && len(s) <= 64
}

// TLSConfig builds the client TLS configuration (nil when TLS is off).
func (c Config) TLSConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("sink cassandra: ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("sink cassandra: ca %s: no PEM certificate in it", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("sink cassandra: cert/key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
