package pulsartest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	meta := putU64(putU64(putString(nil, 1, "p"), 2, 7), 3, 1234)
	stored := appendPayload(nil, meta, []byte("hello"))
	cmd := appendBase(nil, cmdSend, putU64(putU64(nil, 1, 1), 2, 7))
	wire := appendFrame(nil, cmd, stored)
	f, _, err := readFrame(bufio.NewReader(bytes.NewReader(wire)), nil, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.cmd, cmd) || !f.hasPayload || f.badChecksum || !bytes.Equal(f.meta, meta) || !bytes.Equal(f.stored, stored) {
		t.Fatalf("round trip: %+v", f)
	}
	m, err := decodeMsgMeta(f.meta)
	if err != nil || m.producerName != "p" || m.sequenceID != 7 || m.publishTime != 1234 || m.numMessages != 1 || m.haveNumMessages {
		t.Fatalf("metadata %+v %v", m, err)
	}

	// A flipped payload bit is caught by the CRC32C.
	bad := bytes.Clone(wire)
	bad[len(bad)-1] ^= 1
	f, _, err = readFrame(bufio.NewReader(bytes.NewReader(bad)), nil, 1<<20)
	if err != nil || !f.badChecksum {
		t.Fatalf("corrupted payload: badChecksum=%v err=%v", f.badChecksum, err)
	}

	// Without magic and checksum (protocol < v6) the frame is accepted and
	// stored with a checksum added.
	plain := binary.BigEndian.AppendUint32(nil, uint32(len(meta)))
	plain = append(append(plain, meta...), "hello"...)
	f, _, err = readFrame(bufio.NewReader(bytes.NewReader(appendFrame(nil, cmd, plain))), nil, 1<<20)
	if err != nil || f.badChecksum || !bytes.Equal(f.stored, stored) {
		t.Fatalf("unchecksummed frame: %+v %v", f, err)
	}
}

func TestFrameLimits(t *testing.T) {
	huge := binary.BigEndian.AppendUint32(nil, 6<<20)
	if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(huge)), nil, 5<<20); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("oversized frame: %v", err)
	}
	// A frame that announces 4 MB but sends 10 bytes costs one chunk.
	short := append(binary.BigEndian.AppendUint32(nil, 4<<20), make([]byte, 10)...)
	_, buf, err := readFrame(bufio.NewReader(bytes.NewReader(short)), nil, 5<<20)
	if err == nil || cap(buf) > 2*readChunk {
		t.Fatalf("truncated frame: err=%v, buffer grew to %d", err, cap(buf))
	}
	// Command size beyond the frame.
	bad := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 100)
	bad = append(bad, 0, 0, 0, 0)
	if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(bad)), nil, 5<<20); !errors.Is(err, errFrameShort) {
		t.Fatalf("bad command size: %v", err)
	}
}

// FuzzReadFrame checks the decoder never panics and never buffers more than
// the frame limit, whatever the input; then that whatever it accepts
// decodes as protobuf without panicking.
func FuzzReadFrame(f *testing.F) {
	meta := putU64(putU64(putString(nil, 1, "p"), 2, 7), 3, 1234)
	f.Add(appendFrame(nil, appendBase(nil, cmdSend, putU64(nil, 1, 1)), appendPayload(nil, meta, []byte("x"))))
	f.Add(appendFrame(nil, encPing(), nil))
	f.Add(appendFrame(nil, encConnected("v", 20, 1<<20), nil))
	f.Add(appendFrame(nil, appendBase(nil, cmdSubscribe, putBytes(nil, 17, putBytes(nil, 3, putU64(nil, 1, 5)))), nil))
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 1 << 16
		r := bufio.NewReader(bytes.NewReader(data))
		var buf []byte
		for {
			fr, b, err := readFrame(r, buf, limit)
			buf = b
			if cap(buf) > 2*limit {
				t.Fatalf("buffer grew to %d for limit %d", cap(buf), limit)
			}
			if err != nil {
				return
			}
			typ, body, err := decodeBase(fr.cmd)
			if err != nil {
				continue
			}
			switch typ {
			case cmdSubscribe:
				decodeSubscribe(body)
			case cmdAck:
				decodeAck(body)
			case cmdSend:
				decodeSend(body)
				decodeMsgMeta(fr.meta)
			case cmdSeek:
				decodeSeek(body)
			default:
				decodeConnect(body)
				decodeRedeliver(body)
			}
		}
	})
}
