package cassandra

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/demandpipe/demandpipe/encode"
)

func randomRows(rng *rand.Rand, n int) []row {
	var u encode.UUID
	for i := range u {
		u[i] = byte(rng.Uint32())
	}
	edge := []int64{0, 1, -1, math.MaxInt64, math.MinInt64}
	pick := func() int64 {
		if rng.IntN(4) == 0 {
			return edge[rng.IntN(len(edge))]
		}
		return int64(rng.Uint64())
	}
	k := partKey{product: u, minute: pick(), region: pick()}
	rows := make([]row, n)
	for i := range rows {
		f := make([]byte, rng.IntN(100))
		for j := range f {
			f[j] = byte(rng.Uint32())
		}
		if rng.IntN(10) == 0 {
			f = []byte{} // empty, not null
		}
		rows[i] = row{key: k, cell: pick(), f: f}
	}
	return rows
}

// TestBindMatchesGocql: every value bind hands gocql marshals to the bytes
// gocql's own marshalling of the Go values gives for the column's type
// (what the sink sent before bind existed), so stored rows are unchanged.
func TestBindMatchesGocql(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	types := []gocql.TypeInfo{ // the INSERT's columns, in order
		gocql.NewNativeType(4, gocql.TypeUUID, ""),
		gocql.NewNativeType(4, gocql.TypeBigInt, ""),
		gocql.NewNativeType(4, gocql.TypeBigInt, ""),
		gocql.NewNativeType(4, gocql.TypeBigInt, ""),
		gocql.NewNativeType(4, gocql.TypeBlob, ""),
	}
	var sc bindScratch
	for iter := range 200 {
		rows := randomRows(rng, 1+rng.IntN(60))
		sc.bind("INSERT", rows)
		if len(sc.entries) != len(rows) {
			t.Fatalf("%d entries for %d rows", len(sc.entries), len(rows))
		}
		for i, r := range rows {
			e := sc.entries[i]
			if !e.Idempotent || e.Stmt != "INSERT" || len(e.Args) != argsPerRow {
				t.Fatalf("entry %d: %+v", i, e)
			}
			want := []any{gocql.UUID(r.key.product), r.key.minute, r.key.region, r.cell, r.f}
			for j, a := range e.Args {
				got, err := gocql.Marshal(types[j], a)
				if err != nil {
					t.Fatal(err)
				}
				exp, err := gocql.Marshal(types[j], want[j])
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, exp) || (got == nil) != (exp == nil) {
					t.Fatalf("iter %d row %d arg %d: bound %x, gocql marshals %x", iter, i, j, got, exp)
				}
			}
		}
		sc.release()
	}
}

// TestBindWrongColumnType: a column whose type is not the schema's fails
// with a gocql.MarshalError, which the queue treats as permanent.
func TestBindWrongColumnType(t *testing.T) {
	var sc bindScratch
	sc.bind("INSERT", randomRows(rand.New(rand.NewPCG(3, 4)), 1))
	for j, typ := range []gocql.Type{gocql.TypeText, gocql.TypeInt, gocql.TypeInt, gocql.TypeVarint, gocql.TypeText} {
		_, err := gocql.Marshal(gocql.NewNativeType(4, typ, ""), sc.args[j])
		var me gocql.MarshalError
		if !errors.As(err, &me) || !Permanent(err) {
			t.Errorf("arg %d into a %v column: err %v, want a permanent MarshalError", j, typ, err)
		}
	}
}

// BenchmarkBind: encoding a batch's values, per row (no allocation once
// the scratch has grown).
//
//	go test ./sink/cassandra -run '^$' -bench Bind
func BenchmarkBind(b *testing.B) {
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			rows := randomRows(rand.New(rand.NewPCG(5, 6)), n)
			var sc bindScratch
			b.ReportAllocs()
			for b.Loop() {
				sc.bind("INSERT", rows)
				sc.release()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/row")
		})
	}
}
