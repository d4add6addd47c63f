package cqltest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/datastax/go-cassandra-native-protocol/datatype"
)

// colType is a column's CQL type: the protocol DataType that result metadata
// carries, and the CQL spelling that system_schema.columns reports.
type colType struct {
	name string // base name: bigint, list, map, frozen, ...
	dt   datatype.DataType
	args []*colType // element types of collections, inner type of frozen
}

var primitiveTypes = map[string]datatype.DataType{
	"ascii": datatype.Ascii, "bigint": datatype.Bigint, "blob": datatype.Blob,
	"boolean": datatype.Boolean, "counter": datatype.Counter, "date": datatype.Date,
	"decimal": datatype.Decimal, "double": datatype.Double, "duration": datatype.Duration,
	"float": datatype.Float, "inet": datatype.Inet, "int": datatype.Int,
	"smallint": datatype.Smallint, "text": datatype.Varchar, "varchar": datatype.Varchar,
	"time": datatype.Time, "timestamp": datatype.Timestamp, "timeuuid": datatype.Timeuuid,
	"tinyint": datatype.Tinyint, "uuid": datatype.Uuid, "varint": datatype.Varint,
}

func newColType(name string, args []*colType) (*colType, error) {
	if dt, ok := primitiveTypes[name]; ok {
		if len(args) != 0 {
			return nil, fmt.Errorf("type %s takes no arguments", name)
		}
		if name == "varchar" {
			name = "text" // Cassandra reports varchar as text
		}
		return &colType{name: name, dt: dt}, nil
	}
	t := &colType{name: name, args: args}
	switch name {
	case "list", "set", "frozen":
		if len(args) != 1 {
			return nil, fmt.Errorf("type %s takes one argument", name)
		}
		switch name {
		case "list":
			t.dt = datatype.NewList(args[0].dt)
		case "set":
			t.dt = datatype.NewSet(args[0].dt)
		default:
			t.dt = args[0].dt // frozen changes storage, not the wire type
		}
	case "map":
		if len(args) != 2 {
			return nil, fmt.Errorf("type map takes two arguments")
		}
		t.dt = datatype.NewMap(args[0].dt, args[1].dt)
	case "tuple":
		if len(args) == 0 {
			return nil, fmt.Errorf("type tuple needs arguments")
		}
		dts := make([]datatype.DataType, len(args))
		for i, a := range args {
			dts[i] = a.dt
		}
		t.dt = datatype.NewTuple(dts...)
	default:
		return nil, fmt.Errorf("unknown type %q", name)
	}
	return t, nil
}

// mustType parses a type for the built-in system tables.
func mustType(s string) *colType {
	p := &parser{}
	toks, err := lex(s)
	if err == nil {
		p.toks = toks
		var t *colType
		if t, err = p.typ(0); err == nil {
			return t
		}
	}
	panic(fmt.Sprintf("cqltest: bad built-in type %q: %v", s, err))
}

// String is the CQL spelling, as system_schema.columns.type shows it.
func (t *colType) String() string {
	if len(t.args) == 0 {
		return t.name
	}
	parts := make([]string, len(t.args))
	for i, a := range t.args {
		parts[i] = a.String()
	}
	return t.name + "<" + strings.Join(parts, ", ") + ">"
}

// base strips frozen<>.
func (t *colType) base() *colType {
	for t.name == "frozen" {
		t = t.args[0]
	}
	return t
}

// compareValues orders two encoded values of type t the way Cassandra orders
// clustering columns for the common types: signed integers and timestamps
// numerically, floats numerically, everything else (text, blob, uuid, ...) by
// unsigned bytes. Text by bytes is Cassandra's order too; timeuuid is not (it
// sorts by time) and is documented as bytes order here.
func compareValues(t *colType, a, b []byte) int {
	switch t.base().name {
	case "tinyint", "smallint", "int", "bigint", "counter", "timestamp", "time":
		if len(a) == len(b) && len(a) > 0 {
			if c := int(int8(a[0])) - int(int8(b[0])); c != 0 {
				return sign(c)
			}
			return bytes.Compare(a[1:], b[1:])
		}
	case "double":
		if len(a) == 8 && len(b) == 8 {
			return cmpFloat(math.Float64frombits(binary.BigEndian.Uint64(a)), math.Float64frombits(binary.BigEndian.Uint64(b)))
		}
	case "float":
		if len(a) == 4 && len(b) == 4 {
			return cmpFloat(float64(math.Float32frombits(binary.BigEndian.Uint32(a))), float64(math.Float32frombits(binary.BigEndian.Uint32(b))))
		}
	}
	return bytes.Compare(a, b)
}

