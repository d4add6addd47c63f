package cqltest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// The reference model of TestTimestampsMatchModel: every write and
// deletion ever made, and a read that applies Cassandra's rules to them
// directly, with none of the store's bookkeeping.
type tsModel struct {
	writes []tsWrite
	dels   []tsDel
}

type tsWrite struct {
	p, c   int
	col    string // "v", "w", or "" for the row marker (INSERT)
	val    int    // -1: null (a tombstone)
	ts     int64
	insert bool
}

type tsDel struct {
	p        int
	lo, hi   int // rows lo <= c < hi
	col      string
	ts       int64
	allOfRow bool
}

// cell is the winning write of (p, c, col) and whether it is visible: the
// highest timestamp, a tombstone on a tie, then the greater value
// (db/rows/Cells.java); hidden by any deletion with a timestamp not below
// it (db/DeletionTime.java).
func (m *tsModel) cell(p, c int, col string) (val int, live bool) {
	var best *tsWrite
	for i := range m.writes {
		w := &m.writes[i]
		if w.p != p || w.c != c || w.col != col {
			continue
		}
		switch {
		case best == nil, w.ts > best.ts:
			best = w
		case w.ts == best.ts:
			if (w.val == -1) != (best.val == -1) {
				if w.val == -1 {
					best = w
				}
			} else if w.val > best.val {
				best = w
			}
		}
	}
	if best == nil || best.val == -1 {
		return 0, false
	}
	for _, d := range m.dels {
		if d.p == p && d.lo <= c && c < d.hi && (d.allOfRow || d.col == col) && d.ts >= best.ts {
			return 0, false
		}
	}
	return best.val, true
}

func (m *tsModel) rows(p int) []string {
	cs := map[int]bool{}
	for _, w := range m.writes {
		if w.p == p {
			cs[w.c] = true
		}
	}
	var out []string
	for c := range cs {
		_, marker := m.cell(p, c, "")
		v, vl := m.cell(p, c, "v")
		w, wl := m.cell(p, c, "w")
		if !marker && !vl && !wl {
			continue
		}
		show := func(x int, ok bool) string {
			if !ok {
				return "null"
			}
			return fmt.Sprint(x)
		}
		out = append(out, fmt.Sprintf("%d:%s:%s", c, show(v, vl), show(w, wl)))
	}
	sort.Slice(out, func(i, j int) bool {
		var a, b int
		fmt.Sscanf(out[i], "%d", &a)
		fmt.Sscanf(out[j], "%d", &b)
		return a < b
	})
	return out
}

