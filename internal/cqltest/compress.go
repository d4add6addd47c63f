package cqltest

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/pierrec/lz4/v4"
)

// Frame body compression of protocol v3/v4, as negotiated by STARTUP's
// COMPRESSION option. Names are lower case, as Cassandra advertises them and
// drivers compare them byte for byte.
//
//   - snappy: the body is one Snappy block (its own varint length prefix).
//   - lz4:    the body is a 4-byte big-endian uncompressed length followed by
//     one LZ4 block (the CQL v4 spec, section 5).
//
// Both implement frame.BodyCompressor. Decompression checks the declared
// length against Config.MaxFrameBytes before allocating.

// bodyCodec is a named frame body compressor.
type bodyCodec interface {
	CompressWithLength(source io.Reader, dest io.Writer) error
	DecompressWithLength(source io.Reader, dest io.Writer) error
	// decompress returns src's decompressed body in a new slice.
	decompress(src []byte) ([]byte, error)
	name() string
}

func newBodyCodec(name string, maxBytes int) bodyCodec {
	switch name {
	case "snappy":
		return snappyCodec{max: maxBytes}
	case "lz4":
		return lz4Codec{max: maxBytes}
	}
	return nil
}

// supportedCompression is advertised in SUPPORTED.
var supportedCompression = []string{"lz4", "snappy"}

type snappyCodec struct{ max int }

func (snappyCodec) name() string { return "snappy" }

func (c snappyCodec) CompressWithLength(source io.Reader, dest io.Writer) error {
	src, err := io.ReadAll(source)
	if err != nil {
		return err
	}
	_, err = dest.Write(s2.EncodeSnappy(nil, src))
	return err
}

func (c snappyCodec) DecompressWithLength(source io.Reader, dest io.Writer) error {
	src, err := io.ReadAll(source)
	if err != nil {
		return err
	}
	out, err := c.decompress(src)
	if err != nil {
		return err
	}
	_, err = dest.Write(out)
	return err
}

func (c snappyCodec) decompress(src []byte) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > c.max {
		return nil, fmt.Errorf("snappy: decompressed body of %d bytes exceeds the limit of %d", n, c.max)
	}
	out, err := s2.Decode(nil, src)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return out, nil
}

type lz4Codec struct{ max int }

func (lz4Codec) name() string { return "lz4" }

// lz4Compressors pools block compressors: each holds a 64 KiB hash table.
var lz4Compressors = sync.Pool{New: func() any { return new(lz4.Compressor) }}

func (c lz4Codec) CompressWithLength(source io.Reader, dest io.Writer) error {
	src, err := io.ReadAll(source)
	if err != nil {
		return err
	}
	out := make([]byte, 4+lz4.CompressBlockBound(len(src)))
	binary.BigEndian.PutUint32(out, uint32(len(src)))
	zc := lz4Compressors.Get().(*lz4.Compressor)
	n, err := zc.CompressBlock(src, out[4:])
	lz4Compressors.Put(zc)
	if err != nil {
		return fmt.Errorf("lz4: %w", err)
	}
	if n == 0 && len(src) > 0 {
		return fmt.Errorf("lz4: incompressible block did not fit its bound")
	}
	if len(src) == 0 {
		// An empty block is the single token byte 0, as Cassandra writes it.
		out[4], n = 0, 1
	}
	_, err = dest.Write(out[:4+n])
	return err
}

func (c lz4Codec) DecompressWithLength(source io.Reader, dest io.Writer) error {
	src, err := io.ReadAll(source)
	if err != nil {
		return err
	}
	out, err := c.decompress(src)
	if err != nil {
		return err
	}
	_, err = dest.Write(out)
	return err
}

func (c lz4Codec) decompress(src []byte) ([]byte, error) {
	if len(src) < 4 {
		return nil, fmt.Errorf("lz4: body of %d bytes has no length prefix", len(src))
	}
	n := binary.BigEndian.Uint32(src)
	if uint64(n) > uint64(c.max) {
		return nil, fmt.Errorf("lz4: decompressed body of %d bytes exceeds the limit of %d", n, c.max)
	}
	if n == 0 {
		return []byte{}, nil
	}
	out := make([]byte, n)
	got, err := lz4.UncompressBlock(src[4:], out)
	if err != nil {
		return nil, fmt.Errorf("lz4: %w", err)
	}
	if got != int(n) {
		return nil, fmt.Errorf("lz4: decompressed %d bytes, header says %d", got, n)
	}
	return out, nil
}
