package cqltest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/datastax/go-cassandra-native-protocol/crc"
	"github.com/pierrec/lz4/v4"
)

// Protocol v5 framing (native_protocol_v5.spec section 2): once STARTUP is
// answered, every byte in both directions is a segment, each carrying one
// or more whole envelopes (frames: a self-contained segment) or a part of
// one envelope larger than a segment (a run of segments that are not
// self-contained, the first holding the envelope's header). OPTIONS,
// STARTUP and its READY are not segmented (Cassandra's
// transport/InitialConnectionHandler.java configures the v5 pipeline only
// after READY has left).
//
// Layout (net/FrameEncoderCrc.java, net/FrameEncoderLZ4.java; integers
// little-endian):
//
//	uncompressed: header 3 bytes = payload length (17 bits) | self-contained << 17
//	lz4:          header 5 bytes = compressed length (17 bits)
//	                             | uncompressed length (17 bits) << 17
//	                             | self-contained << 34
//	then the header's CRC24 (3 bytes, net/Crc.java crc24), the payload, and
//	the payload's CRC32 (4 bytes, CRC-32 of the bytes FA 2D 55 CA then the
//	payload; computed over the payload as sent, compressed or not).
//
// A payload holds at most 128 KiB - 1 bytes before compression. With lz4
// the payload is one LZ4 block without a length prefix; an uncompressed
// length of 0 means the payload was sent as is, which Cassandra does when
// compressing does not make it smaller (compressed >= uncompressed).
// Only lz4 and no compression exist in v5: a v5 STARTUP asking for snappy
// is refused (transport/messages/StartupMessage.java).
//
// A CRC mismatch is fatal, as in Cassandra's
// transport/CQLMessageHandler.processCorruptFrame: the server answers a
// PROTOCOL_ERROR "... unrecoverable CRC mismatch detected in frame
// header|body ..." and closes the connection.

// maxSegmentPayload is the largest payload of a segment, before
// compression: 2^17 - 1 bytes (the 17-bit length field).
const maxSegmentPayload = 1<<17 - 1

// segmentCodec reads and writes the segments of one connection.
type segmentCodec struct {
	lz4 bool
}

func (sc segmentCodec) headerLen() int {
	if sc.lz4 {
		return 5
	}
	return 3
}

// corruptSegment is a segment whose checksum does not match: the
// connection cannot go on (the stream ids of what it held are unknown).
type corruptSegment struct {
	what           string // "header" or "body"
	read, computed uint32
}

func (e *corruptSegment) Error() string {
	return fmt.Sprintf("invalid, unrecoverable CRC mismatch detected in frame %s. Read %d, Computed %d", e.what, e.read, e.computed)
}

// badSegment is a segment that is well formed but cannot be what it
// claims (an LZ4 block that does not decompress to its length).
type badSegment struct{ msg string }

func (e *badSegment) Error() string { return e.msg }

// read reads one segment and returns its payload, decompressed.
func (sc segmentCodec) read(r *bufio.Reader) (payload []byte, selfContained bool, err error) {
	hl := sc.headerLen()
	var h [8]byte
	if _, err := io.ReadFull(r, h[:hl+3]); err != nil {
		return nil, false, err
	}
	var hv uint64
	for i := hl - 1; i >= 0; i-- {
		hv = hv<<8 | uint64(h[i])
	}
	got := uint32(h[hl]) | uint32(h[hl+1])<<8 | uint32(h[hl+2])<<16
	if want := crc.ChecksumKoopman(hv, hl); got != want {
		return nil, false, &corruptSegment{"header", got, want}
	}
	n := int(hv & maxSegmentPayload)
	ulen := 0
	if sc.lz4 {
		ulen = int(hv >> 17 & maxSegmentPayload)
		selfContained = hv>>34&1 == 1
	} else {
		selfContained = hv>>17&1 == 1
	}
	buf := make([]byte, n+4)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, false, err
	}
	payload = buf[:n:n]
	if got, want := binary.LittleEndian.Uint32(buf[n:]), crc.ChecksumIEEE(payload); got != want {
		return nil, false, &corruptSegment{"body", got, want}
	}
	if ulen == 0 {
		return payload, selfContained, nil
	}
	out := make([]byte, ulen)
	m, err := lz4.UncompressBlock(payload, out)
	if err != nil || m != ulen {
		return nil, false, &badSegment{fmt.Sprintf("lz4 segment payload of %d bytes does not decompress to the %d its header says (%d, %v)", n, ulen, m, err)}
	}
	return out, selfContained, nil
}

// appendSegment appends the segment carrying payload (at most
// maxSegmentPayload bytes) to dst.
func (sc segmentCodec) appendSegment(dst, payload []byte, selfContained bool) []byte {
	hl := sc.headerLen()
	start := len(dst)
	dst = append(dst, make([]byte, hl+3)...)
	var hv uint64
	if sc.lz4 {
		ulen := len(payload)
		zc := lz4Compressors.Get().(*lz4.Compressor)
		dst = grow(dst, lz4.CompressBlockBound(ulen))
		n, err := zc.CompressBlock(payload, dst[start+hl+3:cap(dst)])
		lz4Compressors.Put(zc)
		if err != nil || n == 0 || n >= ulen {
			// Not worth it (or empty): the payload as is, uncompressed
			// length 0 (net/FrameEncoderLZ4.java).
			dst = append(dst[:start+hl+3], payload...)
			hv = uint64(ulen)
		} else {
			dst = dst[:start+hl+3+n]
			hv = uint64(n) | uint64(ulen)<<17
		}
		if selfContained {
			hv |= 1 << 34
		}
	} else {
		dst = append(dst, payload...)
		hv = uint64(len(payload))
		if selfContained {
			hv |= 1 << 17
		}
	}
	for i := range hl {
		dst[start+i] = byte(hv >> (8 * i))
	}
	c24 := crc.ChecksumKoopman(hv, hl)
	dst[start+hl], dst[start+hl+1], dst[start+hl+2] = byte(c24), byte(c24>>8), byte(c24>>16)
	return binary.LittleEndian.AppendUint32(dst, crc.ChecksumIEEE(dst[start+hl+3:]))
}

// appendFrameSegments appends env, one encoded envelope too large for a
// segment, as a run of segments that are not self-contained.
func (sc segmentCodec) appendFrameSegments(dst, env []byte) []byte {
	for len(env) > 0 {
		n := min(len(env), maxSegmentPayload)
		dst = sc.appendSegment(dst, env[:n], false)
		env = env[n:]
	}
	return dst
}

// grow makes room for n more bytes past len(b), in cap(b).
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	out := make([]byte, len(b), len(b)+n)
	copy(out, b)
	return out
}