// TestTimestampsMatchModel: random writes and deletions, each with its
// own timestamp, often tied and arriving out of order, read back as the model says Cassandra reconciles them:
// the highest timestamp wins, a delete wins a tie, a write older than a
// deletion that arrives after it stays deleted.
func TestTimestampsMatchModel(t *testing.T) {
	s := startServer(t, Config{})
	newKS(t, s)
	mustExec(t, s, `CREATE TABLE k.t (p int, c int, v int, w int, PRIMARY KEY (p, c))`)
	m := &tsModel{}
	r := rand.New(rand.NewPCG(11, 12))
	val := func() (string, int) {
		if r.IntN(8) == 0 {
			return "null", -1
		}
		n := r.IntN(1000)
		return fmt.Sprint(n), n
	}
	check := func(after int) int {
		t.Helper()
		total := 0
		for p := range 3 {
			var got []string
			for _, row := range mustExec(t, s, fmt.Sprintf(`SELECT c, v, w FROM k.t WHERE p = %d`, p)) {
				show := func(b []byte) string {
					if b == nil {
						return "null"
					}
					return fmt.Sprint(int32(binary.BigEndian.Uint32(b)))
				}
				got = append(got, fmt.Sprintf("%d:%s:%s", int32(binary.BigEndian.Uint32(row[0])), show(row[1]), show(row[2])))
			}
			want := m.rows(p)
			if !slices.Equal(got, want) {
				t.Fatalf("after %d operations, partition %d:\n got %v\nwant %v", after, p, got, want)
			}
			total += len(want)
		}
		if n, _ := s.Rows("k", "t"); n != total {
			t.Fatalf("after %d operations: Rows = %d, want %d", after, n, total)
		}
		return total
	}
	rows := 0
	for i := range 3000 {
		if i%50 == 49 {
			rows += check(i)
		}
		// Timestamps rise with time but arrive up to 30 out of order, and
		// often tie.
		p, c, ts := r.IntN(3), r.IntN(12), int64(i/4+r.IntN(30))
		switch op := r.IntN(20); {
		case op < 6:
			vs, v := val()
			ws, w := val()
			mustExec(t, s, fmt.Sprintf(`INSERT INTO k.t (p, c, v, w) VALUES (%d, %d, %s, %s) USING TIMESTAMP %d`, p, c, vs, ws, ts))
			m.writes = append(m.writes, tsWrite{p, c, "", 0, ts, true}, tsWrite{p, c, "v", v, ts, true}, tsWrite{p, c, "w", w, ts, true})
		case op < 11:
			col := []string{"v", "w"}[r.IntN(2)]
			vs, v := val()
			mustExec(t, s, fmt.Sprintf(`UPDATE k.t USING TIMESTAMP %d SET %s = %s WHERE p = %d AND c = %d`, ts, col, vs, p, c))
			m.writes = append(m.writes, tsWrite{p, c, col, v, ts, false})
		case op < 14:
			mustExec(t, s, fmt.Sprintf(`DELETE FROM k.t USING TIMESTAMP %d WHERE p = %d AND c = %d`, ts, p, c))
			m.dels = append(m.dels, tsDel{p, c, c + 1, "", ts, true})
		case op < 16:
			col := []string{"v", "w"}[r.IntN(2)]
			mustExec(t, s, fmt.Sprintf(`DELETE %s FROM k.t USING TIMESTAMP %d WHERE p = %d AND c = %d`, col, ts, p, c))
			m.dels = append(m.dels, tsDel{p, c, c + 1, col, ts, false})
		case op < 18:
			hi := r.IntN(13)
			mustExec(t, s, fmt.Sprintf(`DELETE FROM k.t USING TIMESTAMP %d WHERE p = %d AND c < %d`, ts, p, hi))
			m.dels = append(m.dels, tsDel{p, -1 << 30, hi, "", ts, true})
		case op < 19:
			lo := r.IntN(13)
			mustExec(t, s, fmt.Sprintf(`DELETE FROM k.t USING TIMESTAMP %d WHERE p = %d AND c >= %d`, ts, p, lo))
			m.dels = append(m.dels, tsDel{p, lo, 1 << 30, "", ts, true})
		default:
			mustExec(t, s, fmt.Sprintf(`DELETE FROM k.t USING TIMESTAMP %d WHERE p = %d`, ts, p))
			m.dels = append(m.dels, tsDel{p, -1 << 30, 1 << 30, "", ts, true})
		}
	}
	if rows += check(3000); rows < 300 {
		t.Fatalf("%d rows seen in all checks: too few to test anything", rows)
	}
}

