package cqltest

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// TestPlacementGolden pins the replica arithmetic against hand-worked cases
// of Cassandra's ConsistencyLevel.blockFor and
// ReplicaPlans.assureSufficientLiveReplicas.
func TestPlacementGolden(t *testing.T) {
	const dc = "datacenter1"
	simple := func(rf string) map[string]string {
		return map[string]string{"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": rf}
	}
	nts := func(kv ...string) map[string]string {
		m := map[string]string{"class": "org.apache.cassandra.locator.NetworkTopologyStrategy"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	const (
		anyCL = primitive.ConsistencyLevelAny
		one   = primitive.ConsistencyLevelOne
		two   = primitive.ConsistencyLevelTwo
		three = primitive.ConsistencyLevelThree
		q     = primitive.ConsistencyLevelQuorum
		all   = primitive.ConsistencyLevelAll
		lq    = primitive.ConsistencyLevelLocalQuorum
		eq    = primitive.ConsistencyLevelEachQuorum
		ser   = primitive.ConsistencyLevelSerial
		lser  = primitive.ConsistencyLevelLocalSerial
		lone  = primitive.ConsistencyLevelLocalOne
	)
	for _, tc := range []struct {
		repl            map[string]string
		cl              primitive.ConsistencyLevel
		live            int
		required, alive int    // 0, 0: no error
		msg             string // "" : "Cannot achieve consistency level " + name
	}{
		// The case: one node, rf=3.
		{simple("3"), lq, 1, 2, 1, ""},
		{simple("3"), q, 1, 2, 1, ""},
		{simple("3"), all, 1, 3, 1, ""},
		{simple("3"), two, 1, 2, 1, ""},
		{simple("3"), ser, 1, 2, 1, ""},
		{simple("3"), one, 1, 0, 0, ""},
		{simple("3"), lone, 1, 0, 0, ""},
		{simple("3"), anyCL, 1, 0, 0, ""}, // a hint on the coordinator will do
		{simple("3"), eq, 1, 2, 1, ""},    // SimpleStrategy: a plain quorum
		// Enough nodes, or a smaller rf.
		{simple("3"), lq, 2, 0, 0, ""},
		{simple("3"), all, 3, 0, 0, ""},
		{simple("3"), all, 2, 3, 2, ""},
		{simple("1"), lq, 1, 0, 0, ""},
		{simple("1"), all, 5, 0, 0, ""},
		{simple("1"), two, 5, 2, 1, ""}, // replicas are min(rf, nodes)
		{simple("3"), three, 5, 0, 0, ""},
		{simple("2"), three, 5, 3, 2, ""},
		{simple("5"), q, 2, 3, 2, ""},
		{simple("0"), one, 3, 1, 0, ""},
		{simple("3/1"), lq, 1, 2, 1, ""}, // transient replication counts every replica
		// NetworkTopologyStrategy: live nodes are all in the local DC.
		{nts(dc, "3"), lq, 1, 2, 1, ""},
		{nts(dc, "3"), lq, 2, 0, 0, ""},
		{nts(dc, "5"), lq, 2, 3, 2, ""},
		{nts(dc, "3", "dc2", "3"), lq, 3, 0, 0, ""},
		{nts(dc, "3", "dc2", "3"), q, 3, 4, 3, ""},
		{nts(dc, "3", "dc2", "3"), all, 3, 6, 3, ""},
		{nts(dc, "3", "dc2", "3"), eq, 3, 2, 0, "Cannot achieve consistency level EACH_QUORUM in DC dc2"},
		{nts(dc, "3", "dc2", "3"), eq, 1, 2, 1, "Cannot achieve consistency level EACH_QUORUM in DC datacenter1"},
		{nts(dc, "3"), eq, 3, 0, 0, ""},
		{nts("dc2", "3"), lone, 3, 1, 0, ""}, // no replica in the local DC
		{nts("dc2", "3"), one, 3, 1, 0, ""},
		{nts("dc2", "3"), lq, 3, 1, 0, ""}, // localQuorumFor: 0/2 + 1
		// LOCAL_SERIAL needs a local quorum of all live replicas (no branch
		// of its own in assureSufficientLiveReplicas).
		{nts(dc, "3", "dc2", "3"), lser, 1, 2, 1, ""},
		// 4.0's NTS 'replication_factor' default applies to every known DC.
		{map[string]string{"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "replication_factor": "3"}, lq, 1, 2, 1, ""},
	} {
		p := parsePlacement(tc.repl, dc)
		if p == nil {
			t.Fatalf("%v: not parsed", tc.repl)
		}
		err := p.check(tc.cl, p.liveReplicas(dc, tc.live), dc)
		name := clName(tc.cl) + " " + strconv.Itoa(tc.live) + " live " + strings.Join([]string{tc.repl["replication_factor"], tc.repl[dc], tc.repl["dc2"]}, "/")
		if tc.required == 0 {
			if err != nil {
				t.Errorf("%s: %v, want no error", name, err)
			}
			continue
		}
		var re *reqError
		if !errors.As(err, &re) || re.code != codeUnavailable {
			t.Errorf("%s: %v, want Unavailable", name, err)
			continue
		}
		want := tc.msg
		if want == "" {
			want = "Cannot achieve consistency level " + clName(tc.cl)
		}
		if re.cl != tc.cl || re.required != int32(tc.required) || re.alive != int32(tc.alive) || re.msg != want {
			t.Errorf("%s: %s cl=%s required=%d alive=%d, want %q required=%d alive=%d", name, re.msg, clName(re.cl), re.required, re.alive, want, tc.required, tc.alive)
		}
	}
	for _, repl := range []map[string]string{
		{"class": "org.apache.cassandra.locator.LocalStrategy"},
		{"class": "org.apache.cassandra.locator.SimpleStrategy"},
		{"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": "x"},
		{"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", dc: "-1"},
	} {
		if p := parsePlacement(repl, dc); p != nil {
			t.Errorf("%v parsed as %+v: want no check", repl, p)
		}
	}
}

// unavailableSchema creates keyspace rf3 (SimpleStrategy, 3) and nts
// (datacenter1: 1, dc2: 1), each with table t, through Server.Exec (which
// carries no consistency level).
func unavailableSchema(t *testing.T, s *Server) {
	t.Helper()
	for _, q := range []string{
		`CREATE KEYSPACE rf3 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}`,
		`CREATE TABLE rf3.t (k int PRIMARY KEY, v text)`,
		`CREATE KEYSPACE nts WITH replication = {'class': 'NetworkTopologyStrategy', 'datacenter1': 1, 'dc2': 1}`,
		`CREATE TABLE nts.t (k int PRIMARY KEY, v text)`,
	} {
		if _, err := s.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestUnavailableThroughGocql: with one live node (the default) a keyspace of
// replication_factor 3 refuses LOCAL_QUORUM, QUORUM and ALL reads and
// writes with UNAVAILABLE and the body Cassandra sends (the Go driver decodes
// it into RequestErrUnavailable), applies nothing, and counts no injected
// fault; ONE works. More live nodes (SetLiveNodes, POST /nodes) lift it.
func TestUnavailableThroughGocql(t *testing.T) {
	s := startServer(t, Config{})
	unavailableSchema(t, s)
	sess := newSession(t, s, nil, func(c *gocql.ClusterConfig) {
		c.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 0}
	})
	ctx := context.Background()
	const ins = `INSERT INTO rf3.t (k, v) VALUES (?, ?)`
	check := func(what string, err error, cl gocql.Consistency, required, alive int, where ...string) {
		t.Helper()
		var u *gocql.RequestErrUnavailable
		if !errors.As(err, &u) {
			t.Fatalf("%s: %v, want Unavailable", what, err)
		}
		if u.Code() != gocql.ErrCodeUnavailable || u.Consistency != cl || u.Required != required || u.Alive != alive ||
			u.Message() != "Cannot achieve consistency level "+cl.String()+strings.Join(where, "") {
			t.Fatalf("%s: code %#x %q consistency=%v required=%d alive=%d, want %#x consistency=%v required=%d alive=%d",
				what, u.Code(), u.Message(), u.Consistency, u.Required, u.Alive, gocql.ErrCodeUnavailable, cl, required, alive)
		}
	}
	// EXECUTE (gocql prepares every DML statement).
	check("insert LOCAL_QUORUM", sess.Query(ins, 1, "a").Consistency(gocql.LocalQuorum).ExecContext(ctx), gocql.LocalQuorum, 2, 1)
	var v string
	check("select ALL", sess.Query(`SELECT v FROM rf3.t WHERE k = ?`, 1).Consistency(gocql.All).ScanContext(ctx, &v), gocql.All, 3, 1)
	// BATCH of prepared entries, and of plain query strings (no arguments:
	// gocql sends the text).
	b := sess.Batch(gocql.UnloggedBatch).Query(ins, 2, "b").Query(ins, 2, "c")
	b.Cons = gocql.Quorum
	check("batch QUORUM", b.ExecContext(ctx), gocql.Quorum, 2, 1)
	b = sess.Batch(gocql.LoggedBatch).Query(`INSERT INTO rf3.t (k, v) VALUES (4, 'x')`)
	b.Cons = gocql.LocalQuorum
	check("batch of text LOCAL_QUORUM", b.ExecContext(ctx), gocql.LocalQuorum, 2, 1)
	if n, _ := s.Rows("rf3", "t"); n != 0 {
		t.Fatalf("%d rows applied by refused writes", n)
	}
	st := s.Stats()
	if st.Errors["Unavailable"] != 4 || st.Injected != 0 {
		t.Fatalf("errors %v, injected %d: want 4 Unavailable, none injected", st.Errors, st.Injected)
	}

	// What one node can do.
	if err := sess.Query(ins, 1, "a").Consistency(gocql.One).ExecContext(ctx); err != nil {
		t.Fatalf("insert ONE: %v", err)
	}
	if err := sess.Query(`SELECT v FROM rf3.t WHERE k = ?`, 1).Consistency(gocql.LocalOne).ScanContext(ctx, &v); err != nil || v != "a" {
		t.Fatalf("select LOCAL_ONE: %q %v", v, err)
	}
	// System tables are never checked (drivers must always discover the node).
	var rel string
	if err := sess.Query(`SELECT release_version FROM system.local WHERE key = 'local'`).Consistency(gocql.All).ScanContext(ctx, &rel); err != nil {
		t.Fatalf("system.local at ALL: %v", err)
	}

	// Two nodes come up: a local quorum of 3 is there, ALL is not.
	h := s.ControlHandler()
	post := func(url string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", url, nil))
		return rec.Code
	}
	if post("/nodes?live=0") != http.StatusBadRequest || post("/nodes?live=2") != http.StatusOK || s.LiveNodes() != 2 {
		t.Fatalf("POST /nodes: %d live nodes", s.LiveNodes())
	}
	if err := sess.Query(ins, 5, "e").Consistency(gocql.LocalQuorum).ExecContext(ctx); err != nil {
		t.Fatalf("LOCAL_QUORUM with 2 of 3 replicas live: %v", err)
	}
	check("insert ALL", sess.Query(ins, 6, "f").Consistency(gocql.All).ExecContext(ctx), gocql.All, 3, 2)
	s.SetLiveNodes(3)
	if err := sess.Query(ins, 6, "f").Consistency(gocql.All).ExecContext(ctx); err != nil {
		t.Fatalf("ALL with 3 live: %v", err)
	}
	// EACH_QUORUM needs a quorum in dc2, where no node is.
	check("EACH_QUORUM", sess.Query(`INSERT INTO nts.t (k, v) VALUES (?, ?)`, 1, "a").Consistency(gocql.EachQuorum).ExecContext(ctx), gocql.EachQuorum, 1, 0, " in DC dc2")

	// Config.LiveNodes starts a server with them.
	s3 := startServer(t, Config{LiveNodes: 3})
	unavailableSchema(t, s3)
	sess3 := newSession(t, s3, nil, nil)
	if err := sess3.Query(ins, 1, "a").Consistency(gocql.All).ExecContext(ctx); err != nil {
		t.Fatalf("ALL on a 3-node double: %v", err)
	}
}

// TestUnavailableQueryFrame: a QUERY (not prepared) gets the ERROR frame
// with code 0x1000 and the body consistency, required, alive.
func TestUnavailableQueryFrame(t *testing.T) {
	s := startServer(t, Config{})
	unavailableSchema(t, s)
	c := dial(t, s, nil)
	c.send(1, &message.Startup{Options: map[string]string{"CQL_VERSION": "3.0.0"}}, false)
	c.recv()
	c.send(2, &message.Query{Query: `INSERT INTO rf3.t (k, v) VALUES (1, 'a')`,
		Options: &message.QueryOptions{Consistency: primitive.ConsistencyLevelLocalQuorum}}, false)
	f := c.recv()
	u, ok := f.Body.Message.(*message.Unavailable)
	if !ok || f.Header.StreamId != 2 || u.GetErrorCode() != primitive.ErrorCodeUnavailable || u.Consistency != primitive.ConsistencyLevelLocalQuorum || u.Required != 2 || u.Alive != 1 {
		t.Fatalf("got %v", f.Body.Message)
	}
}

// TestPythonDriverSeesUnavailable: the DataStax Python driver, an independent
// decoder of the protocol, gets cassandra.Unavailable with the consistency,
// required and alive replicas for a QUERY, an EXECUTE and a BATCH.
func TestPythonDriverSeesUnavailable(t *testing.T) {
	requirePython(t)
	s := startServer(t, Config{})
	unavailableSchema(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "testdata/unavailable.py", strconv.Itoa(s.Port()))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	const summary = ` Error from server: code=1000 [Unavailable exception] message="Cannot achieve consistency level `
	want := "query LOCAL_QUORUM 2 1" + summary + `LOCAL_QUORUM"` + "\n" +
		"execute ALL 3 1" + summary + `ALL"` + "\n" +
		"batch QUORUM 2 1" + summary + `QUORUM"` + "\n" +
		"each_quorum EACH_QUORUM 1 0" + summary + `EACH_QUORUM in DC dc2"` + "\n" +
		"one ok\n"
	if string(out) != want {
		t.Fatalf("python driver saw:\n%s\nwant:\n%s", out, want)
	}
	if n, _ := s.Rows("rf3", "t"); n != 1 {
		t.Fatalf("%d rows, want the one written at ONE", n)
	}
}
