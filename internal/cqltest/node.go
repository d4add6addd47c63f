package cqltest

import (
	"crypto/md5"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync/atomic"

	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// node is one node of the double's cluster (Config.Nodes): a listener, its
// identity in the system tables, and its share of Stats. Every node serves
// the same store; what differs is what its system.local and system.peers
// say, and whether it is a replica of the partitions it is asked to write.
type node struct {
	idx    int
	token  int64
	hostID []byte
	addr   *net.TCPAddr // bound at Start; Up listens here again after Down
	ln     net.Listener // nil while down; guarded by Server.mu

	// local, peers and peersV2 are this node's system.local, system.peers
	// and system.peers_v2 (node 0's are the store's own tables), rewritten
	// by refreshSystem.
	local, peers, peersV2 *table

	requests atomic.Int64
	writes   routeCounts // every single-partition write
	batches  routeCounts // the BATCH messages among them
}

// routeCounts count writes by the coordinator's part in their partition.
type routeCounts struct{ replica, primary, nonReplica atomic.Int64 }

// NodeStats is one node's share of the work (Stats.Nodes).
type NodeStats struct {
	// Addr is the node's host:port; HostID its system.local host_id; Token
	// its one Murmur3 token.
	Addr   string
	HostID string
	Token  int64
	// Requests counts the QUERY, EXECUTE, BATCH and PREPARE messages it
	// served.
	Requests int64
	// ReplicaWrites counts the writes this node coordinated as a replica
	// of their partition: INSERT, UPDATE and DELETE statements on a user
	// keyspace, and BATCHes whose statements all write one partition (one
	// keyspace, one token), each once. PrimaryWrites are those of them where
	// it was the partition's primary replica (the owner of the token's
	// range, the first of its replicas). NonReplicaWrites counts those it
	// coordinated without being a replica: on a real cluster each costs
	// an extra hop, which a token-aware driver avoids. Writes spanning
	// several partitions, and those on keyspaces of unknown replication,
	// are in neither.
	ReplicaWrites    int64
	PrimaryWrites    int64
	NonReplicaWrites int64
	// ReplicaBatches, PrimaryBatches and NonReplicaBatches are the BATCH
	// messages among those writes, counted the same way: a driver that
	// routes a batch to its primary replica only (gocql without the
	// batch's keyspace) shows PrimaryBatches == ReplicaBatches.
	ReplicaBatches    int64
	PrimaryBatches    int64
	NonReplicaBatches int64
}

// newNodes builds the nodes of cfg, not yet listening.
func newNodes(cfg Config) []*node {
	tokens := nodeTokens(cfg.Nodes)
	nodes := make([]*node, cfg.Nodes)
	for i := range nodes {
		name := "cqltest-host/" + cfg.ClusterName
		if i > 0 {
			name += "/" + strconv.Itoa(i) // node 0 keeps the one-node id
		}
		id := md5.Sum([]byte(name))
		id[6] = id[6]&0x0f | 0x30 // a version-3 (name based) UUID
		id[8] = id[8]&0x3f | 0x80
		nodes[i] = &node{idx: i, token: tokens[i], hostID: id[:]}
	}
	return nodes
}

// listen binds every node: node 0 on Config.Addr, node i on Addr's IPv4
// address + i at the same port. With port 0 the port is node 0's free
// one, tried again (up to 10 times) when another node's address has it
// taken.
func (s *Server) listen() error {
	if len(s.nodes) == 1 {
		ln, err := net.Listen("tcp", s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("cqltest: listen: %w", err)
		}
		s.nodes[0].ln, s.nodes[0].addr = ln, ln.Addr().(*net.TCPAddr)
		return nil
	}
	host, port, _ := net.SplitHostPort(s.cfg.Addr)
	base := net.ParseIP(host).To4()
	var err error
	for range 10 {
		var lns []net.Listener
		if lns, err = listenRun(base, port, len(s.nodes)); err == nil {
			for i, ln := range lns {
				s.nodes[i].ln, s.nodes[i].addr = ln, ln.Addr().(*net.TCPAddr)
			}
			return nil
		}
		if port != "0" {
			break
		}
	}
	return fmt.Errorf("cqltest: listen: %w", err)
}

// listenRun listens on n consecutive IPv4 addresses from base, at port or,
// for "0", at the port the first one got.
func listenRun(base net.IP, port string, n int) ([]net.Listener, error) {
	lns := make([]net.Listener, 0, n)
	for i := range n {
		ip := net.IPv4(base[0], base[1], base[2], base[3]+byte(i))
		ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), port))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
		port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	}
	return lns, nil
}

// ip is the address the node announces: its own, or loopback when it
// listens on every address.
func (n *node) ip() net.IP {
	ip := n.addr.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
	}
	return ip
}

// Addrs lists every node's listening address, host:port, node 0 (Addr)
// first.
func (s *Server) Addrs() []string {
	out := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = n.addr.String()
	}
	return out
}