func sign(c int) int {
	switch {
	case c < 0:
		return -1
	case c > 0:
		return 1
	}
	return 0
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// encodeLiteral encodes a literal term as a value of type t (protocol v3+
// collection format). A null literal encodes as nil.
func encodeLiteral(t *colType, lit term) ([]byte, error) {
	if lit.kind == termNull {
		return nil, nil
	}
	t = t.base()
	bad := func() ([]byte, error) {
		return nil, fmt.Errorf("invalid literal %q for type %s", lit.text, t)
	}
	switch t.name {
	case "text", "ascii":
		if lit.kind != termString {
			return bad()
		}
		return []byte(lit.text), nil
	case "tinyint", "smallint", "int", "bigint", "counter", "timestamp", "time", "varint":
		if lit.kind != termNumber {
			return bad()
		}
		n, err := strconv.ParseInt(lit.text, 10, 64)
		if err != nil {
			return bad()
		}
		switch t.name {
		case "tinyint":
			if n != int64(int8(n)) {
				return bad()
			}
			return []byte{byte(n)}, nil
		case "smallint":
			if n != int64(int16(n)) {
				return bad()
			}
			return binary.BigEndian.AppendUint16(nil, uint16(n)), nil
		case "int":
			if n != int64(int32(n)) {
				return bad()
			}
			return binary.BigEndian.AppendUint32(nil, uint32(n)), nil
		case "varint":
			// Minimal two's complement, as Cassandra's varint wants.
			b := binary.BigEndian.AppendUint64(nil, uint64(n))
			for len(b) > 1 && ((b[0] == 0 && b[1]&0x80 == 0) || (b[0] == 0xff && b[1]&0x80 != 0)) {
				b = b[1:]
			}
			return b, nil
		}
		return binary.BigEndian.AppendUint64(nil, uint64(n)), nil
	case "double", "float":
		if lit.kind != termNumber {
			return bad()
		}
		f, err := strconv.ParseFloat(lit.text, 64)
		if err != nil {
			return bad()
		}
		if t.name == "float" {
			return binary.BigEndian.AppendUint32(nil, math.Float32bits(float32(f))), nil
		}
		return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)), nil
	case "boolean":
		if lit.kind != termBool {
			return bad()
		}
		if lit.text == "true" {
			return []byte{1}, nil
		}
		return []byte{0}, nil
	case "blob":
		if lit.kind != termBlob {
			return bad()
		}
		b, err := hex.DecodeString(lit.text)
		if err != nil {
			return bad()
		}
		return b, nil
	case "list", "set":
		if lit.kind != termList && lit.kind != termSet && !(lit.kind == termMap && len(lit.elems) == 0) {
			return bad()
		}
		elems := make([][]byte, len(lit.elems))
		for i, e := range lit.elems {
			b, err := encodeLiteral(t.args[0], e)
			if err != nil {
				return nil, err
			}
			elems[i] = b
		}
		return appendCollection(nil, elems), nil
	case "map":
		if lit.kind != termMap {
			return bad()
		}
		elems := make([][]byte, 0, 2*len(lit.elems))
		for i := range lit.elems {
			k, err := encodeLiteral(t.args[0], lit.keys[i])
			if err != nil {
				return nil, err
			}
			v, err := encodeLiteral(t.args[1], lit.elems[i])
			if err != nil {
				return nil, err
			}
			elems = append(elems, k, v)
		}
		b := binary.BigEndian.AppendUint32(nil, uint32(len(lit.elems)))
		for _, e := range elems {
			b = appendValue(b, e)
		}
		return b, nil
	}
	return nil, fmt.Errorf("literals of type %s are not supported by cqltest; bind a value instead", t)
}

// appendCollection encodes a list or set: [int n] then n [int len][bytes].
func appendCollection(dst []byte, elems [][]byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(elems)))
	for _, e := range elems {
		dst = appendValue(dst, e)
	}
	return dst
}

func appendValue(dst, v []byte) []byte {
	if v == nil {
		return binary.BigEndian.AppendUint32(dst, math.MaxUint32) // -1: null
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
	return append(dst, v...)
}

// splitCollection decodes a list or set value (the bound value of IN ?).
func splitCollection(b []byte) ([][]byte, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("collection value too short")
	}
	n := int(int32(binary.BigEndian.Uint32(b)))
	b = b[4:]
	if n < 0 || n > len(b)/4 {
		return nil, fmt.Errorf("bad collection size %d", n)
	}
	out := make([][]byte, 0, n)
	for range n {
		if len(b) < 4 {
			return nil, fmt.Errorf("collection element truncated")
		}
		l := int(int32(binary.BigEndian.Uint32(b)))
		b = b[4:]
		if l < 0 {
			out = append(out, nil)
			continue
		}
		if l > len(b) {
			return nil, fmt.Errorf("collection element truncated")
		}
		out = append(out, b[:l:l])
		b = b[l:]
	}
	return out, nil
}

