package encode

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Binary row encoding: the compact form the feature store keeps (FORMAT.md).
//
// A row is a fixed 13-byte key followed by a variable-length value:
//
//	key   = minute (uint32, big-endian) | product code (1 byte) | cell (uint64, big-endian)
//	value = kind (1 byte) | n (uvarint) | n features
//
// Big-endian keys sort by (minute, product, cell), so one minute is one
// contiguous key range (retention deletes it with one range tombstone) and
// the rows of one (minute, product) are a contiguous run sorted by cell
// (a batch of cells is answered by forward seeks through one iterator).
//
// Features are counts, so they are almost always small and non-negative:
// kind ValueUvarint stores each as a uvarint (1 byte below 128, 2 below
// 16,384, 3 below 2,097,152); kind ValueZigzag, written only when a row holds
// a negative number, stores zigzag varints. With the default definition a
// dense-metro row measures ~77 bytes against 447 for the same row holding
// float64s (TestBinarySize, FORMAT.md).

// RowKeyLen is the length of a binary row key.
const RowKeyLen = 13

// MaxMinute is the last unix minute a key can hold: MaxTS/60000 fits uint32.
const MaxMinute = MaxTS / 60000

// MaxFeatures bounds a row's feature count (16 rings * 16 windows), so a
// decoder never allocates more than 1 KiB for one row whatever it is fed.
const MaxFeatures = 256

// Value kinds: the first byte of a binary row value.
const (
	ValueUvarint byte = 1 // every feature >= 0, one uvarint each
	ValueZigzag  byte = 2 // some feature < 0, one zigzag varint each
)

// Decoding errors. Every malformed input returns one of these, wrapped with
// the position; decoders never panic.
var (
	ErrShortKey      = errors.New("encode: binary row key shorter than 13 bytes")
	ErrMinuteRange   = errors.New("encode: binary row minute out of range")
	ErrValueKind     = errors.New("encode: binary row value of unknown kind")
	ErrFeatureCount  = errors.New("encode: binary row feature count out of range")
	ErrVarint        = errors.New("encode: binary row feature is not a valid varint")
	ErrFeatureRange  = errors.New("encode: binary row feature out of int32 range")
	ErrTrailingBytes = errors.New("encode: binary row value has trailing bytes")
)

// RowKey is the decoded key of a binary row.
type RowKey struct {
	Minute  int64  // unix minute, 0..MaxMinute
	Product byte   // the store's persistent product code (not a run's code)
	Cell    uint64 // H3 cell
}

// AppendRowKey appends the 13-byte key of (minute, product, cell). minute
// must be in 0..MaxMinute (callers check: it comes from validated ts).
func AppendRowKey(dst []byte, minute int64, product byte, cell uint64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(minute))
	dst = append(dst, product)
	return binary.BigEndian.AppendUint64(dst, cell)
}

// AppendMinuteKey appends the 4-byte key prefix of a minute: every row of
// minute m sorts in [AppendMinuteKey(m), AppendMinuteKey(m+1)).
func AppendMinuteKey(dst []byte, minute int64) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(minute))
}

// ParseRowKey decodes a key made by AppendRowKey. Bytes past the first 13
// are an error too: a key is exactly RowKeyLen long.
func ParseRowKey(b []byte) (RowKey, error) {
	if len(b) < RowKeyLen {
		return RowKey{}, ErrShortKey
	}
	if len(b) > RowKeyLen {
		return RowKey{}, fmt.Errorf("%w: key of %d bytes", ErrTrailingBytes, len(b))
	}
	m := int64(binary.BigEndian.Uint32(b))
	if m > MaxMinute {
		return RowKey{}, fmt.Errorf("%w: %d > %d", ErrMinuteRange, m, MaxMinute)
	}
	return RowKey{Minute: m, Product: b[4], Cell: binary.BigEndian.Uint64(b[5:])}, nil
}

// AppendRowValue appends the value encoding of features. The fast path
// (all non-negative, the only case the engine produces) is one pass of
// uvarints; a negative value restarts the encoding in zigzag form.
func AppendRowValue(dst []byte, features []int32) []byte {
	start := len(dst)
	dst = append(dst, ValueUvarint)
	dst = binary.AppendUvarint(dst, uint64(len(features)))
	for _, v := range features {
		if v < 0 {
			return appendZigzag(dst[:start], features)
		}
		if v < 0x80 {
			dst = append(dst, byte(v))
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(v))
	}
	return dst
}

func appendZigzag(dst []byte, features []int32) []byte {
	dst = append(dst, ValueZigzag)
	dst = binary.AppendUvarint(dst, uint64(len(features)))
	for _, v := range features {
		dst = binary.AppendVarint(dst, int64(v))
	}
	return dst
}

// AppendRowBinary appends one whole row: key then value. It is the form
// for streams and files; the store keeps key and value apart.
func AppendRowBinary(dst []byte, minute int64, product byte, cell uint64, features []int32) []byte {
	return AppendRowValue(AppendRowKey(dst, minute, product, cell), features)
}

