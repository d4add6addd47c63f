package cqltest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// sameHostRetry retries on the same host. gocql's SimpleRetryPolicy and
// ExponentialBackoffRetryPolicy answer RetryNextHost, and with a single node
// (this test double, or a one-node cluster) there is no next host, so they
// never retry at all.
type sameHostRetry struct{ n int }

func (p sameHostRetry) Attempt(q gocql.RetryableQuery) bool { return q.Attempts() <= p.n }
func (sameHostRetry) GetRetryType(error) gocql.RetryType    { return gocql.Retry }

func retrying(c *gocql.ClusterConfig) {
	c.RetryPolicy = sameHostRetry{n: 5}
	c.ReconnectInterval = 50 * time.Millisecond
	c.Timeout = 2 * time.Second
}

const insertCheckpoint = `INSERT INTO demandpipe.checkpoints (name, minute, state) VALUES (?, ?, ?)`

func TestInjectedErrorsAreRetried(t *testing.T) {
	s := startServer(t, Config{})
	sess := newSession(t, s, nil, retrying)
	createSchema(t, sess)

	for _, tc := range []struct {
		fault Fault
		name  string
	}{
		{FaultOverloaded, "Overloaded"},
		{FaultTimeout, "WriteTimeout"},
		{FaultUnavailable, "Unavailable"},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			s.ClearFaults()
			s.ResetStats()
			s.InjectFault(tc.fault, 2)
			b := sess.Batch(gocql.UnloggedBatch)
			b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: insertCheckpoint, Args: []any{"a-" + tc.name, int64(1), []byte{1}}, Idempotent: true})
			err := b.ExecContext(context.Background())
			st := s.Stats()
			if st.Errors[tc.name] != 2 || st.Injected != 2 {
				t.Fatalf("server answered %v, injected %d; want 2 %s", st.Errors, st.Injected, tc.name)
			}
			if err != nil {
				t.Fatalf("idempotent batch not retried past 2 %s: %v", tc.name, err)
			}
			if st.Batches["UNLOGGED"] != 1 {
				t.Fatalf("batches executed = %v, want 1 after retries", st.Batches)
			}
			if n, _ := s.Rows("demandpipe", "checkpoints"); n == 0 {
				t.Fatal("row not written after retry")
			}
		})
	}

	// A non-idempotent statement is not retried: the error surfaces.
	s.ClearFaults()
	s.InjectFault(FaultOverloaded, 1)
	err := sess.Query(insertCheckpoint, "b", int64(1), []byte{1}).Exec()
	var re gocql.RequestError
	if !errors.As(err, &re) || re.Code() != gocql.ErrCodeOverloaded {
		t.Fatalf("non-idempotent insert: %v, want Overloaded", err)
	}

	// A fault rate: about a quarter of statements fail.
	s.ResetStats()
	s.SetFaultRate(FaultOverloaded, 0.25)
	failed := 0
	for i := range 200 {
		if err := sess.Query(insertCheckpoint, "c", int64(i), []byte{1}).Exec(); err != nil {
			failed++
		}
	}
	s.ClearFaults()
	if failed < 20 || failed > 80 {
		t.Fatalf("%d of 200 failed at rate 0.25", failed)
	}
}

func TestDroppedConnectionReconnects(t *testing.T) {
	s := startServer(t, Config{})
	sess := newSession(t, s, nil, retrying)
	createSchema(t, sess)
	before := s.Stats().Connections

	// A drop fault closes the connection instead of answering.
	s.InjectFault(FaultDrop, 1)
	_ = sess.Query(insertCheckpoint, "x", int64(1), []byte{1}).Idempotent(true).Exec()
	if s.Stats().Injected != 1 {
		t.Fatal("drop fault not used")
	}
	if n := s.DropConnections(); n == 0 {
		t.Log("no connection left to drop") // the drop above may have taken them all
	}
	waitFor(t, 10*time.Second, func() bool {
		return sess.Query(insertCheckpoint, "y", int64(2), []byte{2}).Exec() == nil
	})
	if after := s.Stats().Connections; after <= before {
		t.Fatalf("connections %d -> %d: driver did not reconnect", before, after)
	}
}

func TestDownAndBackKeepsData(t *testing.T) {
	s := startServer(t, Config{})
	sess := newSession(t, s, nil, retrying)
	createSchema(t, sess)
	addr := s.Addr()
	if err := sess.Query(insertCheckpoint, "kept", int64(7), []byte{7}).Exec(); err != nil {
		t.Fatal(err)
	}
	if err := s.Down(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := sess.Query(insertCheckpoint, "down", int64(8), []byte{8}).Exec(); err == nil {
		t.Fatal("write succeeded while the server was down")
	}
	var minute int64
	waitFor(t, 10*time.Second, func() bool {
		return sess.Query(`SELECT minute FROM demandpipe.checkpoints WHERE name = ?`, "kept").Scan(&minute) == nil
	})
	if minute != 7 || s.Addr() != addr {
		t.Fatalf("after coming back: minute %d addr %s (was %s)", minute, s.Addr(), addr)
	}
}

// TestServiceTimeIsConcurrent: requests pipelined on one connection sleep their
// service time in parallel, so 16 concurrent 20 ms statements take about 20 ms,
// not 320 ms.
func TestServiceTimeIsConcurrent(t *testing.T) {
	const (
		n       = 16
		latency = 20 * time.Millisecond
	)
	s := startServer(t, Config{})
	sess := newSession(t, s, nil, nil)
	createSchema(t, sess)
	s.SetLatency(latency)

	best := time.Hour
	for range 3 { // the best of three, against noisy neighbours
		s.ResetStats()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				errs <- sess.Query(insertCheckpoint, "p", int64(i), []byte{1}).Exec()
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		elapsed := time.Since(start)
		if elapsed < latency {
			t.Fatalf("%d statements took %v, less than one service time", n, elapsed)
		}
		best = min(best, elapsed)
		if st := s.Stats(); st.InFlightPeak < 2 {
			t.Fatalf("in-flight peak %d: requests were not concurrent", st.InFlightPeak)
		}
	}
	if best > n*latency/2 {
		t.Fatalf("%d concurrent statements of %v took %v; serial would be %v", n, latency, best, n*latency)
	}
	t.Logf("%d x %v concurrently: %v", n, latency, best)
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