// Helpers that encode Go values for the system tables.

func encText(s string) []byte { return []byte(s) }

func encInt(n int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(n)) }

func encDouble(f float64) []byte { return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)) }

func encBool(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

func encTextSet(items ...string) []byte {
	elems := make([][]byte, len(items))
	for i, s := range items {
		elems[i] = []byte(s)
	}
	return appendCollection(nil, elems)
}

// encTextMap encodes map<text, text> with keys in the given order.
func encTextMap(keys []string, m map[string]string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		b = appendValue(b, []byte(k))
		b = appendValue(b, []byte(m[k]))
	}
	return b
}

// validateValue checks a bound value of type t as Cassandra's serializers
// do before anything is written (serializers/*Serializer.java validate; a
// MarshalException becomes an INVALID answer with its message, e.g.
// "Expected 8 or 0 byte long (4)" for 4 bytes bound to a bigint). An empty
// value passes for every type here (Cassandra refuses it for some).
// Collections are checked element by element.
func validateValue(t *colType, v []byte) error {
	t = t.base()
	n := len(v)
	if n == 0 {
		return nil
	}
	size := func(want int, format string) error {
		if n != want {
			return fmt.Errorf(format, n)
		}
		return nil
	}
	switch t.name {
	case "bigint", "counter":
		return size(8, "Expected 8 or 0 byte long (%d)")
	case "int":
		return size(4, "Expected 4 or 0 byte int (%d)")
	case "smallint":
		return size(2, "Expected 2 bytes for a smallint (%d)")
	case "tinyint":
		return size(1, "Expected 1 byte for a tinyint (%d)")
	case "boolean":
		return size(1, "Expected 1 or 0 byte value (%d)")
	case "double":
		return size(8, "Expected 8 or 0 byte value for a double (%d)")
	case "float":
		return size(4, "Expected 4 or 0 byte value for a float (%d)")
	case "timestamp":
		return size(8, "Expected 8 or 0 byte long for date (%d)")
	case "date":
		return size(4, "Expected 4 byte long for date (%d)")
	case "time":
		return size(8, "Expected 8 byte long for time (%d)")
	case "uuid":
		return size(16, "UUID should be 16 or 0 bytes (%d)")
	case "timeuuid":
		if err := size(16, "UUID should be 16 or 0 bytes (%d)"); err != nil {
			return err
		}
		if v[6]>>4 != 1 {
			return fmt.Errorf("Invalid version for TimeUUID type.")
		}
	case "inet":
		if n != 4 && n != 16 {
			return fmt.Errorf("Expected 4 or 16 byte inetaddress; got %x", v)
		}
	case "ascii":
		for _, b := range v {
			if b > 127 {
				return fmt.Errorf("Invalid byte for ascii: %d", b)
			}
		}
	case "text":
		if !utf8.Valid(v) {
			return fmt.Errorf("String didn't validate.")
		}
	case "list", "set":
		elems, err := splitCollection(v)
		if err != nil {
			return fmt.Errorf("Not enough bytes to read a %s: %v", t.name, err)
		}
		for _, e := range elems {
			if e == nil {
				return fmt.Errorf("null is not supported inside collections")
			}
			if err := validateValue(t.args[0], e); err != nil {
				return err
			}
		}
	case "map":
		if n < 4 {
			return fmt.Errorf("Not enough bytes to read a map")
		}
		cnt := int(int32(binary.BigEndian.Uint32(v)))
		b := v[4:]
		if cnt < 0 || cnt > len(b)/8 {
			return fmt.Errorf("Not enough bytes to read a map")
		}
		for i := range 2 * cnt {
			if len(b) < 4 {
				return fmt.Errorf("Not enough bytes to read a map")
			}
			l := int(int32(binary.BigEndian.Uint32(b)))
			b = b[4:]
			if l < 0 || l > len(b) {
				return fmt.Errorf("Not enough bytes to read a map")
			}
			if err := validateValue(t.args[i%2], b[:l]); err != nil {
				return err
			}
			b = b[l:]
		}
	}
	return nil
}