// TestTimestampsThroughGocql: gocql sends its own (client) timestamps by
// default; a write carrying an older one than the cell's is ignored, in a
// query or a batch, and a write with no client timestamp gets the
// server's (microseconds).
func TestTimestampsThroughGocql(t *testing.T) {
	s := startServer(t, Config{})
	sess := newSession(t, s, nil, nil)
	createSchema(t, sess)
	now := time.Now().UnixMicro()
	exec := func(q *gocql.Query) {
		t.Helper()
		if err := q.Exec(); err != nil {
			t.Fatal(err)
		}
	}
	read := func() (minute int64) {
		t.Helper()
		if err := sess.Query(`SELECT minute FROM demandpipe.checkpoints WHERE name = 'x'`).Scan(&minute); err != nil {
			t.Fatal(err)
		}
		return minute
	}
	exec(sess.Query(insertCheckpoint, "x", int64(1), []byte{1}).WithTimestamp(now + 1e6))
	exec(sess.Query(insertCheckpoint, "x", int64(2), []byte{2})) // gocql's clock: a second older
	if got := read(); got != 1 {
		t.Fatalf("a write with an older timestamp replaced the newer: minute %d", got)
	}
	b := sess.Batch(gocql.UnloggedBatch).WithTimestamp(now + 2e6)
	b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: insertCheckpoint, Args: []any{"x", int64(3), []byte{3}}, Idempotent: true})
	if err := b.Exec(); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != 3 {
		t.Fatalf("batch with a newer timestamp: minute %d", got)
	}
	// A delete at the same timestamp as the write wins the tie.
	exec(sess.Query(`DELETE FROM demandpipe.checkpoints WHERE name = 'x'`).WithTimestamp(now + 2e6))
	var n int
	if err := sess.Query(`SELECT COUNT(*) FROM demandpipe.checkpoints WHERE name = 'x'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after a delete at the write's timestamp: %d rows (%v)", n, err)
	}
	// Without a client timestamp the server's clock decides: later.
	exec(sess.Query(insertCheckpoint, "y", int64(4), []byte{4}).DefaultTimestamp(false))
	rows := mustExec(t, s, `SELECT minute FROM demandpipe.checkpoints WHERE name = 'y'`)
	if len(rows) != 1 {
		t.Fatalf("server-timestamped write: %d rows", len(rows))
	}
}

// TestTTLIsPerCell: each cell keeps the TTL it was written with, so an
// UPDATE with a TTL expires that cell only; a row written by UPDATE alone
// is gone once its cells expired, while the row marker of an INSERT
// without TTL keeps its row, with nulls.
func TestTTLIsPerCell(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s := startServer(t, Config{Now: clock.Now})
	newKS(t, s)
	mustExec(t, s, `CREATE TABLE k.t (a int PRIMARY KEY, b int, c int)`)
	mustExec(t, s, `INSERT INTO k.t (a, b, c) VALUES (1, 1, 1) USING TTL 100`)
	mustExec(t, s, `UPDATE k.t USING TTL 10 SET b = 2 WHERE a = 1`)
	mustExec(t, s, `UPDATE k.t USING TTL 10 SET b = 3 WHERE a = 2`) // no INSERT: no marker
	mustExec(t, s, `INSERT INTO k.t (a, b) VALUES (3, 3)`)
	mustExec(t, s, `UPDATE k.t USING TTL 10 SET b = 4 WHERE a = 3`)
	clock.Advance(11 * time.Second)
	got := map[int32]string{}
	for _, r := range mustExec(t, s, `SELECT a, b, c FROM k.t`) {
		got[int32(binary.BigEndian.Uint32(r[0]))] = fmt.Sprintf("%x/%x", r[1], r[2])
	}
	want := map[int32]string{1: "/00000001", 3: "/"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after 11 s: %v, want %v (row 1 keeps c, row 2 is gone, row 3 lives on its marker)", got, want)
	}
	clock.Advance(90 * time.Second)
	if n, _ := s.Rows("k", "t"); n != 1 {
		t.Fatalf("after 101 s: %d rows, want 1 (row 3)", n)
	}
}

// TestTombstoneThresholds: a read that passes more expired or deleted
// cells than tombstone_warn_threshold answers with a warning (gocql's
// Iter.Warnings), more than tombstone_failure_threshold fails with
// READ_FAILURE (reason READ_TOO_MANY_TOMBSTONES); a LIMIT met by live rows
// before the tombstones reads none of them; gc_grace_seconds later a node
// that purged them reads clean (Config.PurgeTombstones), one that did not
// still fails; a range deletion over them leaves its two bounds to count.
func TestTombstoneThresholds(t *testing.T) {
	for _, purge := range []bool{false, true} {
		t.Run(fmt.Sprintf("purge=%v", purge), func(t *testing.T) {
			clock := &fakeClock{t: time.Now()}
			s := startServer(t, Config{Now: clock.Now, TombstoneWarnThreshold: 20, TombstoneFailureThreshold: 50, PurgeTombstones: purge})
			newKS(t, s)
			mustExec(t, s, `CREATE TABLE k.q (p text, c int, a int, b int, PRIMARY KEY (p, c)) WITH CLUSTERING ORDER BY (c DESC) AND gc_grace_seconds = 60`)
			sess := newSession(t, s, nil, nil)
			// Rows 0..29 expire after 10 s (two cells each); 30..34 live.
			for c := range 35 {
				ttl := 10
				if c >= 30 {
					ttl = 0
				}
				if err := sess.Query(`INSERT INTO k.q (p, c, a, b) VALUES ('x', ?, ?, ?) USING TTL ?`, c, c, c, ttl).Exec(); err != nil {
					t.Fatal(err)
				}
			}
			clock.Advance(11 * time.Second)
			// Newest first: the five live rows meet LIMIT 5 before any tombstone.
			iter := sess.Query(`SELECT c FROM k.q WHERE p = 'x' LIMIT 5`).Iter()
			if n := iter.NumRows(); n != 5 || len(iter.Warnings()) != 0 {
				t.Fatalf("LIMIT 5: %d rows, warnings %q", n, iter.Warnings())
			}
			iter.Close()
			// c >= 15 reads past 15 expired rows: 30 tombstones, a warning.
			iter = sess.Query(`SELECT c FROM k.q WHERE p = 'x' AND c >= 15`).Iter()
			if n := iter.NumRows(); n != 5 || len(iter.Warnings()) != 1 || !strings.Contains(iter.Warnings()[0], "5 live rows and 30 tombstone cells") {
				t.Fatalf("c >= 15: %d rows, warnings %q", n, iter.Warnings())
			}
			iter.Close()
			// The whole partition: 60 tombstones, READ_FAILURE.
			err := sess.Query(`SELECT c FROM k.q WHERE p = 'x'`).Exec()
			var rf *gocql.RequestErrReadFailure
			if !errors.As(err, &rf) || rf.NumFailures+len(rf.ErrorMap) == 0 {
				t.Fatalf("whole partition: %v, want a read failure", err)
			}
			if st := s.Stats(); st.TombstoneWarnings != 1 || st.TombstoneFailures != 1 || st.Errors["ReadFailure"] != 1 {
				t.Fatalf("stats: warnings %d failures %d errors %v", st.TombstoneWarnings, st.TombstoneFailures, st.Errors)
			}
			// A range deletion hides the expired rows behind two bounds.
			clock.Advance(70 * time.Second) // past gc_grace_seconds
			err = sess.Query(`SELECT c FROM k.q WHERE p = 'x'`).Exec()
			if purge != (err == nil) {
				t.Fatalf("after gc_grace_seconds, purge=%v: %v", purge, err)
			}
			if err := sess.Query(`DELETE FROM k.q WHERE p = 'x' AND c < 30`).Exec(); err != nil {
				t.Fatal(err)
			}
			iter = sess.Query(`SELECT c FROM k.q WHERE p = 'x'`).Iter()
			if n := iter.NumRows(); n != 5 || len(iter.Warnings()) != 0 {
				t.Fatalf("after the range deletion: %d rows, warnings %q", n, iter.Warnings())
			}
			if err := iter.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestWrongSizeValuesAreInvalid: a bound value of the wrong size for its
// column's type is refused with Cassandra's message (and nothing is
// written), in an INSERT, a WHERE clause and a BATCH.
func TestWrongSizeValuesAreInvalid(t *testing.T) {
	s := startServer(t, Config{})
	newKS(t, s)
	mustExec(t, s, `CREATE TABLE k.t (p bigint, c int, u uuid, s text, PRIMARY KEY (p, c))`)
	c := dial(t, s, nil)
	c.startup("")
	eight, four := make([]byte, 8), make([]byte, 4)
	for i, tc := range []struct {
		m    message.Message
		want string
	}{
		{query("INSERT INTO k.t (p, c) VALUES (?, ?)", four, four), "Expected 8 or 0 byte long (4)"},
		{query("INSERT INTO k.t (p, c) VALUES (?, ?)", eight, eight), "Expected 4 or 0 byte int (8)"},
		{query("INSERT INTO k.t (p, c, u) VALUES (?, ?, ?)", eight, four, eight), "UUID should be 16 or 0 bytes (8)"},
		{query("INSERT INTO k.t (p, c, s) VALUES (?, ?, ?)", eight, four, []byte{0xff, 0xfe}), "String didn't validate."},
		{query("SELECT * FROM k.t WHERE p = ?", four), "Expected 8 or 0 byte long (4)"},
		{&message.Batch{Type: primitive.BatchTypeUnlogged, Consistency: primitive.ConsistencyLevelOne, Children: []*message.BatchChild{
			{Query: "INSERT INTO k.t (p, c) VALUES (?, ?)", Values: []*primitive.Value{primitive.NewValue(eight), primitive.NewValue(four)}},
			{Query: "INSERT INTO k.t (p, c) VALUES (?, ?)", Values: []*primitive.Value{primitive.NewValue(four), primitive.NewValue(four)}},
		}}, "Expected 8 or 0 byte long (4)"},
	} {
		c.send(int16(20+i), tc.m, false)
		f := c.recv()
		inv, ok := f.Body.Message.(*message.Invalid)
		if !ok || inv.ErrorMessage != tc.want {
			t.Fatalf("case %d: %v, want INVALID %q", i, f.Body.Message, tc.want)
		}
	}
	if n, _ := s.Rows("k", "t"); n != 0 {
		t.Fatalf("%d rows written by refused statements", n)
	}
	// The right sizes (and empty values) pass.
	c.send(30, query("INSERT INTO k.t (p, c, u) VALUES (?, ?, ?)", eight, four, []byte{}), false)
	if _, ok := c.recv().Body.Message.(*message.VoidResult); !ok {
		t.Fatal("a well-sized insert was refused")
	}
}

// bigintMarshaler marshals into 4 bytes whatever the column: a client bug
// the server must catch.
type bigintMarshaler int32

func (v bigintMarshaler) MarshalCQL(gocql.TypeInfo) ([]byte, error) {
	return binary.BigEndian.AppendUint32(nil, uint32(v)), nil
}

// TestUnpreparedReprepares: after ForgetPrepared (an evicted cache, a
// restart), EXECUTE and BATCH of a prepared id get UNPREPARED (0x2500) and
// gocql prepares again and succeeds; a wrong-size value through gocql is
// INVALID.
func TestUnpreparedReprepares(t *testing.T) {
	s := startServer(t, Config{})
	sess := newSession(t, s, nil, nil)
	createSchema(t, sess)
	batch := func(name string) error {
		b := sess.Batch(gocql.UnloggedBatch)
		for i := range 3 {
			b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: insertCheckpoint, Args: []any{name, int64(i), []byte{1}}, Idempotent: true})
		}
		return b.ExecContext(context.Background())
	}
	if err := sess.Query(insertCheckpoint, "a", int64(1), []byte{1}).Exec(); err != nil {
		t.Fatal(err)
	}
	if err := batch("b"); err != nil {
		t.Fatal(err)
	}
	prepares := s.Stats().Requests["PREPARE"]
	for round := range 3 {
		if n := s.ForgetPrepared(); n == 0 {
			t.Fatal("nothing to forget")
		}
		if err := sess.Query(insertCheckpoint, "a", int64(round), []byte{1}).Exec(); err != nil {
			t.Fatalf("EXECUTE after ForgetPrepared: %v", err)
		}
		s.ForgetPrepared()
		if err := batch(fmt.Sprint("b", round)); err != nil {
			t.Fatalf("BATCH after ForgetPrepared: %v", err)
		}
	}
	st := s.Stats()
	if st.Errors["Unprepared"] < 6 || st.Requests["PREPARE"] < prepares+6 {
		t.Fatalf("unprepared %d, prepares %d -> %d", st.Errors["Unprepared"], prepares, st.Requests["PREPARE"])
	}
	var n int
	if err := sess.Query(`SELECT COUNT(*) FROM demandpipe.checkpoints WHERE name = 'b2'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("batch rows: %d, %v", n, err)
	}
	err := sess.Query(`INSERT INTO demandpipe.features (product, minute, region, cell, f) VALUES (?, ?, ?, ?, ?)`,
		int8(1), bigintMarshaler(1), int64(1), int64(1), []byte{}).Exec()
	var re gocql.RequestError
	if !errors.As(err, &re) || re.Code() != gocql.ErrCodeInvalid || re.Message() != "Expected 8 or 0 byte long (4)" {
		t.Fatalf("4 bytes for a bigint through gocql: %v", err)
	}
}

