package cassandra

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/apache/cassandra-gocql-driver/v2/lz4"
	"github.com/klauspost/compress/s2"
)

// MaxFrameBytes bounds a decompressed frame body: 256 MiB, Cassandra's
// largest native_transport_max_frame_size. A frame claiming more is refused
// before anything is allocated.
const MaxFrameBytes = 256 << 20

// SnappyS2 is a gocql Compressor for the protocol's "snappy" codec, built
// on klauspost/compress/s2 in its Snappy-compatible mode: s2.EncodeSnappy
// writes plain Snappy blocks (uvarint length + block), which Cassandra and
// golang/snappy decode. It is faster than the driver's golang/snappy one
// for the same or fewer bytes on our rows (CASSANDRA.md).
//
// Name must be exactly "snappy": gocql compares it with the server's
// SUPPORTED list and silently sends uncompressed frames on a mismatch
// (the sink detects that, see Sink.Codec).
type SnappyS2 struct{}

// Name implements gocql.Compressor.
func (SnappyS2) Name() string { return "snappy" }

// AppendCompressedWithLength appends a Snappy block of src (its length is
// the block's uvarint header). gocql passes dst == nil for every frame:
// rather than allocate (and zero) the worst-case bound, ~1.17x src, the
// block is encoded into a pooled scratch buffer and only its bytes, a
// third of src on our rows, are appended to dst.
func (SnappyS2) AppendCompressedWithLength(dst, src []byte) ([]byte, error) {
	n := s2.MaxEncodedLen(len(src))
	if n < 0 {
		return nil, fmt.Errorf("snappy: %d bytes is too large to compress", len(src))
	}
	if start := len(dst); cap(dst)-start >= n {
		out := s2.EncodeSnappy(dst[start:start+n], src)
		return dst[:start+len(out)], nil
	}
	if n > maxScratchBytes {
		start := len(dst)
		dst = growBytes(dst, n)
		out := s2.EncodeSnappy(dst[start:start+n], src)
		return dst[:start+len(out)], nil
	}
	bp, _ := snappyScratch.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	if cap(*bp) < n {
		*bp = make([]byte, n)
	}
	out := s2.EncodeSnappy((*bp)[:n], src)
	dst = append(dst, out...)
	snappyScratch.Put(bp)
	return dst, nil
}

// snappyScratch holds *[]byte encoding buffers of at most maxScratchBytes
// (a request frame of our rows is ~7.5 KB; a count record chunk 1 MiB).
var snappyScratch sync.Pool

const maxScratchBytes = 2 << 20

// AppendDecompressedWithLength appends the decoding of the Snappy block
// src, refusing one that claims more than MaxFrameBytes.
func (SnappyS2) AppendDecompressedWithLength(dst, src []byte) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > MaxFrameBytes {
		return nil, fmt.Errorf("snappy: frame claims %d bytes decompressed, more than %d", n, MaxFrameBytes)
	}
	start := len(dst)
	dst = growBytes(dst, n)
	out, err := s2.Decode(dst[start:start+n], src)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return dst[:start+len(out)], nil
}

// AppendCompressed is for protocol v5 segments, which allow only lz4.
func (SnappyS2) AppendCompressed(dst, src []byte) ([]byte, error) {
	return nil, errors.New("snappy: protocol v5 segments allow only lz4")
}

// AppendDecompressed is for protocol v5 segments, which allow only lz4.
func (SnappyS2) AppendDecompressed(dst, src []byte, _ uint32) ([]byte, error) {
	return nil, errors.New("snappy: protocol v5 segments allow only lz4")
}

func growBytes(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	out := make([]byte, len(b)+n)
	copy(out, b)
	return out
}

// countingCompressor wraps the configured codec and counts its use. gocql
// never says whether the server accepted the codec: it drops it silently.
// A frame compressed or decompressed after connecting proves it was
// negotiated; none after a query means it was not.
type countingCompressor struct {
	gocql.Compressor
	compressed, decompressed atomic.Int64
	bytesIn, bytesOut        atomic.Int64 // uncompressed and compressed bytes written
}

func (c *countingCompressor) AppendCompressedWithLength(dst, src []byte) ([]byte, error) {
	out, err := c.Compressor.AppendCompressedWithLength(dst, src)
	c.countCompressed(src, len(dst), out)
	return out, err
}

// countCompressed counts one compressed frame or segment: src in, what
// was appended to dst (from start) out.
func (c *countingCompressor) countCompressed(src []byte, start int, out []byte) {
	c.compressed.Add(1)
	c.bytesIn.Add(int64(len(src)))
	c.bytesOut.Add(int64(len(out) - start))
}

func (c *countingCompressor) AppendDecompressedWithLength(dst, src []byte) ([]byte, error) {
	c.decompressed.Add(1)
	return c.Compressor.AppendDecompressedWithLength(dst, src)
}

// compressor returns the codec for name ("none": nil).
func compressor(name string) gocql.Compressor {
	switch name {
	case "snappy":
		return SnappyS2{}
	case "lz4":
		return lz4.LZ4Compressor{}
	}
	return nil
}

// AppendCompressed counts protocol v5 segments (lz4 only).
func (c *countingCompressor) AppendCompressed(dst, src []byte) ([]byte, error) {
	out, err := c.Compressor.AppendCompressed(dst, src)
	c.countCompressed(src, len(dst), out)
	return out, err
}

// AppendDecompressed counts protocol v5 segments (lz4 only).
func (c *countingCompressor) AppendDecompressed(dst, src []byte, n uint32) ([]byte, error) {
	c.decompressed.Add(1)
	return c.Compressor.AppendDecompressed(dst, src, n)
}

// newCompressor is compressor, replaceable by tests (a codec the server
// does not list).
var newCompressor = compressor
