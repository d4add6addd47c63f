package cqltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/datastax/go-cassandra-native-protocol/frame"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// The lease table of the lightweight-transaction tests: the shape of the
// sink's engine_state (a record per (name, kind), key and chunk clustering).
const lwtDDL = `CREATE TABLE k.l (name text, kind text, key bigint, chunk int, data blob, n int, PRIMARY KEY ((name, kind), key, chunk))`

// casAnswer runs a lightweight transaction and returns its columns' names
// and its one row, rendered "name=value" (blobs as text).
func casAnswer(t *testing.T, q *gocql.Query) (cols []string, row string) {
	t.Helper()
	iter := q.Iter()
	for _, c := range iter.Columns() {
		cols = append(cols, c.Name)
	}
	m := map[string]any{}
	if !iter.MapScan(m) {
		t.Fatalf("%s: no row", q.Statement())
	}
	if err := iter.Close(); err != nil {
		t.Fatalf("%s: %v", q.Statement(), err)
	}
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteByte(' ')
		}
		v := m[c]
		if bs, ok := v.([]byte); ok {
			v = string(bs)
		}
		fmt.Fprintf(&b, "%s=%v", c, v)
	}
	return cols, b.String()
}

// TestLightweightTransactions pins the forms a lease needs, through gocql
// at LOCAL_SERIAL, against Cassandra's answers: INSERT IF NOT EXISTS USING
// TTL; UPDATE ... IF col = ? and DELETE ... IF col = ?; not applied, the
// row [applied]=false followed by every column for IF NOT EXISTS (SELECT *
// order) and by the conditions' columns for IF col = ?, or [applied] alone
// when there is no row; null compared by = and !=; TTL expiry (a renewal by
// UPDATE USING TTL keeps the row past the INSERT's TTL); the Paxos ballot's
// timestamp, not the client's.
func TestLightweightTransactions(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := startServer(t, Config{Now: clock.Now})
	newKS(t, s)
	mustExec(t, s, lwtDDL)
	sess := newSession(t, s, nil, nil)
	q := func(stmt string, args ...any) *gocql.Query {
		return sess.Query(stmt, args...).SerialConsistency(gocql.LocalSerial).Consistency(gocql.LocalQuorum)
	}
	const (
		acquire = `INSERT INTO k.l (name, kind, key, chunk, data) VALUES (?, 'lease', 0, 0, ?) IF NOT EXISTS USING TTL ?`
		renew   = `UPDATE k.l USING TTL ? SET data = ? WHERE name = ? AND kind = 'lease' AND key = 0 AND chunk = 0 IF data = ?`
		release = `DELETE FROM k.l WHERE name = ? AND kind = 'lease' AND key = 0 AND chunk = 0 IF data = ?`
	)
	for _, tc := range []struct {
		what       string
		q          *gocql.Query
		wantCols   string
		wantRow    string
		advance    time.Duration // after the statement
		statements int
	}{
		{what: "first acquire", q: q(acquire, "a", []byte("A1"), 10),
			wantCols: "[applied]", wantRow: "[applied]=true"},
		{what: "second acquire", q: q(acquire, "a", []byte("B1"), 10),
			wantCols: "[applied] name kind key chunk data n", wantRow: "[applied]=false name=a kind=lease key=0 chunk=0 data=A1 n=0",
			advance: 8 * time.Second},
		{what: "renewal", q: q(renew, 10, []byte("A2"), "a", []byte("A1")),
			wantCols: "[applied]", wantRow: "[applied]=true"},
		{what: "stale renewal", q: q(renew, 10, []byte("A3"), "a", []byte("A1")),
			wantCols: "[applied] data", wantRow: "[applied]=false data=A2", advance: 4 * time.Second},
		// 12 s: the INSERT's TTL (its row marker) ran out, the renewed
		// data cell keeps the row.
		{what: "acquire past the first TTL", q: q(acquire, "a", []byte("B1"), 10),
			wantCols: "[applied] name kind key chunk data n", wantRow: "[applied]=false name=a kind=lease key=0 chunk=0 data=A2 n=0"},
		{what: "release by another", q: q(release, "a", []byte("B1")),
			wantCols: "[applied] data", wantRow: "[applied]=false data=A2"},
		{what: "null is not equal", q: q(`UPDATE k.l SET n = 1 WHERE name = 'a' AND kind = 'lease' AND key = 0 AND chunk = 0 IF n != null AND data = ?`, []byte("A2")),
			wantCols: "[applied] n data", wantRow: "[applied]=false n=0 data=A2"},
		{what: "null equals null", q: q(`UPDATE k.l SET n = 1 WHERE name = 'a' AND kind = 'lease' AND key = 0 AND chunk = 0 IF n = null`),
			wantCols: "[applied]", wantRow: "[applied]=true"},
		{what: "release", q: q(release, "a", []byte("A2")),
			wantCols: "[applied]", wantRow: "[applied]=true"},
		{what: "renewal of a released lease", q: q(renew, 10, []byte("A3"), "a", []byte("A2")),
			wantCols: "[applied]", wantRow: "[applied]=false"},
		{what: "release again", q: q(release, "a", []byte("A2")),
			wantCols: "[applied]", wantRow: "[applied]=false"},
		{what: "acquire after the release", q: q(acquire, "a", []byte("B1"), 10),
			wantCols: "[applied]", wantRow: "[applied]=true", advance: 10 * time.Second},
		{what: "acquire after the TTL", q: q(acquire, "a", []byte("C1"), 10),
			wantCols: "[applied]", wantRow: "[applied]=true"},
	} {
		cols, row := casAnswer(t, tc.q)
		if strings.Join(cols, " ") != tc.wantCols || row != tc.wantRow {
			t.Fatalf("%s: columns %q row %q, want %q %q", tc.what, cols, row, tc.wantCols, tc.wantRow)
		}
		clock.Advance(tc.advance)
	}

	// A transaction writes at its ballot's timestamp (the server's
	// clock), not at the client's: a plain write stamped an hour ahead
	// keeps its value although the condition on it held.
	ahead := clock.Now().Add(time.Hour).UnixMicro()
	if err := sess.Query(`UPDATE k.l USING TIMESTAMP ? SET data = ? WHERE name = 'a' AND kind = 'lease' AND key = 0 AND chunk = 0`, ahead, []byte("X")).Exec(); err != nil {
		t.Fatal(err)
	}
	if _, row := casAnswer(t, q(renew, 10, []byte("Y"), "a", []byte("X")).WithTimestamp(ahead+1)); row != "[applied]=true" {
		t.Fatalf("renewal of X: %s", row)
	}
	var data []byte
	if err := sess.Query(`SELECT data FROM k.l WHERE name = 'a' AND kind = 'lease' AND key = 0 AND chunk = 0`).Scan(&data); err != nil || string(data) != "X" {
		t.Fatalf("after a transaction under a later plain write: %q %v, want X", data, err)
	}
}

