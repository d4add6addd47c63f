package cqltest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestParseGolden(t *testing.T) {
	for _, tc := range []struct {
		q       string
		kind    stmtKind
		markers int
		check   func(*statement) bool
	}{
		{featuresDDL, stmtCreateTable, 0, func(st *statement) bool {
			return slices.Equal(st.partitionKey, []string{"product", "minute", "region"}) &&
				slices.Equal(st.clustering, []string{"cell"}) && len(st.columns) == 5 && len(st.options) == 3 &&
				st.options[1].value.kind == termMap && st.options[1].value.elems[2].text == "60"
		}},
		{`create table if not exists "Ks".t (a int primary key, b list<frozen<map<text,int>>>) with clustering order by (x desc) and comment = 'it''s'`,
			stmtCreateTable, 0, func(st *statement) bool {
				return st.keyspace == "Ks" && st.ifExists && st.columns[1].typ.String() == "list<frozen<map<text, int>>>" &&
					st.descending["x"] && st.options[0].value.text == "it's"
			}},
		{`INSERT INTO t (a, b) VALUES (?, 0x0aFF) USING TTL ? AND TIMESTAMP 5;`, stmtInsert, 2, func(st *statement) bool {
			return st.ttl != nil && st.ttl.marker == 1 && st.values[1].text == "0aff" && st.timestamp.text == "5"
		}},
		{`insert into t (a) values (-1.5e3) if not exists`, stmtInsert, 0, func(st *statement) bool {
			return st.ifExists && st.values[0].text == "-1.5e3"
		}},
		{`SELECT a, b FROM ks.t WHERE a = ? AND b IN (?, ?) AND c IN ? AND d >= 3 LIMIT ?`, stmtSelect, 5, func(st *statement) bool {
			return len(st.where) == 4 && st.where[2].inAll && st.where[3].op == ">=" && st.limit.marker == 4
		}},
		{`SELECT * FROM system.local WHERE key='local'`, stmtSelect, 0, func(st *statement) bool {
			return st.selectCols == nil && st.where[0].terms[0].text == "local"
		}},
		{`select count(*) from t`, stmtSelect, 0, func(st *statement) bool { return st.countAll }},
		{`UPDATE t USING TTL 5 SET b = ?, c = ? WHERE a = ?`, stmtUpdate, 3, func(st *statement) bool {
			return slices.Equal(st.insertCols, []string{"b", "c"}) && st.where[0].terms[0].marker == 2
		}},
		{`DELETE FROM t WHERE a IN (1, 2) AND b = ? IF EXISTS`, stmtDelete, 1, func(st *statement) bool { return st.ifExists }},
		{`UPDATE t USING TTL ? SET d = ? WHERE a = ? IF d = ? AND n != null AND m <= 3`, stmtUpdate, 4, func(st *statement) bool {
			return !st.ifExists && len(st.conds) == 3 && st.conds[0].value.marker == 3 && st.conds[1].op == "!=" &&
				st.conds[1].value.kind == termNull && st.conds[2].col == "m" && st.conditional()
		}},
		{`delete from t where a = ? if d = ?`, stmtDelete, 2, func(st *statement) bool {
			return len(st.conds) == 1 && st.conds[0].col == "d" && st.conditional()
		}},
		{`-- comment
		  /* block */ USE demandpipe`, stmtUse, 0, func(st *statement) bool { return st.keyspace == "demandpipe" }},
		{`DROP TABLE IF EXISTS ks.t`, stmtDropTable, 0, func(st *statement) bool { return st.ifExists && st.table == "t" }},
		{`TRUNCATE TABLE t`, stmtTruncate, 0, func(st *statement) bool { return st.table == "t" }},
		{`CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1} AND durable_writes = false`,
			stmtCreateKeyspace, 0, func(st *statement) bool { return len(st.options) == 2 && st.options[1].value.text == "false" }},
	} {
		st, err := parse(tc.q)
		if err != nil {
			t.Errorf("parse(%q): %v", tc.q, err)
			continue
		}
		if st.kind != tc.kind || st.markers != tc.markers || !tc.check(st) {
			t.Errorf("parse(%q) = %+v", tc.q, st)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, q := range []string{
		``, `SELEC * FROM t`, `SELECT * FROM`, `INSERT INTO t (a, b) VALUES (?)`, `INSERT INTO t (a) VALUES ('x`,
		`CREATE TABLE t (a int)`, `CREATE TABLE t (a nosuchtype PRIMARY KEY)`, `SELECT * FROM t WHERE a != 1`,
		`SELECT * FROM t extra`, `CREATE TABLE t (a map<int> PRIMARY KEY)`, `/* open`, `DELETE FROM t`,
		`UPDATE t SET b = 1 WHERE a = 1 IF NOT EXISTS`, `UPDATE t SET b = 1 WHERE a = 1 IF b IN (1, 2)`,
		`DELETE FROM t WHERE a = 1 IF b`, `DELETE FROM t WHERE a = 1 IF b = 1 AND`,
	} {
		_, err := parse(q)
		var se *syntaxError
		if !errors.As(err, &se) {
			t.Errorf("parse(%q) error = %v, want a syntax error", q, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, q := range []string{
		featuresDDL,
		`INSERT INTO t (a, b) VALUES (?, 0x0aFF) USING TTL ? AND TIMESTAMP 5;`,
		`SELECT a, b FROM ks.t WHERE a = ? AND b IN (?, ?) AND c IN ? AND d >= 3 LIMIT ?`,
		`UPDATE t USING TTL 5 SET b = {'a': [1, 2], 'b': {}} WHERE a = ?`,
		`DELETE FROM t WHERE a IN (1, 2) AND b = ? IF EXISTS`,
		`UPDATE t USING TTL ? SET d = ? WHERE a = ? IF d = ? AND n != null`,
		`CREATE TABLE t (a frozen<tuple<int, text>> PRIMARY KEY, "B" set<blob> static)`,
		`select count(*) from "t" where x = -.5e-3 allow filtering`,
		`'unterminated`, `((((((`, `{{{{`, `0x`, `--`, `?`,
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		st, err := parse(q)
		if err == nil && st == nil {
			t.Fatal("nil statement without error")
		}
		if err != nil {
			var se *syntaxError
			if !errors.As(err, &se) {
				t.Fatalf("non-syntax error %T: %v", err, err)
			}
		}
	})
}

func TestCompareValuesSignedOrder(t *testing.T) {
	bigint := mustType("bigint")
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		a, b := int64(r.Uint64()), int64(r.Uint64())>>uint(r.IntN(64))
		ea := binary.BigEndian.AppendUint64(nil, uint64(a))
		eb := binary.BigEndian.AppendUint64(nil, uint64(b))
		want := 0
		if a < b {
			want = -1
		} else if a > b {
			want = 1
		}
		if got := compareValues(bigint, ea, eb); got != want {
			t.Fatalf("compare(%d, %d) = %d, want %d", a, b, got, want)
		}
	}
	if compareValues(mustType("double"), encDouble(-2), encDouble(1)) != -1 {
		t.Fatal("double order")
	}
	if compareValues(mustType("text"), []byte("a"), []byte("b")) != -1 {
		t.Fatal("text order")
	}
}

func TestEncodeLiteral(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		lit  term
		want []byte
	}{
		{"tinyint", term{kind: termNumber, text: "-1"}, []byte{0xff}},
		{"int", term{kind: termNumber, text: "258"}, []byte{0, 0, 1, 2}},
		{"bigint", term{kind: termNumber, text: "1"}, []byte{0, 0, 0, 0, 0, 0, 0, 1}},
		{"varint", term{kind: termNumber, text: "128"}, []byte{0, 0x80}},
		{"varint", term{kind: termNumber, text: "-1"}, []byte{0xff}},
		{"boolean", term{kind: termBool, text: "true"}, []byte{1}},
		{"blob", term{kind: termBlob, text: "cafe"}, []byte{0xca, 0xfe}},
		{"list<int>", term{kind: termList, elems: []term{{kind: termNumber, text: "7"}}}, []byte{0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 7}},
		{"map<text, text>", term{kind: termMap, keys: []term{{kind: termString, text: "k"}}, elems: []term{{kind: termString, text: "v"}}},
			[]byte{0, 0, 0, 1, 0, 0, 0, 1, 'k', 0, 0, 0, 1, 'v'}},
	} {
		got, err := encodeLiteral(mustType(tc.typ), tc.lit)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("encodeLiteral(%s, %+v) = %x, %v; want %x", tc.typ, tc.lit, got, err, tc.want)
		}
	}
	if _, err := encodeLiteral(mustType("tinyint"), term{kind: termNumber, text: "300"}); err == nil {
		t.Error("tinyint 300 accepted")
	}
}