// Replicas lists the addresses (host:port) of the nodes holding the
// partition of keyspace with the given partition key components (each the
// value as the protocol carries it), primary replica first, then clockwise
// round the ring, as Cassandra places them.
func (s *Server) Replicas(keyspace string, partitionKey ...[]byte) ([]string, error) {
	p, err := s.store.placementOf(keyspace)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("cqltest: keyspace " + keyspace + " has no replication the double places (LocalStrategy or unknown)")
	}
	prim := primary(s.tokens, murmur3Token(routingKey(partitionKey)))
	rf := p.replicaCount(s.cfg.DataCenter, len(s.nodes))
	out := make([]string, rf)
	for j := range rf {
		out[j] = s.nodes[(prim+j)%len(s.nodes)].addr.String()
	}
	return out, nil
}

// assureLive returns UNAVAILABLE when cl needs more live replicas of t's
// keyspace than there are (consistency.go); nil for the system tables. pks
// are the partitions the statement touches, nil for a scan of every token
// range: with a ring, each must find enough of its own replicas up.
func (s *Server) assureLive(t *table, cl primitive.ConsistencyLevel, pks [][][]byte) error {
	p := t.placement
	if p == nil {
		return nil
	}
	live := int(s.live.Load())
	if len(s.nodes) == 1 {
		return p.check(cl, p.liveReplicas(s.cfg.DataCenter, live), s.cfg.DataCenter)
	}
	alive := math.MaxInt
	if pks == nil {
		for prim := range s.nodes {
			alive = min(alive, s.liveOf(p, prim, live))
		}
	}
	for _, pk := range pks {
		alive = min(alive, s.liveOf(p, primary(s.tokens, murmur3Token(routingKey(pk))), live))
	}
	if alive == math.MaxInt {
		return nil // no partition (an empty IN)
	}
	return p.check(cl, alive, s.cfg.DataCenter)
}

// liveOf is how many replicas of a partition whose primary is node prim
// are up: nodes 0..live-1 are.
func (s *Server) liveOf(p *placement, prim, live int) int {
	n := len(s.nodes)
	k := 0
	for j := range p.replicaCount(s.cfg.DataCenter, n) {
		if (prim+j)%n < live {
			k++
		}
	}
	return k
}

// countWrite counts a write of the partitions pks of t coordinated by c's
// node (NodeStats); c is nil for Server.Exec, which no node coordinates.
func (s *Server) countWrite(c *conn, t *table, pks [][][]byte) {
	if c == nil || t.placement == nil || len(pks) != 1 {
		return
	}
	s.countToken(c.node, t.placement, murmur3Token(routingKey(pks[0])), false)
}

// countToken counts a write of token coordinated by node n, in its
// batches too when batch.
func (s *Server) countToken(n *node, p *placement, token int64, batch bool) {
	prim := primary(s.tokens, token)
	count := func(rc *routeCounts) {
		switch {
		case !isReplica(n.idx, prim, p.replicaCount(s.cfg.DataCenter, len(s.nodes)), len(s.nodes)):
			rc.nonReplica.Add(1)
		case n.idx == prim:
			rc.primary.Add(1)
			rc.replica.Add(1)
		default:
			rc.replica.Add(1)
		}
	}
	count(&n.writes)
	if batch {
		count(&n.batches)
	}
}

// countBatch counts a batch of mutations coordinated by c's node when they
// all write one partition of one keyspace.
func (s *Server) countBatch(c *conn, muts []*mutation) {
	if c == nil || len(muts) == 0 || muts[0].t.placement == nil {
		return
	}
	var token int64
	for i, m := range muts {
		if len(m.pks) != 1 || m.t.ks != muts[0].t.ks {
			return
		}
		tk := murmur3Token(routingKey(m.pks[0]))
		if i > 0 && tk != token {
			return
		}
		token = tk
	}
	s.countToken(c.node, muts[0].t.placement, token, true)
}

// nodeStats is Stats.Nodes.
func (s *Server) nodeStats() []NodeStats {
	out := make([]NodeStats, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = NodeStats{
			Addr: n.addr.String(), HostID: formatUUID(n.hostID), Token: n.token,
			Requests:      n.requests.Load(),
			ReplicaWrites: n.writes.replica.Load(), PrimaryWrites: n.writes.primary.Load(),
			NonReplicaWrites: n.writes.nonReplica.Load(),
			ReplicaBatches:   n.batches.replica.Load(), PrimaryBatches: n.batches.primary.Load(),
			NonReplicaBatches: n.batches.nonReplica.Load(),
		}
	}
	return out
}

func (s *Server) resetNodeStats() {
	for _, n := range s.nodes {
		n.requests.Store(0)
		for _, rc := range []*routeCounts{&n.writes, &n.batches} {
			rc.replica.Store(0)
			rc.primary.Store(0)
			rc.nonReplica.Store(0)
		}
	}
}

// formatUUID writes a 16-byte UUID in its 8-4-4-4-12 form.
func formatUUID(b []byte) string {
	h := hexID(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
