package cqltest

import (
	"fmt"
	"net"
	"time"
)

// Config configures a Server. The zero value of every field means its default.
type Config struct {
	// Addr is the TCP address to listen on. Default "127.0.0.1:0": a free port,
	// read back with Server.Addr. With Nodes > 1 it is node 0's, and node i
	// listens on the next i-th IPv4 address at the same port (127.0.0.1,
	// 127.0.0.2, 127.0.0.3: the loopback network is 127/8), as ccm lays
	// out a local cluster, so drivers that know only system.peers (no port)
	// reach every node; Server.Addrs lists them.
	Addr string
	// Nodes is the number of nodes, each its own listener sharing one
	// store: each answers system.local with its own host_id, address and
	// Murmur3 token (evenly spaced, nodeTokens) and lists the others in
	// system.peers and system.peers_v2, so drivers build a token ring and
	// route by it. Replicas of a partition are the next replication-factor
	// nodes clockwise from its key's token (ring.go); Stats.Nodes counts,
	// per node, the writes it coordinated as a replica or not. Default 1:
	// one node, token 0, no peers.
	//
	// Each node owns one token (num_tokens: 1, the initial_token layout of
	// ccm and of the DataStax "Generating tokens" page), not Cassandra's
	// vnodes (cassandra.yaml's num_tokens: 16 from 4.0, 256 before, with
	// allocate_tokens_for_local_replication_factor: 3): the drivers walk
	// the ring the same way for either, and three ranges keep it legible.
	Nodes int
	// Latency is the service time added to every statement (QUERY, EXECUTE and
	// BATCH) on a non-system keyspace. Requests sleep in parallel, so a client
	// with N requests in flight sees a throughput of N/Latency. Default 0. It can
	// be changed while running with Server.SetLatency.
	Latency time.Duration
	// ClusterName, DataCenter and Rack appear in system.local. Defaults
	// "cqltest", "datacenter1", "rack1" (Cassandra's own defaults for the last two,
	// so DC-aware policies with default settings match).
	ClusterName string
	DataCenter  string
	Rack        string
	// LiveNodes is how many nodes of the cluster the double stands for are
	// up, all in DataCenter. A keyspace's live replicas are min(its
	// replication factor there, LiveNodes), and a read or write at a
	// consistency level needing more gets UNAVAILABLE, as from Cassandra
	// (consistency.go). Default 1, a single real node: there a keyspace
	// with replication_factor 3 fails LOCAL_QUORUM (required 2, alive 1),
	// so tests of a client's defaults see what a one-node cluster does.
	// Clients still reach only this node (system.peers stays empty); the
	// others hold no data and count only for consistency. Server.SetLiveNodes
	// changes it while running (a node dies, comes back).
	//
	// With Nodes > 1 the cluster is those nodes: LiveNodes is at most
	// Nodes (default Nodes), nodes 0..LiveNodes-1 are up, and a
	// partition's live replicas are those of its replicas that are up. A
	// node that is down for this count still answers clients (use Down to
	// stop listening).
	LiveNodes int
	// ReleaseVersion is system.local.release_version. Default "4.0.11": drivers
	// then query system_schema and try system.peers_v2, as with Cassandra 4.
	ReleaseVersion string
	// CQLVersion is advertised in SUPPORTED and system.local. Default "3.4.5".
	CQLVersion string
	// MaxFrameBytes bounds a request frame body, compressed or not, and the
	// declared size of a decompressed body. Default 256 MiB, Cassandra 3's
	// native_transport_max_frame_size; 16 MiB (Cassandra 4's default) would also
	// do for drivers but not for tests that send large batches on purpose.
	MaxFrameBytes int
	// TombstoneWarnThreshold and TombstoneFailureThreshold bound the
	// tombstones (expired or deleted cells, row and range deletions) one
	// read of a user table may pass: past the first the answer carries a
	// warning, past the second the read fails with READ_FAILURE (0x1300,
	// reason READ_TOO_MANY_TOMBSTONES). Defaults 1,000 and 100,000,
	// Cassandra's tombstone_warn_threshold and tombstone_failure_threshold
	// (conf/cassandra.yaml).
	TombstoneWarnThreshold    int
	TombstoneFailureThreshold int
	// PurgeTombstones purges a tombstone (or an expired cell)
	// gc_grace_seconds after its deletion time (its expiry), as if a
	// compaction then took every sstable holding its partition. Default
	// false: kept and counted by reads for ever, as on a partition written
	// to all the time (a queue, a time series under one key), whose
	// sstables all overlap so that only a major compaction could purge
	// them (db/compaction/CompactionController.java purge evaluator).
	PurgeTombstones bool
	// Seed seeds the random choice of which statements fail when faults are
	// injected with a rate. Default 1, so runs are repeatable.
	Seed uint64
	// Now is the clock of TTLs, tombstones' ages and the write timestamps
	// the server assigns. Default time.Now.
	Now func() time.Time
	// Logf, when set, receives one line per connection event and protocol error.
	Logf func(format string, args ...any)
}

