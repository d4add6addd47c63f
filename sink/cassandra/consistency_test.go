package cassandra

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/sink"
)

// TestOpenFailsFastOnUnmetConsistency: against a one-node cluster the
// defaults (rf=3, LOCAL_QUORUM) cannot be met (Cassandra answers Unavailable:
// required 2, alive 1). Open says so at once, naming the setting, the
// keyspace's replication and what fits, instead of failing the first minute
// after the queue's retries; rf=1 works, and so do enough live nodes.
func TestOpenFailsFastOnUnmetConsistency(t *testing.T) {
	srv := startServer(t, 0) // one live node, as a real single-node cluster
	open := func(keyspace string, rf int, consistency string) (*Sink, error, time.Duration) {
		cfg := testConfig(srv)
		cfg.Keyspace, cfg.ReplicationFactor, cfg.Consistency = keyspace, rf, consistency
		start := time.Now()
		s, err := Open(context.Background(), cfg, Options{Logf: t.Logf})
		return s, err, time.Since(start)
	}
	for _, tc := range []struct {
		name, keyspace string
		rf, live       int
		consistency    string
		want           []string // substrings of the error; none: opens and writes
	}{
		{"defaults on one node", "rf3", 3, 1, "LOCAL_QUORUM", []string{
			"consistency=LOCAL_QUORUM needs 2 live replicas of keyspace rf3 (SimpleStrategy, rf=3) but 1 is alive",
			"add nodes", "use a keyspace with rf=1 (?rf=1 with ?create=true", "ALTER KEYSPACE rf3",
			"a weaker ?consistency= does not help"}},
		// ONE would do for the rows, but the state is read and written at
		// LOCAL_QUORUM so that a restart reads the checkpoint it wrote.
		{"ONE on one node", "rf3", 3, 1, "ONE", []string{
			"consistency=ONE is raised to LOCAL_QUORUM for the sink's state", "needs 2 live replicas of keyspace rf3 (SimpleStrategy, rf=3) but 1 is alive",
			"rf=1"}},
		{"ALL with a node down", "rf3", 3, 2, "ALL", []string{
			"consistency=ALL needs 3 live replicas of keyspace rf3 (SimpleStrategy, rf=3) but 2 are alive",
			"use ?consistency=LOCAL_QUORUM (2 of the 3 replicas)"}},
		{"rf=1 on one node", "rf1", 1, 1, "LOCAL_QUORUM", nil},
		{"rf=1 at ONE", "rf1", 1, 1, "ONE", nil},
		{"defaults on two of three nodes", "rf3", 3, 2, "LOCAL_QUORUM", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.SetLiveNodes(tc.live)
			s, err, took := open(tc.keyspace, tc.rf, tc.consistency)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				d := makeTestData(t, 21, 1, 300, 100)
				if err := d.write(context.Background(), s); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("opened at consistency=%s on %d live nodes with rf=%d", tc.consistency, tc.live, tc.rf)
			}
			// No retries: the answer comes in one round trip or two.
			if took > 3*time.Second {
				t.Errorf("failed after %v, want within seconds", took)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nwants %q", err, w)
				}
			}
			t.Logf("after %v: %v", took.Round(time.Millisecond), err)
		})
	}
}

// TestNodesDieMidRun: writes that get Unavailable after Open (nodes died)
// are retried like any transient failure, so nodes back within the retries
// lose nothing; nodes that stay down fail the run within the queue's bound
// with an error saying how many replicas the consistency needs and how
// many are alive (the driver's own text is only "Cannot achieve consistency
// level LOCAL_QUORUM").
func TestNodesDieMidRun(t *testing.T) {
	srv := startServer(t, 0)
	srv.SetLiveNodes(3)
	cfg := testConfig(srv)
	cfg.Keyspace, cfg.ReplicationFactor = "rf3", 3
	ctx := context.Background()

	t.Run("back within the retries", func(t *testing.T) {
		cfg := cfg
		cfg.State = "back"
		// 20 retries of up to 200 ms (full jitter) outlast the 300 ms
		// outage but for a chance of ~1e-10.
		cfg.Queue.MaxRetries = 20
		s := openSink(t, cfg)
		defer s.Close()
		d := makeTestData(t, 22, 2, 800, 200)
		srv.SetLiveNodes(1)
		back := time.AfterFunc(300*time.Millisecond, func() { srv.SetLiveNodes(2) })
		defer back.Stop()
		if err := d.write(ctx, s); err != nil {
			t.Fatal(err)
		}
		qs := s.QueueStats()
		if qs.Retries == 0 || qs.DroppedItems != 0 || qs.SentItems != int64(len(d.want)) {
			t.Fatalf("queue %+v: want retries, no drop", qs)
		}
		checkReadBack(t, NewReader(s.Session(), cfg), d.minutes, d.products, d.cells, d.want)
		t.Logf("%d rows through a 300 ms outage of 2 of 3 replicas: %d failures, %d retries", qs.SentItems, qs.Failures, qs.Retries)
	})

	t.Run("down for good", func(t *testing.T) {
		srv.SetLiveNodes(3)
		cfg := cfg
		cfg.State = "gone"
		cfg.Queue.MaxRetries, cfg.Queue.MaxBackoff = 3, 100*time.Millisecond
		s := openSink(t, cfg)
		d := makeTestData(t, 23, 2, 400, 200)
		first := &testData{minutes: d.minutes[:1], batches: d.batches}
		if err := first.write(ctx, s); err != nil {
			t.Fatal(err)
		}
		srv.SetLiveNodes(1)
		rest := &testData{minutes: d.minutes[1:], batches: d.batches[firstBatchOf(d, d.minutes[1]):]}
		start := time.Now()
		err := rest.write(ctx, s)
		took := time.Since(start)
		if !errors.Is(err, sink.ErrDropped) {
			t.Fatalf("got %v, want a drop", err)
		}
		const want = "keyspace rf3: LOCAL_QUORUM needs 2 live replicas and the cluster has 1 alive: nodes are down"
		if !strings.Contains(err.Error(), want) || took > cfg.Queue.RetryBound()+2*time.Second {
			t.Fatalf("after %v (bound %v): %v\nwant %q", took, cfg.Queue.RetryBound(), err, want)
		}
		t.Logf("after %v: %v", took.Round(time.Millisecond), err)
		if err := s.Close(); err == nil {
			t.Fatal("Close forgot the drop")
		}
	})
}
