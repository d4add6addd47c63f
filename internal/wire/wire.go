// Package wire holds the few varint helpers that the engine's durable
// encodings share (the checkpoint in pipeline, the count records and part
// checkpoints in aggregate): one reader that turns any short or malformed
// input into one sticky error instead of a panic, since these bytes come
// back from disk and brokers.
package wire

import (
	"encoding/binary"
	"errors"

	"github.com/demandpipe/demandpipe/encode"
)

// ErrShort is Reader.Err after a read past the end or a malformed varint.
var ErrShort = errors.New("wire: short or malformed input")

// AppendString appends s with its length as a uvarint.
func AppendString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

// AppendBool appends v as one byte.
func AppendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// Reader reads what the Append functions and encoding/binary wrote. The
// first failure empties B and sets Err; later reads return zero values, so
// a decoder checks Err once at its end.
type Reader struct {
	B   []byte
	Err error
}

// Uvarint reads a uvarint.
func (r *Reader) Uvarint() uint64 {
	v, n := binary.Uvarint(r.B)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.B = r.B[n:]
	return v
}

// Varint reads a varint.
func (r *Reader) Varint() int64 {
	v, n := binary.Varint(r.B)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.B = r.B[n:]
	return v
}

// Bool reads one byte, true if it is 1.
func (r *Reader) Bool() bool { return r.Byte() == 1 }

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if len(r.B) < 1 {
		r.fail()
		return 0
	}
	v := r.B[0]
	r.B = r.B[1:]
	return v
}

// U64 reads a little-endian uint64.
func (r *Reader) U64() uint64 {
	if len(r.B) < 8 {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(r.B)
	r.B = r.B[8:]
	return v
}

// UUID reads 16 bytes.
func (r *Reader) UUID() (u encode.UUID) {
	if len(r.B) < 16 {
		r.fail()
		return u
	}
	copy(u[:], r.B)
	r.B = r.B[16:]
	return u
}

// String reads a string written by AppendString.
func (r *Reader) String() string {
	n := r.Uvarint()
	if n > uint64(len(r.B)) {
		r.fail()
		return ""
	}
	s := string(r.B[:n])
	r.B = r.B[n:]
	return s
}

// Done reports whether every byte was read without a failure.
func (r *Reader) Done() bool { return r.Err == nil && len(r.B) == 0 }

func (r *Reader) fail() {
	if r.Err == nil {
		r.Err = ErrShort
	}
	r.B = nil
}