// DecodeRowValue appends the features of a value made by AppendRowValue to
// dst and returns it. It validates the kind, the count (at most
// MaxFeatures), every varint and int32 range, and that nothing trails.
func DecodeRowValue(dst []int32, b []byte) ([]int32, error) {
	if len(b) == 0 {
		return dst, fmt.Errorf("%w: empty value", ErrValueKind)
	}
	kind := b[0]
	if kind != ValueUvarint && kind != ValueZigzag {
		return dst, fmt.Errorf("%w: %d", ErrValueKind, kind)
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || n > MaxFeatures {
		return dst, fmt.Errorf("%w: %d (at most %d)", ErrFeatureCount, n, MaxFeatures)
	}
	i := 1 + w
	// Every feature takes at least one byte: a count larger than what is
	// left is a lie, caught before growing dst.
	if int(n) > len(b)-i {
		return dst, fmt.Errorf("%w: %d features in %d bytes", ErrFeatureCount, n, len(b)-i)
	}
	dst = grow(dst, int(n))
	if kind == ValueUvarint {
		for j := uint64(0); j < n; j++ {
			if i >= len(b) {
				return dst, fmt.Errorf("%w: feature %d missing", ErrVarint, j)
			}
			if c := b[i]; c < 0x80 { // fast path: one-byte values
				dst = append(dst, int32(c))
				i++
				continue
			}
			v, w := binary.Uvarint(b[i:])
			if w <= 0 {
				return dst, fmt.Errorf("%w: feature %d at byte %d", ErrVarint, j, i)
			}
			if v > 1<<31-1 {
				return dst, fmt.Errorf("%w: feature %d = %d", ErrFeatureRange, j, v)
			}
			dst = append(dst, int32(v))
			i += w
		}
	} else {
		for j := uint64(0); j < n; j++ {
			if i >= len(b) {
				return dst, fmt.Errorf("%w: feature %d missing", ErrVarint, j)
			}
			v, w := binary.Varint(b[i:])
			if w <= 0 {
				return dst, fmt.Errorf("%w: feature %d at byte %d", ErrVarint, j, i)
			}
			if v < -1<<31 || v > 1<<31-1 {
				return dst, fmt.Errorf("%w: feature %d = %d", ErrFeatureRange, j, v)
			}
			dst = append(dst, int32(v))
			i += w
		}
	}
	if i != len(b) {
		return dst, fmt.Errorf("%w: %d bytes after feature %d", ErrTrailingBytes, len(b)-i, n)
	}
	return dst, nil
}

// DecodeRowBinary decodes a row made by AppendRowBinary, appending its
// features to dst.
func DecodeRowBinary(dst []int32, b []byte) (RowKey, []int32, error) {
	if len(b) < RowKeyLen {
		return RowKey{}, dst, ErrShortKey
	}
	k, err := ParseRowKey(b[:RowKeyLen])
	if err != nil {
		return k, dst, err
	}
	dst, err = DecodeRowValue(dst, b[RowKeyLen:])
	return k, dst, err
}

// DecodeFeature returns feature i of a value without decoding the others
// past it (the heat map reads one feature of every row of a minute).
func DecodeFeature(b []byte, i int) (int32, error) {
	if len(b) == 0 || (b[0] != ValueUvarint && b[0] != ValueZigzag) {
		return 0, ErrValueKind
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || n > MaxFeatures || i < 0 || uint64(i) >= n {
		return 0, fmt.Errorf("%w: feature %d of %d", ErrFeatureCount, i, n)
	}
	p := 1 + w
	for j := 0; ; j++ {
		if p >= len(b) {
			return 0, fmt.Errorf("%w: feature %d missing", ErrVarint, j)
		}
		var v int64
		var w int
		if b[0] == ValueUvarint {
			var u uint64
			u, w = binary.Uvarint(b[p:])
			if u > 1<<31-1 {
				return 0, ErrFeatureRange
			}
			v = int64(u)
		} else {
			v, w = binary.Varint(b[p:])
			if v < -1<<31 || v > 1<<31-1 {
				return 0, ErrFeatureRange
			}
		}
		if w <= 0 {
			return 0, fmt.Errorf("%w: feature %d at byte %d", ErrVarint, j, p)
		}
		if j == i {
			return int32(v), nil
		}
		p += w
	}
}

func grow(s []int32, n int) []int32 {
	if cap(s)-len(s) >= n {
		return s
	}
	out := make([]int32, len(s), len(s)+n)
	copy(out, s)
	return out
}

// RowsDecoder adapts fn, which takes decoded rows, to a scan over encoded
// row values (the stores' scans): features is only valid during the call.
func RowsDecoder(fn func(cell uint64, features []int32) bool) func(cell uint64, v []byte) (bool, error) {
	var f []int32
	return func(cell uint64, v []byte) (bool, error) {
		var err error
		if f, err = DecodeRowValue(f[:0], v); err != nil {
			return false, err
		}
		return fn(cell, f), nil
	}
}

// FeatureDecoder adapts fn, which takes feature index of each row, to a
// scan over encoded row values, decoding no feature past index.
func FeatureDecoder(index int, fn func(cell uint64, v int32) bool) func(cell uint64, v []byte) (bool, error) {
	return func(cell uint64, v []byte) (bool, error) {
		x, err := DecodeFeature(v, index)
		if err != nil {
			return false, err
		}
		return fn(cell, x), nil
	}
}
