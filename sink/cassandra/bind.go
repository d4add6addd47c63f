package cassandra

import (
	"encoding/binary"
	"fmt"
	"slices"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// Binding a batch's rows to the INSERT without gocql's per-value
// marshalling. gocql boxes every argument, marshals each into a fresh
// slice (an int64 into 8 new bytes, a UUID into 16), and derives a
// batch's routing key by marshalling the first entry's key again. A
// partition's batch repeats the same three key values in every entry, so
// send encodes them once, each row's cell into one shared buffer, and
// hands gocql pointers to cqlValue (a gocql.Marshaler that returns bytes
// already in their CQL encoding): no allocation per row on our side, and
// the routing key gocql derives from the first entry costs three slice
// returns. The bytes on the wire are the ones gocql's own marshalling
// gives (TestBindMatchesGocql).

// cqlValue is one bound value in its CQL encoding: 16 bytes for a uuid, 8
// big-endian bytes for a bigint, the bytes themselves for a blob.
// MarshalCQL checks the column's type, so a table whose columns do not
// have the schema's types fails with a gocql.MarshalError (permanent) as
// gocql's own marshalling would, rather than sending bytes the server
// misreads.
type cqlValue struct {
	typ gocql.Type
	b   []byte
}

// MarshalCQL implements gocql.Marshaler.
func (v *cqlValue) MarshalCQL(info gocql.TypeInfo) ([]byte, error) {
	if t := info.Type(); t != v.typ {
		return nil, gocql.MarshalError(fmt.Sprintf("sink cassandra: column of type %v, the schema's is %v", t, v.typ))
	}
	return v.b, nil
}

const (
	// keyBytes is a partition key in a send's buffer: the product's 16
	// bytes, then minute and region, 8 each.
	keyBytes   = 16 + 8 + 8
	argsPerRow = 5 // product, minute, region, cell, f: the INSERT's order
)

// bindScratch is one send's reusable memory (Sink.scratch pools them: one
// per concurrent writer in steady state).
type bindScratch struct {
	buf     []byte
	vals    []cqlValue
	args    []any
	entries []gocql.BatchEntry
}

// bind encodes rows (all of one partition) for stmt: args holds
// argsPerRow values per row, entries one idempotent BatchEntry per row.
// Everything stays valid until the next bind or release.
func (sc *bindScratch) bind(stmt string, rows []row) {
	n := len(rows)
	// Grow everything first: args point into vals, values into buf.
	sc.buf = slices.Grow(sc.buf[:0], keyBytes+8*n)[:keyBytes+8*n]
	sc.vals = slices.Grow(sc.vals[:0], 3+2*n)[:3+2*n]
	sc.args = slices.Grow(sc.args[:0], argsPerRow*n)[:argsPerRow*n]
	sc.entries = slices.Grow(sc.entries[:0], n)[:n]

	k := rows[0].key
	b := sc.buf
	copy(b[0:16], k.product[:])
	binary.BigEndian.PutUint64(b[16:24], uint64(k.minute))
	binary.BigEndian.PutUint64(b[24:32], uint64(k.region))
	sc.vals[0] = cqlValue{gocql.TypeUUID, b[0:16:16]}
	sc.vals[1] = cqlValue{gocql.TypeBigInt, b[16:24:24]}
	sc.vals[2] = cqlValue{gocql.TypeBigInt, b[24:32:32]}

	cells := b[keyBytes:]
	product, minute, region := &sc.vals[0], &sc.vals[1], &sc.vals[2]
	for i := range rows {
		c := cells[8*i : 8*i+8 : 8*i+8]
		binary.BigEndian.PutUint64(c, uint64(rows[i].cell))
		cell, f := &sc.vals[3+2*i], &sc.vals[4+2*i]
		*cell = cqlValue{gocql.TypeBigInt, c}
		*f = cqlValue{gocql.TypeBlob, rows[i].f}
		a := sc.args[argsPerRow*i : argsPerRow*i+argsPerRow : argsPerRow*i+argsPerRow]
		a[0], a[1], a[2], a[3], a[4] = product, minute, region, cell, f
		sc.entries[i] = gocql.BatchEntry{Stmt: stmt, Args: a, Idempotent: true}
	}
}

// release drops the references to row values (the queue's arenas) so a
// pooled scratch does not keep them alive.
func (sc *bindScratch) release() {
	clear(sc.vals)
	clear(sc.args)
	clear(sc.entries)
}
