package cassandra

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/sink"
)

// TestRecordChunks: records of every size around the chunk boundaries
// read back equal; an absent record is absent.
func TestRecordChunks(t *testing.T) {
	srv := startServer(t, 0)
	s := openSink(t, testConfig(srv))
	defer s.Close()
	s.chunkBytes = 100
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 99, 100, 101, 250, 1000} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		if err := s.putRecord(ctx, s.name, kindCounts, int64(n), data); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.getRecord(ctx, kindCounts, int64(n))
		if err != nil || !ok || !bytes.Equal(got, data) || got == nil {
			t.Fatalf("size %d: ok=%v err=%v equal=%v", n, ok, err, bytes.Equal(got, data))
		}
	}
	if got, ok, err := s.getRecord(ctx, kindCounts, 7); ok || err != nil || got != nil {
		t.Fatalf("absent record: %v %v %v", got, ok, err)
	}
	// A longer record overwritten by a shorter one: the left-over chunks
	// are ignored.
	long, short := bytes.Repeat([]byte{1}, 450), bytes.Repeat([]byte{2}, 150)
	s.putRecord(ctx, s.name, kindCounts, 5000, long)
	s.putRecord(ctx, s.name, kindCounts, 5000, short)
	if got, ok, err := s.getRecord(ctx, kindCounts, 5000); !ok || err != nil || !bytes.Equal(got, short) {
		t.Fatalf("overwritten record: %v %v", ok, err)
	}
}

// TestTornRecords: a crash between chunks leaves either the old record
// (chunk 0 not yet replaced) detected as torn, or, for checkpoints, the
// previous complete one as the latest.
func TestTornRecords(t *testing.T) {
	srv := startServer(t, 0)
	s := openSink(t, testConfig(srv))
	defer s.Close()
	s.chunkBytes = 10
	ctx := context.Background()
	old := bytes.Repeat([]byte("a"), 35)
	if err := s.putRecord(ctx, s.name, kindCounts, 1, old); err != nil {
		t.Fatal(err)
	}
	// The new record's chunks 1..3 land, the crash comes before chunk 0.
	torn := bytes.Repeat([]byte("b"), 35)
	for i := 3; i >= 1; i-- {
		if err := s.exec(ctx, s.st.putChunk, s.name, kindCounts, int64(1), i, torn[i*10:min(35, i*10+10)]); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.getRecord(ctx, kindCounts, 1); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("torn record read without error: %v", err)
	}
	// Checkpoints: 1 complete, 2 torn (no chunk 0): the latest is 1.
	s.putRecord(ctx, s.name, kindCheckpoint, 1, []byte("checkpoint one, in four chunks"))
	s.exec(ctx, s.st.putChunk, s.name, kindCheckpoint, int64(2), 1, []byte("two"))
	seq, cp, err := s.latestCheckpoint(ctx, s.name)
	if err != nil || seq != 1 || string(cp) != "checkpoint one, in four chunks" {
		t.Fatalf("latest checkpoint: %d %q %v", seq, cp, err)
	}
	// A chunk missing in the middle of a committed record is an error,
	// not a short record.
	s.putRecord(ctx, s.name, kindCounts, 9, bytes.Repeat([]byte("c"), 30))
	if _, err := srv.Exec(fmt.Sprintf("DELETE FROM demandpipe.%s WHERE name = 'features' AND kind = 'counts' AND key = 9 AND chunk = 1", StateTable)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.getRecord(ctx, kindCounts, 9); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("record with a hole: %v", err)
	}
}

// TestCheckpointer: the state staged with each minute is what LoadState
// returns after it, count records below KeepFrom are gone, a reopened
// sink continues the checkpoint sequence, and a sink over another
// definition is refused.
func TestCheckpointer(t *testing.T) {
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	reg := prometheus.NewPedanticRegistry()
	s, err := Open(context.Background(), cfg, Options{Logf: t.Logf, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	s.chunkBytes = 64
	ctx := context.Background()
	if cp, _, err := s.LoadState(); cp != nil || err != nil {
		t.Fatalf("empty: %q %v", cp, err)
	}
	d := makeTestData(t, 3, 8, 200, 50)
	counts := func(m int64) []byte { return bytes.Repeat([]byte{byte(m)}, 100+int(m%7)*40) }
	i := 0
	for j, m := range d.minutes {
		for ; i < len(d.batches) && d.batches[i].Minute == m; i++ {
			if err := s.Write(ctx, d.batches[i]); err != nil {
				t.Fatal(err)
			}
		}
		st := sink.State{Counts: counts(m), KeepFrom: m - 2}
		if j%2 == 1 { // a checkpoint every other minute
			st.Checkpoint = []byte(fmt.Sprint("after ", m))
		}
		s.StageState(m, st)
		if err := s.CloseMinute(ctx, m); err != nil {
			t.Fatal(err)
		}
		cp, get, err := s.LoadState()
		if j == 0 {
			if cp != nil || err != nil {
				t.Fatalf("minute %d: checkpoint %q %v before any", j, cp, err)
			}
			continue
		}
		want := fmt.Sprint("after ", d.minutes[j-(1-j%2)])
		if err != nil || string(cp) != want {
			t.Fatalf("minute %d: checkpoint %q %v, want %q", j, cp, err, want)
		}
		for _, k := range d.minutes[:j+1] {
			c, ok, err := get(k)
			if err != nil || ok != (k >= m-2) || (ok && !bytes.Equal(c, counts(k))) {
				t.Fatalf("after minute %d: count record %d: ok=%v err=%v", j, k, ok, err)
			}
		}
	}
	checkReadBack(t, NewReader(s.Session(), cfg), d.minutes, d.products, d.cells, d.want)
	if n, err := testutil.GatherAndCount(reg, "demandpipe_sink_cassandra_state_bytes_total", "demandpipe_sink_cassandra_state_retries_total"); err != nil || n != 2 {
		t.Fatalf("state metrics: %d %v", n, err)
	}
	if got := testutil.ToFloat64(s.stateMx[0]); got < float64(len(d.minutes)*100) {
		t.Fatalf("state bytes %v", got)
	}
	seq := s.seq
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openSink(t, cfg)
	if s2.seq != seq {
		t.Fatalf("reopened sink: sequence %d, want %d", s2.seq, seq)
	}
	s2.Close()
	other := cfg
	other.Definition = feature.Definition{Resolution: 8, Rings: []int{0, 1}, Windows: []int{1}}
	if _, err := Open(ctx, other, Options{Logf: t.Logf}); err == nil || !strings.Contains(err.Error(), "definition") {
		t.Fatalf("another definition: %v", err)
	}
	other.State = "other"
	s3, err := Open(ctx, other, Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("another state name: %v", err)
	}
	if cp, _, err := s3.LoadState(); cp != nil || err != nil {
		t.Fatalf("state=other sees %q %v", cp, err)
	}
	if err := s3.Write(ctx, d.batches[0]); err == nil || !strings.Contains(err.Error(), "54 features") {
		t.Fatalf("rows of another width: %v", err)
	}
	s3.Close()
}