// TestTimeoutAppliedFault: FaultTimeoutApplied writes, then answers
// WRITE_TIMEOUT; an idempotent retry writes the same row again.
func TestTimeoutAppliedFault(t *testing.T) {
	s := startServer(t, Config{})
	sess := newSession(t, s, nil, nil)
	createSchema(t, sess)
	s.InjectFault(FaultTimeoutApplied, 2)
	err := sess.Query(insertCheckpoint, "t", int64(1), []byte{1}).Exec()
	var wt *gocql.RequestErrWriteTimeout
	if !errors.As(err, &wt) {
		t.Fatalf("got %v, want a write timeout", err)
	}
	b := sess.Batch(gocql.UnloggedBatch)
	b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: insertCheckpoint, Args: []any{"u", int64(2), []byte{2}}, Idempotent: true})
	if err := b.Exec(); !errors.As(err, &wt) || wt.WriteType != "UNLOGGED_BATCH" {
		t.Fatalf("batch: %v, want an UNLOGGED_BATCH write timeout", err)
	}
	for _, name := range []string{"t", "u"} {
		if rows := mustExec(t, s, `SELECT minute FROM demandpipe.checkpoints WHERE name = '`+name+`'`); len(rows) != 1 {
			t.Fatalf("%s: the timed-out write was not applied", name)
		}
	}
	if st := s.Stats(); st.Injected != 2 || st.Errors["WriteTimeout"] != 2 {
		t.Fatalf("injected %d, errors %v", st.Injected, st.Errors)
	}
}
