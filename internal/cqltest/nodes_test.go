package cqltest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// query runs one QUERY at ONE on a started raw connection and returns its
// rows.
func (c *rawClient) query(stream int16, q string) [][][]byte {
	c.t.Helper()
	c.send(stream, &message.Query{Query: q, Options: &message.QueryOptions{Consistency: primitive.ConsistencyLevelOne}}, false)
	f := c.recv()
	rows, ok := f.Body.Message.(*message.RowsResult)
	if !ok {
		c.t.Fatalf("%s: %v", q, f.Body.Message)
	}
	out := make([][][]byte, len(rows.Data))
	for i, r := range rows.Data {
		out[i] = r
	}
	return out
}

// decodeTextSet decodes a set<text> cell (v3+: int32 count, then int32
// length and bytes for each element).
func decodeTextSet(t *testing.T, b []byte) []string {
	t.Helper()
	if len(b) < 4 {
		t.Fatalf("set cell %x", b)
	}
	n := int(binary.BigEndian.Uint32(b))
	b = b[4:]
	out := make([]string, 0, n)
	for range n {
		l := int(binary.BigEndian.Uint32(b))
		out = append(out, string(b[4:4+l]))
		b = b[4+l:]
	}
	return out
}

// TestNodesSystemViews: each node of a three-node double listens on its
// own loopback address at one port and answers system.local with its own
// host_id, address and token, and system.peers and system.peers_v2 with
// the other two.
func TestNodesSystemViews(t *testing.T) {
	s := startServer(t, Config{Nodes: 3})
	addrs := s.Addrs()
	port := strconv.Itoa(s.Port())
	tokens := nodeTokens(3)
	type ident struct{ hostID, ip, token string }
	var ids []ident
	for i, a := range addrs {
		if want := net.JoinHostPort("127.0.0."+strconv.Itoa(i+1), port); a != want {
			t.Fatalf("node %d at %s, want %s", i, a, want)
		}
		c := dialAddr(t, a, nil)
		c.startup("")
		rows := c.query(2, `SELECT host_id, rpc_address, rpc_port, tokens, partitioner FROM system.local WHERE key = 'local'`)
		if len(rows) != 1 {
			t.Fatalf("node %d: %d system.local rows", i, len(rows))
		}
		r := rows[0]
		id := ident{formatUUID(r[0]), net.IP(r[1]).String(), fmt.Sprint(decodeTextSet(t, r[3]))}
		if id.ip != "127.0.0."+strconv.Itoa(i+1) || int(binary.BigEndian.Uint32(r[2])) != s.Port() ||
			id.token != fmt.Sprint([]string{strconv.FormatInt(tokens[i], 10)}) ||
			string(r[4]) != "org.apache.cassandra.dht.Murmur3Partitioner" {
			t.Fatalf("node %d system.local: %+v port %d partitioner %s", i, id, binary.BigEndian.Uint32(r[2]), r[4])
		}
		ids = append(ids, id)
	}
	if ids[0].hostID == ids[1].hostID || ids[1].hostID == ids[2].hostID || ids[0].hostID == ids[2].hostID {
		t.Fatalf("host ids not distinct: %+v", ids)
	}
	for i, a := range addrs {
		c := dialAddr(t, a, nil)
		c.startup("")
		var want, got, gotV1 []string
		for j, id := range ids {
			if j != i {
				want = append(want, fmt.Sprintf("%s %s %s %s", id.ip, id.hostID, port, id.token))
			}
		}
		for _, r := range c.query(2, `SELECT peer, host_id, native_address, native_port, tokens FROM system.peers_v2`) {
			if !net.IP(r[0]).Equal(net.IP(r[2])) {
				t.Fatalf("node %d peers_v2: peer %v, native_address %v", i, net.IP(r[0]), net.IP(r[2]))
			}
			got = append(got, fmt.Sprintf("%s %s %d %s", net.IP(r[0]), formatUUID(r[1]), binary.BigEndian.Uint32(r[3]), decodeTextSet(t, r[4])))
		}
		for _, r := range c.query(3, `SELECT rpc_address, host_id, tokens FROM system.peers`) {
			gotV1 = append(gotV1, fmt.Sprintf("%s %s %s %s", net.IP(r[0]), formatUUID(r[1]), port, decodeTextSet(t, r[2])))
		}
		slices.Sort(got)
		slices.Sort(gotV1)
		if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(gotV1) != fmt.Sprint(want) {
			t.Fatalf("node %d peers_v2 %q, peers %q, want %q", i, got, gotV1, want)
		}
	}
	if st := s.Stats(); len(st.Nodes) != 3 || st.Nodes[2].Addr != addrs[2] || st.Nodes[1].Token != tokens[1] || st.Nodes[0].Requests == 0 {
		t.Fatalf("Stats.Nodes %+v", st.Nodes)
	}
}

