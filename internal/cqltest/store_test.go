package cqltest

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustExec(t *testing.T, s *Server, q string) [][][]byte {
	t.Helper()
	rows, err := s.Exec(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return rows
}

func newKS(t *testing.T, s *Server) {
	mustExec(t, s, `CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
}

// TestStoreMatchesModel pins inserts, upserts, row and partition deletes, and
// clustering order against a map-and-sort reference over random operations.
func TestStoreMatchesModel(t *testing.T) {
	s := startServer(t, Config{})
	newKS(t, s)
	mustExec(t, s, `CREATE TABLE k.t (p int, c bigint, v blob, PRIMARY KEY (p, c))`)
	model := map[int32]map[int64]string{}
	r := rand.New(rand.NewPCG(7, 8))
	for range 2000 {
		p := int32(r.IntN(4))
		c := r.Int64N(2000) - 1000
		switch op := r.IntN(20); {
		case op == 0:
			mustExec(t, s, fmt.Sprintf(`DELETE FROM k.t WHERE p = %d`, p))
			delete(model, p)
		case op < 4:
			mustExec(t, s, fmt.Sprintf(`DELETE FROM k.t WHERE p = %d AND c = %d`, p, c))
			delete(model[p], c)
		default:
			v := fmt.Sprintf("%08x", r.Uint32())
			mustExec(t, s, fmt.Sprintf(`INSERT INTO k.t (p, c, v) VALUES (%d, %d, 0x%s)`, p, c, v))
			if model[p] == nil {
				model[p] = map[int64]string{}
			}
			model[p][c] = v
		}
	}
	total := 0
	for p := range int32(4) {
		var want []string
		cs := make([]int64, 0, len(model[p]))
		for c := range model[p] {
			cs = append(cs, c)
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i] < cs[j] })
		for _, c := range cs {
			want = append(want, fmt.Sprintf("%d:%s", c, model[p][c]))
		}
		var got []string
		for _, row := range mustExec(t, s, fmt.Sprintf(`SELECT c, v FROM k.t WHERE p = %d`, p)) {
			got = append(got, fmt.Sprintf("%d:%x", int64(binary.BigEndian.Uint64(row[0])), row[1]))
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("partition %d:\n got %v\nwant %v", p, got, want)
		}
		total += len(want)
	}
	if n, _ := s.Rows("k", "t"); n != total {
		t.Fatalf("Rows = %d, want %d", n, total)
	}
	// Range and IN on the clustering key, and LIMIT.
	rows := mustExec(t, s, `SELECT c FROM k.t WHERE p IN (0, 1) AND c >= -100 AND c < 100 LIMIT 3`)
	if len(rows) > 3 {
		t.Fatalf("LIMIT 3 gave %d rows", len(rows))
	}
	for _, row := range rows {
		if c := int64(binary.BigEndian.Uint64(row[0])); c < -100 || c >= 100 {
			t.Fatalf("range returned %d", c)
		}
	}
	if got := mustExec(t, s, `SELECT COUNT(*) FROM k.t`); int(binary.BigEndian.Uint64(got[0][0])) != total {
		t.Fatalf("COUNT(*) = %x, want %d", got[0][0], total)
	}
}

func TestTTLExpiresRows(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s := startServer(t, Config{Now: clock.Now})
	newKS(t, s)
	mustExec(t, s, `CREATE TABLE k.t (a int PRIMARY KEY, b int) WITH default_time_to_live = 100`)
	mustExec(t, s, `INSERT INTO k.t (a, b) VALUES (1, 1)`)              // default TTL 100 s
	mustExec(t, s, `INSERT INTO k.t (a, b) VALUES (2, 2) USING TTL 10`) // explicit
	mustExec(t, s, `INSERT INTO k.t (a, b) VALUES (3, 3) USING TTL 0`)  // never
	clock.Advance(11 * time.Second)
	if n, _ := s.Rows("k", "t"); n != 2 {
		t.Fatalf("after 11 s: %d rows, want 2", n)
	}
	clock.Advance(100 * time.Second)
	rows := mustExec(t, s, `SELECT a FROM k.t`)
	if len(rows) != 1 || rows[0][0][3] != 3 {
		t.Fatalf("after 111 s: %x", rows)
	}
}

func TestConditionalInsertAndErrors(t *testing.T) {
	s := startServer(t, Config{})
	newKS(t, s)
	mustExec(t, s, `CREATE TABLE k.t (a text PRIMARY KEY, b int)`)
	if r := mustExec(t, s, `INSERT INTO k.t (a, b) VALUES ('x', 1) IF NOT EXISTS`); r[0][0][0] != 1 {
		t.Fatal("first IF NOT EXISTS not applied")
	}
	r := mustExec(t, s, `INSERT INTO k.t (a, b) VALUES ('x', 2) IF NOT EXISTS`)
	if r[0][0][0] != 0 || r[0][2][3] != 1 {
		t.Fatalf("second IF NOT EXISTS: %x", r)
	}
	mustExec(t, s, `UPDATE k.t SET b = 5 WHERE a = 'x'`)
	if r := mustExec(t, s, `SELECT b FROM k.t WHERE a = 'x'`); r[0][0][3] != 5 {
		t.Fatalf("after UPDATE: %x", r)
	}
	for _, q := range []string{
		`INSERT INTO k.t (b) VALUES (1)`,                 // missing key
		`INSERT INTO k.t (a, nope) VALUES ('y', 1)`,      // unknown column
		`SELECT * FROM k.nope`,                           // unknown table
		`SELECT * FROM t`,                                // no keyspace
		`CREATE TABLE k.t (a int PRIMARY KEY)`,           // exists
		`INSERT INTO system.local (key) VALUES ('evil')`, // system
		`INSERT INTO k.t (a, b) VALUES ('y', 'text')`,    // bad literal
	} {
		if _, err := s.Exec(q); err == nil {
			t.Errorf("%s: accepted", q)
		}
	}
	mustExec(t, s, `CREATE TABLE IF NOT EXISTS k.t (a int PRIMARY KEY)`)
	mustExec(t, s, `TRUNCATE k.t`)
	if n, _ := s.Rows("k", "t"); n != 0 {
		t.Fatalf("TRUNCATE left %d rows", n)
	}
	mustExec(t, s, `DROP TABLE k.t`)
	if _, err := s.Rows("k", "t"); err == nil {
		t.Fatal("table still there after DROP")
	}
}

func TestSystemSchemaDescribesTables(t *testing.T) {
	s := startServer(t, Config{})
	mustExec(t, s, `CREATE KEYSPACE demandpipe WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`)
	mustExec(t, s, featuresDDL)
	rows := mustExec(t, s, `SELECT column_name, kind, position, type FROM system_schema.columns WHERE keyspace_name = 'demandpipe'`)
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s/%s/%d/%s", r[0], r[1], int32(binary.BigEndian.Uint32(r[2])), r[3]))
	}
	want := "cell/clustering/0/bigint f/regular/-1/blob minute/partition_key/1/bigint product/partition_key/0/tinyint region/partition_key/2/bigint"
	if strings.Join(got, " ") != want {
		t.Fatalf("columns:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	rows = mustExec(t, s, `SELECT default_time_to_live, compaction FROM system_schema.tables WHERE keyspace_name = 'demandpipe' AND table_name = 'features'`)
	if len(rows) != 1 || binary.BigEndian.Uint32(rows[0][0]) != 7200 || !strings.Contains(string(rows[0][1]), "TimeWindowCompactionStrategy") {
		t.Fatalf("tables row: %q", rows)
	}
	rows = mustExec(t, s, `SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = 'demandpipe'`)
	if len(rows) != 1 || !strings.Contains(string(rows[0][0]), "org.apache.cassandra.locator.SimpleStrategy") {
		t.Fatalf("keyspaces row: %q", rows)
	}
	before := mustExec(t, s, `SELECT schema_version FROM system.local WHERE key = 'local'`)
	mustExec(t, s, `DROP TABLE demandpipe.features`)
	after := mustExec(t, s, `SELECT schema_version FROM system.local WHERE key = 'local'`)
	if string(before[0][0]) == string(after[0][0]) {
		t.Fatal("schema_version did not change with the schema")
	}
}

func TestPaging(t *testing.T) {
	s := startServer(t, Config{})
	newKS(t, s)
	mustExec(t, s, `CREATE TABLE k.t (p int, c int, PRIMARY KEY (p, c))`)
	for i := range 5 {
		mustExec(t, s, fmt.Sprintf(`INSERT INTO k.t (p, c) VALUES (1, %d)`, i))
	}
	st, _ := parse(`SELECT c FROM k.t WHERE p = 1`)
	var state []byte
	var got []byte
	for page := 0; ; page++ {
		msg, err := s.exec(nil, st, &execCtx{pageSize: 2, pagingState: state, now: time.Now().UnixNano()})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rowsOf(msg) {
			got = append(got, r[0][3])
		}
		state = rowsMetadata(msg).PagingState
		if state == nil {
			break
		}
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	if string(got) != "\x00\x01\x02\x03\x04" {
		t.Fatalf("paged rows %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	for _, c := range []Config{
		{Addr: "no-port"}, {Latency: -1}, {Latency: 2 * time.Minute}, {MaxFrameBytes: 10}, {MaxFrameBytes: 2 << 30},
		{LiveNodes: -1}, {LiveNodes: MaxLiveNodes + 1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := Start(Config{Addr: "no-port"}); err == nil {
		t.Error("Start accepted a bad Config")
	}
}
