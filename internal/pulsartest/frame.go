package pulsartest

// Frame codec. The wire format (big-endian):
//
//	simple:  [total size u32][command size u32][BaseCommand]
//	payload: [total size u32][command size u32][BaseCommand]
//	         [magic 0x0e01 u16][crc32c u32][metadata size u32][MessageMetadata][payload]
//
// total size counts everything after itself. The CRC32C (Castagnoli) covers
// metadata size + metadata + payload. The magic and checksum are optional on
// the wire (protocol versions before v6 did not send them): a payload part
// without the magic is accepted and stored with a checksum added, because
// the Go client refuses MESSAGE frames without one.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

const (
	magicCRC32C = 0x0e01
	// readChunk bounds how much is allocated ahead of data actually
	// received: a peer announcing a 5 MB frame and sending nothing costs
	// 64 KiB, not 5 MB.
	readChunk = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	errFrameTooLarge = errors.New("pulsartest: frame larger than the maximum frame size")
	errFrameShort    = errors.New("pulsartest: frame sizes inconsistent")
)

// frame is one decoded frame. cmd aliases the read buffer; stored
// (payload frames only) is a fresh copy of the normalised payload part:
// magic + checksum + metadata size + metadata + payload, ready to forward
// in MESSAGE frames.
type frame struct {
	cmd         []byte
	hasPayload  bool
	badChecksum bool
	meta        []byte // aliases stored
	stored      []byte
}

// readFrame reads one frame from r into buf (which it may grow and returns
// for reuse). Frames larger than maxFrame are rejected before any of their
// body is read. A checksum mismatch is not an error: the frame is returned
// with badChecksum set so the caller can answer with a SEND_ERROR.
func readFrame(r *bufio.Reader, buf []byte, maxFrame int) (frame, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, buf, err
	}
	total := int64(binary.BigEndian.Uint32(hdr[:]))
	if total > int64(maxFrame) {
		return frame{}, buf, fmt.Errorf("%w: %d > %d", errFrameTooLarge, total, maxFrame)
	}
	if total < 4 {
		return frame{}, buf, fmt.Errorf("%w: total size %d", errFrameShort, total)
	}
	buf, err := readN(r, buf[:0], int(total))
	if err != nil {
		return frame{}, buf, err
	}
	f, err := parseFrame(buf)
	return f, buf, err
}

// readN appends exactly n bytes from r to dst, growing dst in steps of at
// most readChunk so that allocation follows the bytes received.
func readN(r io.Reader, dst []byte, n int) ([]byte, error) {
	for len(dst) < n {
		want := min(n-len(dst), readChunk)
		if cap(dst)-len(dst) < want {
			grown := make([]byte, len(dst), len(dst)+max(want, min(n-len(dst), 2*cap(dst))))
			copy(grown, dst)
			dst = grown
		}
		k, err := io.ReadFull(r, dst[len(dst):len(dst)+want])
		dst = dst[:len(dst)+k]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return dst, err
		}
	}
	return dst, nil
}

// parseFrame decodes the body of a frame (everything after total size).
func parseFrame(body []byte) (frame, error) {
	if len(body) < 4 {
		return frame{}, errFrameShort
	}
	cmdSize := int64(binary.BigEndian.Uint32(body))
	if cmdSize > int64(len(body)-4) {
		return frame{}, fmt.Errorf("%w: command size %d, frame %d", errFrameShort, cmdSize, len(body))
	}
	f := frame{cmd: body[4 : 4+cmdSize]}
	rest := body[4+cmdSize:]
	if len(rest) == 0 {
		return f, nil
	}
	f.hasPayload = true
	var sum uint32
	haveSum := false
	if len(rest) >= 2 && binary.BigEndian.Uint16(rest) == magicCRC32C {
		if len(rest) < 6 {
			return frame{}, errFrameShort
		}
		sum, haveSum = binary.BigEndian.Uint32(rest[2:]), true
		rest = rest[6:]
	}
	if len(rest) < 4 {
		return frame{}, errFrameShort
	}
	metaSize := int64(binary.BigEndian.Uint32(rest))
	if metaSize > int64(len(rest)-4) {
		return frame{}, fmt.Errorf("%w: metadata size %d, left %d", errFrameShort, metaSize, len(rest)-4)
	}
	computed := crc32.Checksum(rest, castagnoli)
	if haveSum && computed != sum {
		f.badChecksum = true
	}
	// Normalise to the checksummed form and copy out of the read buffer.
	stored := make([]byte, 6+len(rest))
	binary.BigEndian.PutUint16(stored, magicCRC32C)
	binary.BigEndian.PutUint32(stored[2:], computed)
	copy(stored[6:], rest)
	f.stored = stored
	f.meta = stored[10 : 10+metaSize]
	return f, nil
}

// appendFrame appends a frame carrying cmd (a BaseCommand) and, if stored
// is not nil, a payload part already in checksummed form.
func appendFrame(dst, cmd, stored []byte) []byte {
	total := 4 + len(cmd) + len(stored)
	dst = binary.BigEndian.AppendUint32(dst, uint32(total))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(cmd)))
	dst = append(dst, cmd...)
	return append(dst, stored...)
}

// appendPayload builds the checksummed payload part from metadata and
// payload; the write side of parseFrame, used by tests and tools.
func appendPayload(dst, meta, payload []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint16(dst, magicCRC32C)
	dst = binary.BigEndian.AppendUint32(dst, 0)
	sumFrom := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(meta)))
	dst = append(dst, meta...)
	dst = append(dst, payload...)
	binary.BigEndian.PutUint32(dst[start+2:], crc32.Checksum(dst[sumFrom:], castagnoli))
	return dst
}
