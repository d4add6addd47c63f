package cqltest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/apache/cassandra-gocql-driver/v2/lz4"
	"github.com/apache/cassandra-gocql-driver/v2/snappy"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// gocql v2.1.2 can leave its ring refresher blocked on a channel after
	// Session.Close when a control connection was dropped under it (the
	// fault tests do that on purpose): the driver's goroutines, not ours.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/apache/cassandra-gocql-driver/v2.(*Session).refreshRing"),
		goleak.IgnoreAnyFunction("github.com/apache/cassandra-gocql-driver/v2.(*controlConn).reconnect"),
	)
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newSession connects the v2 driver the way the project's sink does: token
// aware routing, protocol negotiated (v5; v4 with snappy, which v5 does not
// allow).
func newSession(t *testing.T, s *Server, comp gocql.Compressor, tune func(*gocql.ClusterConfig)) *gocql.Session {
	t.Helper()
	cluster := gocql.NewCluster("127.0.0.1")
	cluster.Port = s.Port()
	cluster.Compressor = comp
	cluster.Timeout = 5 * time.Second
	cluster.ConnectTimeout = 5 * time.Second
	cluster.NumConns = 1
	cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy(), gocql.ShuffleReplicas())
	if tune != nil {
		tune(cluster)
	}
	sess, err := cluster.CreateSession()
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	t.Cleanup(sess.Close)
	return sess
}

const featuresDDL = `CREATE TABLE IF NOT EXISTS demandpipe.features (
	product tinyint, minute bigint, region bigint, cell bigint, f blob,
	PRIMARY KEY ((product, minute, region), cell))
	WITH default_time_to_live = 7200
	AND compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'MINUTES', 'compaction_window_size': 60}
	AND compression = {'class': 'LZ4Compressor', 'chunk_length_in_kb': 16}`