// Defaults for Config.
const (
	DefaultAddr           = "127.0.0.1:0"
	DefaultClusterName    = "cqltest"
	DefaultDataCenter     = "datacenter1"
	DefaultRack           = "rack1"
	DefaultNodes          = 1
	MaxNodes              = 64
	DefaultLiveNodes      = 1 // with Nodes > 1: Nodes
	MaxLiveNodes          = 1000
	DefaultReleaseVersion = "4.0.11"
	DefaultCQLVersion     = "3.4.5"
	DefaultMaxFrameBytes  = 256 << 20

	DefaultTombstoneWarnThreshold    = 1000
	DefaultTombstoneFailureThreshold = 100000
)

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.ClusterName == "" {
		c.ClusterName = DefaultClusterName
	}
	if c.DataCenter == "" {
		c.DataCenter = DefaultDataCenter
	}
	if c.Rack == "" {
		c.Rack = DefaultRack
	}
	if c.Nodes == 0 {
		c.Nodes = DefaultNodes
	}
	if c.LiveNodes == 0 {
		c.LiveNodes = DefaultLiveNodes
		if c.Nodes > 1 {
			c.LiveNodes = c.Nodes
		}
	}
	if c.ReleaseVersion == "" {
		c.ReleaseVersion = DefaultReleaseVersion
	}
	if c.CQLVersion == "" {
		c.CQLVersion = DefaultCQLVersion
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.TombstoneWarnThreshold == 0 {
		c.TombstoneWarnThreshold = DefaultTombstoneWarnThreshold
	}
	if c.TombstoneFailureThreshold == 0 {
		c.TombstoneFailureThreshold = DefaultTombstoneFailureThreshold
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first out-of-range field.
func (c Config) Validate() error {
	c = c.withDefaults()
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("cqltest: Config.Addr %q: want host:port: %v", c.Addr, err)
	}
	if c.Latency < 0 || c.Latency > time.Minute {
		return fmt.Errorf("cqltest: Config.Latency %v: want 0..1m", c.Latency)
	}
	if c.LiveNodes < 1 || c.LiveNodes > MaxLiveNodes {
		return fmt.Errorf("cqltest: Config.LiveNodes %d: want 1..%d (this node is one of them)", c.LiveNodes, MaxLiveNodes)
	}
	if err := c.validateNodes(); err != nil {
		return err
	}
	if c.TombstoneWarnThreshold < 0 || c.TombstoneFailureThreshold < 0 {
		return fmt.Errorf("cqltest: Config.TombstoneWarnThreshold %d, TombstoneFailureThreshold %d: want >= 0 (0: the default)", c.TombstoneWarnThreshold, c.TombstoneFailureThreshold)
	}
	if c.MaxFrameBytes < 1<<10 || c.MaxFrameBytes > 1<<30 {
		return fmt.Errorf("cqltest: Config.MaxFrameBytes %d: want 1 KiB..1 GiB", c.MaxFrameBytes)
	}
	return nil
}

// validateNodes checks Nodes and, with more than one, that LiveNodes fits
// and that Addr leaves room for node i's address (Addr's IP + i).
func (c Config) validateNodes() error {
	if c.Nodes < 1 || c.Nodes > MaxNodes {
		return fmt.Errorf("cqltest: Config.Nodes %d: want 1..%d", c.Nodes, MaxNodes)
	}
	if c.Nodes == 1 {
		return nil
	}
	if c.LiveNodes > c.Nodes {
		return fmt.Errorf("cqltest: Config.LiveNodes %d: want 1..%d (Config.Nodes)", c.LiveNodes, c.Nodes)
	}
	host, _, _ := net.SplitHostPort(c.Addr)
	ip := net.ParseIP(host).To4()
	if ip == nil || ip.IsUnspecified() || int(ip[3])+c.Nodes-1 > 254 {
		return fmt.Errorf("cqltest: Config.Addr %q: with Config.Nodes %d want an IPv4 address whose last byte + %d stays below 255 (node i listens on that address + i), e.g. 127.0.0.1:9042", c.Addr, c.Nodes, c.Nodes-1)
	}
	return nil
}