// TestNodesConfig: Nodes needs an IPv4 address with room for the others.
func TestNodesConfig(t *testing.T) {
	for _, c := range []Config{
		{Nodes: -1}, {Nodes: MaxNodes + 1}, {Nodes: 3, LiveNodes: 4},
		{Nodes: 3, Addr: "localhost:0"}, {Nodes: 3, Addr: "0.0.0.0:0"}, {Nodes: 3, Addr: "127.0.0.253:0"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (Config{Nodes: 3, Addr: "127.0.0.252:0"}).Validate(); err != nil {
		t.Error(err)
	}
	if c := (Config{Nodes: 3}).withDefaults(); c.LiveNodes != 3 {
		t.Errorf("Nodes 3: LiveNodes %d by default, want 3", c.LiveNodes)
	}
}

// ringSchema creates keyspaces of replication factor 1 (SimpleStrategy), 2
// (NetworkTopologyStrategy) and 3, each with a table of an int key and one
// of a composite key.
func ringSchema(t *testing.T, s *Server) {
	t.Helper()
	for _, q := range []string{
		`CREATE KEYSPACE r1 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
		`CREATE KEYSPACE r2 WITH replication = {'class': 'NetworkTopologyStrategy', 'datacenter1': 2}`,
		`CREATE KEYSPACE r3 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}`,
	} {
		mustExec(t, s, q)
	}
	for _, ks := range []string{"r1", "r2", "r3"} {
		mustExec(t, s, `CREATE TABLE `+ks+`.t (k int PRIMARY KEY, v text)`)
		mustExec(t, s, `CREATE TABLE `+ks+`.c (a int, b text, c int, v text, PRIMARY KEY ((a, b), c))`)
	}
}

// sumWrites adds up the nodes' write counts.
func sumWrites(st Stats) (replica, primary, nonReplica int64) {
	for _, n := range st.Nodes {
		replica += n.ReplicaWrites
		primary += n.PrimaryWrites
		nonReplica += n.NonReplicaWrites
	}
	return
}

// TestNodesGocqlRoutesToReplicas: gocql's TokenAwareHostPolicy on a
// three-node double sends every single-partition write, alone or in a
// batch, simple key or composite, to a replica, and the replicas share
// them; the same driver without token awareness does not (the counters
// can fail); and a batch without a keyspace goes to the primary replica
// only (gocql finds no replication for keyspace "" and takes the token's
// owner, policies.go tokenAwareHostPolicy.Pick), one with its keyspace to
// every replica.
func TestNodesGocqlRoutesToReplicas(t *testing.T) {
	s := startServer(t, Config{Nodes: 3})
	ringSchema(t, s)
	ctx := context.Background()
	write := func(t *testing.T, sess *gocql.Session, ks string, n int) int64 {
		t.Helper()
		for i := range n {
			if err := sess.Query(`INSERT INTO `+ks+`.t (k, v) VALUES (?, ?)`, i, "x").ExecContext(ctx); err != nil {
				t.Fatal(err)
			}
			if err := sess.Query(`INSERT INTO `+ks+`.c (a, b, c, v) VALUES (?, ?, ?, ?)`, i, "b"+strconv.Itoa(i), 1, "x").ExecContext(ctx); err != nil {
				t.Fatal(err)
			}
			b := sess.Batch(gocql.UnloggedBatch).SetKeyspace(ks)
			for c := range 3 {
				b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: `INSERT INTO ` + ks + `.c (a, b, c, v) VALUES (?, ?, ?, ?)`, Args: []any{i, "z", c, "y"}, Idempotent: true})
			}
			if err := b.ExecContext(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return int64(3 * n)
	}
	t.Run("token aware", func(t *testing.T) {
		sess := newSession(t, s, nil, nil)
		for _, ks := range []string{"r1", "r2"} {
			s.ResetStats()
			total := write(t, sess, ks, 40)
			st := s.Stats()
			if r, _, nr := sumWrites(st); r != total || nr != 0 {
				t.Fatalf("%s: %d writes by replicas, %d by non-replicas, want %d and 0 (%+v)", ks, r, nr, total, st.Nodes)
			}
			for i, n := range st.Nodes {
				if n.ReplicaWrites == 0 {
					t.Fatalf("%s: node %d coordinated nothing (%+v)", ks, i, st.Nodes)
				}
			}
		}
	})
	t.Run("round robin", func(t *testing.T) {
		sess := newSession(t, s, nil, func(c *gocql.ClusterConfig) {
			c.PoolConfig.HostSelectionPolicy = gocql.RoundRobinHostPolicy()
		})
		s.ResetStats()
		write(t, sess, "r1", 30)
		if _, _, nr := sumWrites(s.Stats()); nr < 20 { // about 2/3 of 90
			t.Fatalf("round robin at rf=1: %d writes by non-replicas, want about 60", nr)
		}
	})
	t.Run("batch keyspace", func(t *testing.T) {
		sess := newSession(t, s, nil, nil)
		batch := func(setKeyspace bool) (replica, primary int64) {
			s.ResetStats()
			for i := range 60 {
				b := sess.Batch(gocql.UnloggedBatch)
				if setKeyspace {
					b.SetKeyspace("r3")
				}
				b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: `INSERT INTO r3.t (k, v) VALUES (?, ?)`, Args: []any{i, "x"}, Idempotent: true})
				if err := b.ExecContext(ctx); err != nil {
					t.Fatal(err)
				}
			}
			st := s.Stats()
			replica, primary, _ = sumWrites(st)
			var rb, pb int64
			for _, n := range st.Nodes {
				rb, pb = rb+n.ReplicaBatches, pb+n.PrimaryBatches
			}
			if rb != replica || pb != primary {
				t.Fatalf("batches %d by replicas, %d by the primary: want the writes' %d and %d, every write a batch", rb, pb, replica, primary)
			}
			return replica, primary
		}
		if r, p := batch(false); r != 60 || p != 60 {
			t.Fatalf("batches without a keyspace: %d by replicas, %d by the primary, want all 60 by the primary", r, p)
		}
		if r, p := batch(true); r != 60 || p > 45 { // a third of 60 expected
			t.Fatalf("batches with their keyspace: %d by replicas, %d by the primary, want them spread over the replicas", r, p)
		}
	})
}

// TestNodesUnavailable: with a ring, each partition counts its own live
// replicas: node 2 down (LiveNodes 2) makes rf=1 partitions it owns
// unavailable at ONE and every rf=3 partition at ALL, while the others
// work.
func TestNodesUnavailable(t *testing.T) {
	s := startServer(t, Config{Nodes: 3, LiveNodes: 2})
	ringSchema(t, s)
	sess := newSession(t, s, nil, func(c *gocql.ClusterConfig) {
		c.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 0}
	})
	ctx := context.Background()
	down := s.Addrs()[2]
	var onDown, onUp int
	for k := range 40 {
		var key [4]byte
		binary.BigEndian.PutUint32(key[:], uint32(k))
		reps, err := s.Replicas("r1", key[:])
		if err != nil {
			t.Fatal(err)
		}
		err = sess.Query(`INSERT INTO r1.t (k, v) VALUES (?, ?)`, k, "x").Consistency(gocql.One).ExecContext(ctx)
		var u *gocql.RequestErrUnavailable
		switch {
		case reps[0] == down && (!errors.As(err, &u) || u.Required != 1 || u.Alive != 0):
			t.Fatalf("key %d on the down node: %v, want Unavailable (1 required, 0 alive)", k, err)
		case reps[0] == down:
			onDown++
		case err != nil:
			t.Fatalf("key %d on %s: %v", k, reps[0], err)
		default:
			onUp++
		}
	}
	if onDown == 0 || onUp == 0 {
		t.Fatalf("%d keys on the down node, %d on live ones: want both", onDown, onUp)
	}
	if err := sess.Query(`INSERT INTO r3.t (k, v) VALUES (?, ?)`, 1, "x").Consistency(gocql.LocalQuorum).ExecContext(ctx); err != nil {
		t.Fatalf("rf=3 LOCAL_QUORUM with 2 of 3 up: %v", err)
	}
	var u *gocql.RequestErrUnavailable
	if err := sess.Query(`INSERT INTO r3.t (k, v) VALUES (?, ?)`, 1, "x").Consistency(gocql.All).ExecContext(ctx); !errors.As(err, &u) || u.Required != 3 || u.Alive != 2 {
		t.Fatalf("rf=3 ALL with 2 of 3 up: %v, want Unavailable (3 required, 2 alive)", err)
	}
	var v string
	if err := sess.Query(`SELECT v FROM r3.t`).Consistency(gocql.All).ScanContext(ctx, &v); !errors.As(err, &u) || u.Alive != 2 {
		t.Fatalf("rf=3 scan at ALL with 2 of 3 up: %v, want Unavailable", err)
	}
	s.SetLiveNodes(5) // clamped to the 3 nodes there are
	if s.LiveNodes() != 3 {
		t.Fatalf("LiveNodes %d after SetLiveNodes(5) on 3 nodes", s.LiveNodes())
	}
	if err := sess.Query(`INSERT INTO r3.t (k, v) VALUES (?, ?)`, 1, "x").Consistency(gocql.All).ExecContext(ctx); err != nil {
		t.Fatalf("rf=3 ALL with 3 up: %v", err)
	}
}

// TestSchemaChangeEvents: a schema change is pushed as a SCHEMA_CHANGE
// event (stream -1) to every connection, on any node, that REGISTERed for
// it, as each Cassandra node pushes it to its registered clients (gocql
// refreshes its schema, and so its token-aware replicas, on it), and to no
// other: the connection that made the change gets its result first and
// nothing else.
func TestSchemaChangeEvents(t *testing.T) {
	s := startServer(t, Config{Nodes: 3})
	addrs := s.Addrs()
	var registered []*rawClient
	for _, a := range []string{addrs[0], addrs[2]} {
		c := dialAddr(t, a, nil)
		c.startup("")
		c.send(2, &message.Register{EventTypes: []primitive.EventType{primitive.EventTypeSchemaChange}}, false)
		if f := c.recv(); f.Header.StreamId != 2 {
			t.Fatalf("REGISTER: %v", f)
		} else if _, ok := f.Body.Message.(*message.Ready); !ok {
			t.Fatalf("REGISTER: %v", f)
		}
		registered = append(registered, c)
	}
	u := dialAddr(t, addrs[1], nil)
	u.startup("")
	u.send(5, &message.Query{Query: `CREATE KEYSPACE ev WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 2}`,
		Options: &message.QueryOptions{Consistency: primitive.ConsistencyLevelOne}}, false)
	if f := u.recv(); f.Header.StreamId != 5 {
		t.Fatalf("the changing connection got %v first, want its result", f)
	} else if _, ok := f.Body.Message.(*message.SchemaChangeResult); !ok {
		t.Fatalf("CREATE KEYSPACE: %v", f)
	}
	for i, c := range registered {
		f := c.recv()
		ev, ok := f.Body.Message.(*message.SchemaChangeEvent)
		if f.Header.StreamId != -1 || !ok || ev.ChangeType != primitive.SchemaChangeTypeCreated ||
			ev.Target != primitive.SchemaChangeTargetKeyspace || ev.Keyspace != "ev" {
			t.Fatalf("registered connection %d: %v, want a SCHEMA_CHANGE CREATED KEYSPACE ev event", i, f)
		}
	}
	if rows := u.query(6, `SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = 'ev'`); len(rows) != 1 {
		t.Fatalf("ev in system_schema: %d rows", len(rows))
	}
}