func createSchema(t *testing.T, sess *gocql.Session) {
	t.Helper()
	for _, q := range []string{
		`CREATE KEYSPACE IF NOT EXISTS demandpipe WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
		featuresDDL,
		`CREATE TABLE IF NOT EXISTS demandpipe.checkpoints (name text PRIMARY KEY, minute bigint, state blob)`,
	} {
		if err := sess.Query(q).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

type featureRow struct {
	product     int8
	minute, reg int64
	cell        int64
	f           []byte
}

func (r featureRow) String() string {
	return fmt.Sprintf("%d/%d/%d/%d/%x", r.product, r.minute, r.reg, r.cell, r.f)
}

func featureRows(n int) []featureRow {
	var rows []featureRow
	for i := range n {
		rows = append(rows, featureRow{
			product: int8(i % 3), minute: 29_000_000 + int64(i%2), reg: int64(i % 4),
			// negative cells check the signed order of bigint clustering keys
			cell: int64(i*7919%1000) - 500, f: []byte(fmt.Sprintf("f-%d", i)),
		})
	}
	return rows
}

func writeBatches(t *testing.T, sess *gocql.Session, rows []featureRow) {
	t.Helper()
	const ins = `INSERT INTO demandpipe.features (product, minute, region, cell, f) VALUES (?, ?, ?, ?, ?)`
	// One partition per batch, as the sink groups them.
	byPart := map[[3]int64][]featureRow{}
	var order [][3]int64
	for _, r := range rows {
		k := [3]int64{int64(r.product), r.minute, r.reg}
		if byPart[k] == nil {
			order = append(order, k)
		}
		byPart[k] = append(byPart[k], r)
	}
	for _, k := range order {
		b := sess.Batch(gocql.UnloggedBatch)
		for _, r := range byPart[k] {
			b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: ins, Args: []any{r.product, r.minute, r.reg, r.cell, r.f}, Idempotent: true})
		}
		if err := b.ExecContext(context.Background()); err != nil {
			t.Fatalf("batch: %v", err)
		}
	}
}

func TestGocqlRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		comp gocql.Compressor
	}{
		{"none", nil},
		{"snappy", snappy.SnappyCompressor{}},
		{"lz4", lz4.LZ4Compressor{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{})
			sess := newSession(t, s, tc.comp, nil)
			createSchema(t, sess)

			rows := featureRows(60)
			writeBatches(t, sess, rows)
			// Upsert: rewriting a row replaces its value.
			rows[0].f = []byte("rewritten")
			if err := sess.Query(`INSERT INTO demandpipe.features (product, minute, region, cell, f) VALUES (?, ?, ?, ?, ?) USING TTL 60`,
				rows[0].product, rows[0].minute, rows[0].reg, rows[0].cell, rows[0].f).Exec(); err != nil {
				t.Fatal(err)
			}

			want := map[[3]int64][]featureRow{}
			for _, r := range rows {
				k := [3]int64{int64(r.product), r.minute, r.reg}
				want[k] = append(want[k], r)
			}
			for k, ws := range want {
				iter := sess.Query(`SELECT cell, f FROM demandpipe.features WHERE product = ? AND minute = ? AND region = ?`, int8(k[0]), k[1], k[2]).Iter()
				var got []featureRow
				var cell int64
				var f []byte
				for iter.Scan(&cell, &f) {
					got = append(got, featureRow{product: int8(k[0]), minute: k[1], reg: k[2], cell: cell, f: append([]byte(nil), f...)})
				}
				if err := iter.Close(); err != nil {
					t.Fatal(err)
				}
				// Expect clustering order by signed cell.
				exp := dedupSorted(ws)
				if fmt.Sprint(got) != fmt.Sprint(exp) {
					t.Fatalf("partition %v:\n got %v\nwant %v", k, got, exp)
				}
			}

			// IN on the partition key and the clustering key.
			r0, r1 := rows[0], rows[3]
			iter := sess.Query(`SELECT product, minute, region, cell, f FROM demandpipe.features WHERE product = ? AND minute = ? AND region IN ? AND cell IN (?, ?)`,
				r0.product, r0.minute, []int64{r0.reg, r1.reg, 99}, r0.cell, r1.cell).Iter()
			n := 0
			var got featureRow
			for iter.Scan(&got.product, &got.minute, &got.reg, &got.cell, &got.f) {
				if got.cell != r0.cell && got.cell != r1.cell {
					t.Fatalf("IN returned %v", got)
				}
				n++
			}
			if err := iter.Close(); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatal("IN query returned no rows")
			}

			// Checkpoint table: text key, read back one row.
			if err := sess.Query(`INSERT INTO demandpipe.checkpoints (name, minute, state) VALUES (?, ?, ?)`, "sink", int64(42), []byte{1, 2}).Exec(); err != nil {
				t.Fatal(err)
			}
			var minute int64
			var state []byte
			if err := sess.Query(`SELECT minute, state FROM demandpipe.checkpoints WHERE name = ?`, "sink").Scan(&minute, &state); err != nil {
				t.Fatal(err)
			}
			if minute != 42 || !bytes.Equal(state, []byte{1, 2}) {
				t.Fatalf("checkpoint = %d %x", minute, state)
			}

			st := s.Stats()
			t.Logf("errors %v requests %v statements %v system %d peak %d", st.Errors, st.Requests, st.Statements, st.SystemStatements, st.InFlightPeak)
			wantComp := tc.name
			if st.Compression[wantComp] == 0 {
				t.Fatalf("no connection negotiated %q: %v", wantComp, st.Compression)
			}
			if len(st.Compression) != 1 {
				t.Fatalf("connections negotiated several codecs: %v", st.Compression)
			}
			// gocql asks for v5 first; v5 segments allow no snappy
			// (TestV5Gocql).
			if wantV := map[string]int{"none": 5, "lz4": 5, "snappy": 4}[tc.name]; st.ProtocolVersions[wantV] == 0 || len(st.RejectedVersions) != 0 {
				t.Fatalf("want v%d used and no version refused: versions %v rejected %v", wantV, st.ProtocolVersions, st.RejectedVersions)
			}
			for i, p := range st.BatchPartitions {
				if p != 1 {
					t.Fatalf("batch %d touched %d partitions, want 1", i, p)
				}
			}
			if len(st.BatchPartitions) != len(want) || st.Batches["UNLOGGED"] != int64(len(want)) {
				t.Fatalf("batches = %d (%v), want %d", len(st.BatchPartitions), st.Batches, len(want))
			}
			if st.Statements["INSERT"] != int64(len(rows)+2) {
				t.Fatalf("INSERT statements = %d, want %d", st.Statements["INSERT"], len(rows)+2)
			}
			if st.BytesReceived == 0 || st.BytesSent == 0 {
				t.Fatal("no bytes counted")
			}
		})
	}
}

// dedupSorted is the reference model: last write per cell wins, rows ordered by
// signed cell.
func dedupSorted(rows []featureRow) []featureRow {
	last := map[int64]featureRow{}
	for _, r := range rows {
		last[r.cell] = r
	}
	out := make([]featureRow, 0, len(last))
	for _, r := range last {
		out = append(out, r)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].cell < out[j-1].cell; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
