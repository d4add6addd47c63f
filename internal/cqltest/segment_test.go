package cqltest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	gocqllz4 "github.com/apache/cassandra-gocql-driver/v2/lz4"
	"github.com/apache/cassandra-gocql-driver/v2/snappy"
	"github.com/datastax/go-cassandra-native-protocol/compression/lz4"
	"github.com/datastax/go-cassandra-native-protocol/frame"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
	"github.com/datastax/go-cassandra-native-protocol/segment"
)

// v5Client speaks protocol v5 with the library's frame and segment codecs
// (its own header layout and LZ4 block handling, independent of ours).
type v5Client struct {
	t      *testing.T
	nc     net.Conn
	br     *bufio.Reader
	frames frame.Codec
	segs   segment.Codec
	queued []*frame.Frame // envelopes decoded from a segment, not yet read
}

func dialV5(t *testing.T, s *Server, compression string) *v5Client {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := &v5Client{t: t, nc: nc, br: bufio.NewReader(nc), frames: frame.NewCodec(), segs: segment.NewCodec()}
	// The handshake is not segmented.
	opts := []string{"CQL_VERSION", "3.0.0"}
	if compression != "" {
		opts = append(opts, "COMPRESSION", compression)
	}
	if err := c.frames.EncodeFrame(frame.NewFrame(primitive.ProtocolVersion5, 1, message.NewStartup(opts...)), nc); err != nil {
		t.Fatal(err)
	}
	f, err := c.frames.DecodeFrame(c.br)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Body.Message.(*message.Ready); !ok {
		t.Fatalf("v5 STARTUP %q answered %v", compression, f.Body.Message)
	}
	if compression == "lz4" {
		c.segs = segment.NewCodecWithCompression(lz4.Compressor{})
	}
	return c
}

func (c *v5Client) envelope(stream int16, m message.Message) []byte {
	c.t.Helper()
	var b bytes.Buffer
	if err := c.frames.EncodeFrame(frame.NewFrame(primitive.ProtocolVersion5, stream, m), &b); err != nil {
		c.t.Fatal(err)
	}
	return b.Bytes()
}