// TestLightweightTransactionErrors: what Cassandra refuses, with its
// messages: a serial consistency other than SERIAL or LOCAL_SERIAL
// (validateForCas; sent raw, as gocql and the Python driver refuse it
// themselves), a serial commit consistency (validateForCasCommit), a
// plain write at SERIAL (validateForWrite), a custom timestamp, IN on the
// key, IF on a key column, an unset or null value where it cannot be; and
// UNAVAILABLE at the serial consistency when its quorum is not alive.
func TestLightweightTransactionErrors(t *testing.T) {
	s := startServer(t, Config{})
	newKS(t, s)
	mustExec(t, s, lwtDDL)
	unavailableSchema(t, s)
	c := dial(t, s, nil)
	c.send(1, &message.Startup{Options: map[string]string{"CQL_VERSION": "3.0.0"}}, false)
	c.recv()
	// The library encodes SERIAL only; its two bytes, last in the body,
	// become ONE.
	serial := primitive.ConsistencyLevelSerial
	var buf bytes.Buffer
	if err := c.codec.EncodeFrame(frame.NewFrame(primitive.ProtocolVersion4, 2, &message.Query{Query: `INSERT INTO k.l (name, kind, key, chunk) VALUES ('a', 'b', 0, 0) IF NOT EXISTS`,
		Options: &message.QueryOptions{Consistency: primitive.ConsistencyLevelQuorum, SerialConsistency: &serial}}), &buf); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	raw[len(raw)-2], raw[len(raw)-1] = 0, byte(primitive.ConsistencyLevelOne)
	if _, err := c.nc.Write(raw); err != nil {
		t.Fatal(err)
	}
	if e, ok := c.recv().Body.Message.(*message.Invalid); !ok || e.ErrorMessage != "Invalid consistency for conditional update. Must be one of SERIAL or LOCAL_SERIAL" {
		t.Fatalf("serial consistency ONE: %v", e)
	}

	sess := newSession(t, s, nil, func(c *gocql.ClusterConfig) { c.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 0} })
	invalid := func(what, want string, q *gocql.Query) {
		t.Helper()
		_, err := q.MapScanCAS(map[string]any{})
		var re gocql.RequestError
		if !errors.As(err, &re) || re.Code() != gocql.ErrCodeInvalid || re.Message() != want {
			t.Fatalf("%s: %v, want INVALID %q", what, err, want)
		}
	}
	const key = `WHERE name = 'a' AND kind = 'b' AND key = 0 AND chunk = 0`
	invalid("commit at SERIAL", `SERIAL is not supported as conditional update commit consistency. Use ANY if you mean "make sure it is accepted but I don't care how many replicas commit it for non-SERIAL reads"`,
		sess.Query(`UPDATE k.l SET n = 1 `+key+` IF n = 1`).Consistency(gocql.Serial))
	if err := sess.Query(`UPDATE k.l SET n = 1 ` + key).Consistency(gocql.LocalSerial).Exec(); err == nil || !strings.Contains(err.Error(), "You must use conditional updates for serializable writes") {
		t.Fatalf("plain write at LOCAL_SERIAL: %v", err)
	}
	invalid("custom timestamp", "Cannot provide custom timestamp for conditional updates",
		sess.Query(`UPDATE k.l USING TIMESTAMP 5 SET n = 1 `+key+` IF n = 1`))
	invalid("IN on the partition key", "IN on the partition key is not supported with conditional deletions",
		sess.Query(`DELETE FROM k.l WHERE name IN ('a', 'c') AND kind = 'b' AND key = 0 AND chunk = 0 IF n = 1`))
	invalid("a range", "DELETE statements must restrict all PRIMARY KEY columns with equality relations in order to use IF condition on non static columns",
		sess.Query(`DELETE FROM k.l WHERE name = 'a' AND kind = 'b' AND key = 0 IF n = 1`))
	invalid("IF on a key column", "PRIMARY KEY column 'key' cannot have IF conditions",
		sess.Query(`UPDATE k.l SET n = 1 `+key+` IF key = 0`))
	invalid("null with <", `Invalid comparison with null for operator "<"`,
		sess.Query(`UPDATE k.l SET n = 1 `+key+` IF n < null`))
	invalid("unset", "Invalid 'unset' value in condition",
		sess.Query(`UPDATE k.l SET n = 1 `+key+` IF n = ?`, gocql.UnsetValue))
	if n, _ := s.Rows("k", "l"); n != 0 {
		t.Fatalf("%d rows written by refused transactions", n)
	}

	// rf=3 on one live node: the Paxos round's quorum is not there
	// (LOCAL_SERIAL needs 2), even at commit consistency ONE.
	_, err := sess.Query(`INSERT INTO rf3.t (k, v) VALUES (1, 'a') IF NOT EXISTS`).Consistency(gocql.One).SerialConsistency(gocql.LocalSerial).MapScanCAS(map[string]any{})
	var u *gocql.RequestErrUnavailable
	if !errors.As(err, &u) || u.Consistency != gocql.LocalSerial || u.Required != 2 || u.Alive != 1 {
		t.Fatalf("LOCAL_SERIAL on rf=3 with one node: %v", err)
	}
	s.SetLiveNodes(2)
	if applied, err := sess.Query(`INSERT INTO rf3.t (k, v) VALUES (1, 'a') IF NOT EXISTS`).Consistency(gocql.One).SerialConsistency(gocql.Serial).MapScanCAS(map[string]any{}); !applied || err != nil {
		t.Fatalf("SERIAL with 2 of 3 live: %v %v", applied, err)
	}

	// An injected timeout of a transaction is its Paxos round's: write
	// type CAS, at the serial consistency; applied or not, the client
	// cannot tell.
	for _, f := range []Fault{FaultTimeout, FaultTimeoutApplied} {
		s.InjectFault(f, 1)
		_, err := sess.Query(`INSERT INTO k.l (name, kind, key, chunk, n) VALUES ('t', ?, 0, 0, 1) IF NOT EXISTS`, f.String()).
			SerialConsistency(gocql.LocalSerial).MapScanCAS(map[string]any{})
		var wt *gocql.RequestErrWriteTimeout
		if !errors.As(err, &wt) || wt.WriteType != "CAS" || wt.Consistency != gocql.LocalSerial {
			t.Fatalf("%s: %v, want a WRITE_TIMEOUT of type CAS at LOCAL_SERIAL", f, err)
		}
	}
	if n, _ := s.Rows("k", "l"); n != 1 {
		t.Fatalf("%d rows after a timeout and an applied timeout, want 1", n)
	}
}

