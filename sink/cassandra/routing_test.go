package cassandra

import (
	"context"
	"testing"

	"github.com/demandpipe/demandpipe/internal/cqltest"
)

// TestBatchesRouteToReplicas: on a three-node double (one Murmur3 token
// each, distinct ranges) with the sink's keyspace at replication factor 2,
// so that every partition has a node that is not its replica, each write
// batch reaches a replica of its partition, the two replicas share them
// (gocql.ShuffleReplicas) and all three nodes coordinate batches. gocql's
// token-aware policy finds a batch's replicas by the batch's Keyspace()
// (policies.go, tokenAwareHostPolicy.Pick); without it, as before issue 22
// C8, it took the token's owner alone: every batch went to its primary
// replica (here: 168 batches, 0 at the other replica).
func TestBatchesRouteToReplicas(t *testing.T) {
	t.Parallel()
	srv, err := cqltest.Start(cqltest.Config{Nodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cfg := testConfig(srv) // node 0 only: gocql finds the others in system.peers_v2
	cfg.Keyspace = "routing"
	cfg.ReplicationFactor = 2
	// One connection per host, made before Open returns: a second one is
	// filled in the background, and one still connecting when the test
	// closes the session (it is over in ~0.1 s) retries for 3 s after it
	// (hostConnPool.connect), past goleak's check in a loaded -race run.
	cfg.NumConns = 1
	// The keyspace exists before the run, as after `demandpipe schema
	// cassandra`: the session reads its replication at connect. One the
	// sink creates itself is known ~1 s later (gocql refreshes its schema
	// schemaRefreshDebounceTime after the SCHEMA_CHANGE event), and until
	// then every statement goes to its primary replica.
	if _, err := srv.Exec(SchemaStatements(cfg)[0]); err != nil {
		t.Fatal(err)
	}
	s := openSink(t, cfg)
	d := makeTestData(t, 22, 4, 3000, 700)
	srv.ResetStats() // the batches and the minutes' state writes only
	if err := d.write(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st := srv.Stats()
	if len(st.Nodes) != 3 {
		t.Fatalf("Stats.Nodes %+v, want 3 nodes", st.Nodes)
	}
	var replica, primary, nonReplica, nonReplicaWrites int64
	for i, n := range st.Nodes {
		t.Logf("node %d %s token %d: batches %d at a replica (%d the primary), %d elsewhere; writes %d at a replica, %d elsewhere",
			i, n.Addr, n.Token, n.ReplicaBatches, n.PrimaryBatches, n.NonReplicaBatches, n.ReplicaWrites, n.NonReplicaWrites)
		if n.ReplicaBatches == 0 {
			t.Errorf("node %d (%s) coordinated no batch as a replica: want all 3 nodes to", i, n.Addr)
		}
		replica += n.ReplicaBatches
		primary += n.PrimaryBatches
		nonReplica += n.NonReplicaBatches
		nonReplicaWrites += n.NonReplicaWrites
	}
	// Every batch is one partition's (TestRoundTrip), so each is counted.
	if batches := st.Batches["UNLOGGED"]; batches < 100 || replica+nonReplica != batches {
		t.Fatalf("%d batches, %d counted by the nodes: want at least 100, all counted", batches, replica+nonReplica)
	}
	if nonReplica != 0 || nonReplicaWrites != 0 {
		t.Errorf("%d batches (%d writes in all) coordinated by a node that is not a replica, want 0", nonReplica, nonReplicaWrites)
	}
	// Shuffled over two replicas, half of the batches go to the second
	// one (here 86 of 168); fewer than a quarter has a chance of 1e-11 for
	// 168 batches, 5e-5 for 100.
	if second := replica - primary; second < replica/4 {
		t.Errorf("%d of %d batches at the partition's second replica, want about half: batches go to the primary replica only", second, replica)
	}
	if n, _ := srv.Rows(cfg.Keyspace, cfg.Table); n != len(d.want) {
		t.Fatalf("server holds %d rows, want %d", n, len(d.want))
	}
}