// sendSegments sends envs in one self-contained segment, or, when one
// envelope is larger than a segment, in a run of segments.
func (c *v5Client) sendSegments(envs ...[]byte) {
	c.t.Helper()
	payload := bytes.Join(envs, nil)
	var out bytes.Buffer
	self := len(payload) <= segment.MaxPayloadLength
	for len(payload) > 0 {
		n := min(len(payload), segment.MaxPayloadLength)
		s := &segment.Segment{Header: &segment.Header{IsSelfContained: self}, Payload: &segment.Payload{UncompressedData: payload[:n]}}
		if err := c.segs.EncodeSegment(s, &out); err != nil {
			c.t.Fatal(err)
		}
		payload = payload[n:]
	}
	if _, err := c.nc.Write(out.Bytes()); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next envelope, reading segments (and joining a run of
// them) as needed.
func (c *v5Client) recv() *frame.Frame {
	c.t.Helper()
	for len(c.queued) == 0 {
		s, err := c.segs.DecodeSegment(c.br)
		if err != nil {
			c.t.Fatal(err)
		}
		p := s.Payload.UncompressedData
		for !s.Header.IsSelfContained && len(p) < 9+int(binary.BigEndian.Uint32(p[5:])) {
			if s, err = c.segs.DecodeSegment(c.br); err != nil || s.Header.IsSelfContained {
				c.t.Fatalf("rest of a large envelope: %v, self-contained %v", err, s != nil && s.Header.IsSelfContained)
			}
			p = append(p, s.Payload.UncompressedData...)
		}
		r := bytes.NewReader(p)
		for r.Len() > 0 {
			f, err := c.frames.DecodeFrame(r)
			if err != nil {
				c.t.Fatal(err)
			}
			c.queued = append(c.queued, f)
		}
	}
	f := c.queued[0]
	c.queued = c.queued[1:]
	return f
}

func query(q string, vals ...[]byte) *message.Query {
	m := &message.Query{Query: q, Options: &message.QueryOptions{Consistency: primitive.ConsistencyLevelOne}}
	for _, v := range vals {
		m.Options.PositionalValues = append(m.Options.PositionalValues, primitive.NewValue(v))
	}
	return m
}

// TestV5Segments: after a v5 STARTUP (and its READY) every request and
// answer travels in segments: several envelopes in one self-contained
// segment, an envelope larger than a segment in a run of segments each
// way, uncompressed and with lz4 (the uncompressed header is 3 bytes, the
// lz4 one 5, each with its CRC24, and a CRC32 after the payload).
func TestV5Segments(t *testing.T) {
	for _, comp := range []string{"", "lz4"} {
		t.Run("compression="+comp, func(t *testing.T) {
			s := startServer(t, Config{})
			c := dialV5(t, s, comp)
			// Two requests in one segment (served concurrently), answered
			// on their streams.
			c.sendSegments(
				c.envelope(10, query("CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")),
				c.envelope(11, query("SELECT release_version FROM system.local")))
			got := map[int16]message.Message{}
			for range 2 {
				f := c.recv()
				if f.Header.Version != primitive.ProtocolVersion5 {
					t.Fatalf("answer in %v", f.Header.Version)
				}
				got[f.Header.StreamId] = f.Body.Message
			}
			if _, ok := got[10].(*message.SchemaChangeResult); !ok {
				t.Fatalf("stream 10: %v", got[10])
			}
			if _, ok := got[11].(*message.RowsResult); !ok {
				t.Fatalf("stream 11: %v", got[11])
			}
			c.sendSegments(c.envelope(11, query("CREATE TABLE k.t (a int PRIMARY KEY, b blob)")))
			if _, ok := c.recv().Body.Message.(*message.SchemaChangeResult); !ok {
				t.Fatal("CREATE TABLE")
			}
			// 300 KiB: three segments in, three or more out.
			big := lowEntropy(300 << 10)
			c.sendSegments(c.envelope(12, query("INSERT INTO k.t (a, b) VALUES (?, ?)", []byte{0, 0, 0, 1}, big)))
			if f := c.recv(); f.Header.StreamId != 12 {
				t.Fatalf("insert: %v", f)
			} else if _, ok := f.Body.Message.(*message.VoidResult); !ok {
				t.Fatalf("insert: %v", f.Body.Message)
			}
			out := s.Stats().SegmentsSent
			c.sendSegments(c.envelope(13, query("SELECT b FROM k.t WHERE a = 1")))
			f := c.recv()
			rows, ok := f.Body.Message.(*message.RowsResult)
			if !ok || len(rows.Data) != 1 || !bytes.Equal(rows.Data[0][0], big) {
				t.Fatalf("select: %v", f.Body.Message)
			}
			st := s.Stats()
			if st.ProtocolVersions[5] != 1 || st.LargeEnvelopes != 1 || st.SegmentsReceived != 1+1+3+1 || st.SegmentsSent-out < 3 {
				t.Fatalf("versions %v, large %d, segments in %d, out %d", st.ProtocolVersions, st.LargeEnvelopes, st.SegmentsReceived, st.SegmentsSent-out)
			}
			if comp == "lz4" && st.Compression["lz4"] != 1 {
				t.Fatalf("compression %v", st.Compression)
			}
		})
	}
}

// TestV5CorruptSegment: a CRC mismatch in a segment's header or payload is
// answered with the PROTOCOL_ERROR Cassandra sends, then the connection
// closes (transport/CQLMessageHandler.processCorruptFrame).
func TestV5CorruptSegment(t *testing.T) {
	for _, tc := range []struct {
		name string
		flip int // index of the byte to flip in the encoded segment
		want string
	}{
		{"header", 1, "CRC mismatch detected in frame header"},
		{"body", 8, "CRC mismatch detected in frame body"},
		{"payload crc", -1, "CRC mismatch detected in frame body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{})
			c := dialV5(t, s, "")
			var seg bytes.Buffer
			env := c.envelope(5, &message.Options{})
			c.segs.EncodeSegment(&segment.Segment{Header: &segment.Header{IsSelfContained: true}, Payload: &segment.Payload{UncompressedData: env}}, &seg)
			b := seg.Bytes()
			i := tc.flip
			if i < 0 {
				i = len(b) + i
			}
			b[i] ^= 0x20
			c.nc.Write(b)
			f := c.recv()
			pe, ok := f.Body.Message.(*message.ProtocolError)
			if !ok || !strings.Contains(pe.ErrorMessage, tc.want) {
				t.Fatalf("got %v, want a PROTOCOL_ERROR %q", f.Body.Message, tc.want)
			}
			if _, err := c.br.ReadByte(); err != io.EOF {
				t.Fatalf("connection still open after a corrupt segment (%v)", err)
			}
		})
	}
}

// TestV5RefusesSnappy: v5 segments are lz4 or uncompressed; a v5 STARTUP
// asking for snappy gets Cassandra's PROTOCOL_ERROR (gocql then retries
// with v4).
func TestV5RefusesSnappy(t *testing.T) {
	s := startServer(t, Config{})
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	codec := frame.NewCodec()
	codec.EncodeFrame(frame.NewFrame(primitive.ProtocolVersion5, 1, message.NewStartup("CQL_VERSION", "3.0.0", "COMPRESSION", "snappy")), nc)
	f, err := codec.DecodeFrame(bufio.NewReader(nc))
	if err != nil {
		t.Fatal(err)
	}
	if pe, ok := f.Body.Message.(*message.ProtocolError); !ok || !strings.Contains(pe.ErrorMessage, "Snappy compression is not supported in protocol V5") {
		t.Fatalf("got %v", f.Body.Message)
	}
}

// TestV5Gocql: gocql v2 asks for v5 first; the double speaks it, with no
// compression and with lz4, a batch and a result larger than a segment
// included; with snappy, which v5 does not allow, gocql falls back to v4.
func TestV5Gocql(t *testing.T) {
	for _, tc := range []struct {
		name    string
		comp    gocql.Compressor
		version int
	}{
		{"none", nil, 5},
		{"lz4", gocqllz4.LZ4Compressor{}, 5},
		{"snappy", snappy.SnappyCompressor{}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{})
			sess := newSession(t, s, tc.comp, nil)
			createSchema(t, sess)
			// One batch of 400 rows of ~1 KiB: larger than a segment.
			rows := make([]featureRow, 400)
			for i := range rows {
				rows[i] = featureRow{product: 1, minute: 29_000_000, reg: 7, cell: int64(i), f: lowEntropy(1000 + i)}
			}
			writeBatches(t, sess, rows)
			iter := sess.Query(`SELECT cell, f FROM demandpipe.features WHERE product = ? AND minute = ? AND region = ?`, int8(1), int64(29_000_000), int64(7)).PageSize(0).Iter()
			var (
				cell int64
				f    []byte
				n    int
			)
			for iter.Scan(&cell, &f) {
				if cell != int64(n) || !bytes.Equal(f, rows[n].f) {
					t.Fatalf("row %d: cell %d, %d bytes", n, cell, len(f))
				}
				n++
			}
			if err := iter.Close(); err != nil || n != len(rows) {
				t.Fatalf("read %d rows: %v", n, err)
			}
			st := s.Stats()
			t.Logf("versions %v rejected %v compression %v segments in %d out %d large %d errors %v",
				st.ProtocolVersions, st.RejectedVersions, st.Compression, st.SegmentsReceived, st.SegmentsSent, st.LargeEnvelopes, st.Errors)
			if tc.version == 5 {
				if st.ProtocolVersions[5] == 0 || st.ProtocolVersions[4] != 0 || len(st.RejectedVersions) != 0 || st.LargeEnvelopes == 0 || st.SegmentsSent == 0 {
					t.Fatal("want v5 used, nothing refused, and a batch larger than a segment")
				}
			} else if st.ProtocolVersions[4] == 0 || st.Errors["ProtocolError"] == 0 || st.SegmentsReceived != 0 {
				t.Fatal("want v5 with snappy refused and v4 used")
			}
			if st.Compression[tc.name] == 0 {
				t.Fatalf("no connection negotiated %s", tc.name)
			}
		})
	}
}