// TestPythonDriverLightweightTransactions: the DataStax Python driver, an
// independent client, sees the same answers ([applied] and the row's
// columns, ResultSet.was_applied), at LOCAL_SERIAL and SERIAL, over v4
// and v5.
func TestPythonDriverLightweightTransactions(t *testing.T) {
	requirePython(t)
	clock := &fakeClock{t: time.Now()}
	s := startServer(t, Config{Now: clock.Now})
	newKS(t, s)
	mustExec(t, s, lwtDDL)
	want := "" +
		"acquire True [('[applied]', True)]\n" +
		"acquire again False [('[applied]', False), ('name', 'a'), ('kind', 'lease'), ('key', 0), ('chunk', 0), ('data', b'A1'), ('n', None)]\n" +
		"renew True [('[applied]', True)]\n" +
		"stale renew False [('[applied]', False), ('data', b'A2')]\n" +
		"release by another False [('[applied]', False), ('data', b'A2')]\n" +
		"release True [('[applied]', True)]\n" +
		"renew released False [('[applied]', False)]\n" +
		"acquire short True [('[applied]', True)]\n"
	for _, version := range []string{"4", "5"} {
		mustExec(t, s, `TRUNCATE k.l`)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, python, "testdata/lwt.py", strconv.Itoa(s.Port()), version)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("python v%s: %v\n%s", version, err, stderr.String())
		}
		if string(out) != want {
			t.Fatalf("python driver v%s saw:\n%s\nwant:\n%s", version, out, want)
		}
		// The short lease (TTL 1) expires on the server's clock.
		clock.Advance(2 * time.Second)
		if n, _ := s.Rows("k", "l"); n != 0 {
			t.Fatalf("v%s: %d rows after the TTL", version, n)
		}
	}
}