// TestSegmentCodecMatchesLibrary: our segments decode with the protocol
// library's segment codec (its own header layout; its LZ4 reads up to 8x
// ratios only, so the payloads here compress less) and back, for empty,
// incompressible, compressible and maximal payloads, self-contained or not.
func TestSegmentCodecMatchesLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	for _, useLZ4 := range []bool{false, true} {
		sc := segmentCodec{lz4: useLZ4}
		lib := segment.NewCodec()
		if useLZ4 {
			lib = segment.NewCodecWithCompression(lz4.Compressor{})
		}
		for _, p := range [][]byte{{}, []byte("x"), random(1000), lowEntropy(5000), lowEntropy(maxSegmentPayload), random(maxSegmentPayload)} {
			for _, self := range []bool{true, false} {
				enc := sc.appendSegment([]byte("prefix"), p, self)[len("prefix"):]
				got, err := lib.DecodeSegment(bytes.NewReader(enc))
				if err != nil || !bytes.Equal(got.Payload.UncompressedData, p) || got.Header.IsSelfContained != self {
					t.Fatalf("lz4=%v, %d bytes, self=%v: the library read %v (%v)", useLZ4, len(p), self, got, err)
				}
				back, bself, err := sc.read(bufio.NewReader(bytes.NewReader(enc)))
				if err != nil || !bytes.Equal(back, p) || bself != self {
					t.Fatalf("lz4=%v, %d bytes: we read back %d bytes, self=%v (%v)", useLZ4, len(p), len(back), bself, err)
				}
				var theirs bytes.Buffer
				if err := lib.EncodeSegment(&segment.Segment{Header: &segment.Header{IsSelfContained: self}, Payload: &segment.Payload{UncompressedData: p}}, &theirs); err != nil {
					t.Fatal(err)
				}
				if back, _, err := sc.read(bufio.NewReader(&theirs)); err != nil || !bytes.Equal(back, p) {
					t.Fatalf("lz4=%v, %d bytes: we cannot read the library's segment: %v", useLZ4, len(p), err)
				}
			}
		}
	}
}

// FuzzSegmentRead: any bytes read as a segment give an error or a
// payload of at most a segment's size, never a panic; what reads cleanly
// re-encodes to a segment that reads the same.
func FuzzSegmentRead(f *testing.F) {
	for _, useLZ4 := range []bool{false, true} {
		sc := segmentCodec{lz4: useLZ4}
		f.Add(sc.appendSegment(nil, lowEntropy(300), true), useLZ4)
		f.Add(sc.appendSegment(nil, []byte{}, false), useLZ4)
	}
	f.Fuzz(func(t *testing.T, b []byte, useLZ4 bool) {
		sc := segmentCodec{lz4: useLZ4}
		p, self, err := sc.read(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if len(p) > maxSegmentPayload {
			t.Fatalf("a payload of %d bytes", len(p))
		}
		again, self2, err := sc.read(bufio.NewReader(bytes.NewReader(sc.appendSegment(nil, p, self))))
		if err != nil || !bytes.Equal(again, p) || self2 != self {
			t.Fatalf("re-encoded segment reads %d bytes, self %v, %v", len(again), self2, err)
		}
	})
}
