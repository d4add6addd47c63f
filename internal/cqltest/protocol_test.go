package cqltest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/datastax/go-cassandra-native-protocol/compression/lz4"
	"github.com/datastax/go-cassandra-native-protocol/compression/snappy"
	"github.com/datastax/go-cassandra-native-protocol/frame"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// rawClient speaks the protocol with the library's codec and its own
// compressors (independent of ours).
type rawClient struct {
	t     *testing.T
	nc    net.Conn
	br    *bufio.Reader
	codec frame.Codec
}

func dial(t *testing.T, s *Server, comp frame.BodyCompressor) *rawClient {
	t.Helper()
	return dialAddr(t, s.Addr(), comp)
}

// dialAddr is dial to one node's address (Server.Addrs).
func dialAddr(t *testing.T, addr string, comp frame.BodyCompressor) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, nc: nc, br: bufio.NewReader(nc), codec: frame.NewCodecWithCompression(comp)}
}

func (c *rawClient) send(stream int16, m message.Message, compress bool) {
	c.t.Helper()
	f := frame.NewFrame(primitive.ProtocolVersion4, stream, m)
	f.SetCompress(compress)
	if err := c.codec.EncodeFrame(f, c.nc); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) recv() *frame.Frame {
	c.t.Helper()
	f, err := c.codec.DecodeFrame(c.br)
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

func (c *rawClient) startup(compression string) {
	c.t.Helper()
	opts := []string{"CQL_VERSION", "3.0.0"}
	if compression != "" {
		opts = append(opts, "COMPRESSION", compression)
	}
	c.send(1, message.NewStartup(opts...), false)
	f := c.recv()
	if _, ok := f.Body.Message.(*message.Ready); !ok || f.Header.Flags.Contains(primitive.HeaderFlagCompressed) {
		c.t.Fatalf("STARTUP answer %v, want an uncompressed READY", f)
	}
}

func TestOptionsAdvertisesLowerCaseCompression(t *testing.T) {
	s := startServer(t, Config{})
	c := dial(t, s, nil)
	c.send(3, &message.Options{}, false)
	f := c.recv()
	sup, ok := f.Body.Message.(*message.Supported)
	if !ok || f.Header.StreamId != 3 {
		t.Fatalf("got %v", f)
	}
	if !slices.Equal(sup.Options["COMPRESSION"], []string{"lz4", "snappy"}) || !slices.Equal(sup.Options["PROTOCOL_VERSIONS"], []string{"3/v3", "4/v4", "5/v5"}) {
		t.Fatalf("SUPPORTED %v", sup.Options)
	}
}

func TestCompressedFramesBothWays(t *testing.T) {
	for _, tc := range []struct {
		name string
		comp frame.BodyCompressor
	}{{"lz4", lz4.Compressor{}}, {"snappy", snappy.Compressor{}}, {"LZ4", lz4.Compressor{}}} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{})
			c := dial(t, s, tc.comp)
			c.startup(tc.name)
			c.send(10, &message.Query{Query: "CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"}, true)
			if f := c.recv(); f.Header.StreamId != 10 || !f.Header.Flags.Contains(primitive.HeaderFlagCompressed) {
				t.Fatalf("got %v", f)
			}
			c.send(11, &message.Query{Query: "CREATE TABLE k.t (a int PRIMARY KEY, b blob)"}, true)
			c.recv()
			big := lowEntropy(13000) // the reference lz4 reads ratios up to 8 only
			c.send(12, &message.Query{Query: "INSERT INTO k.t (a, b) VALUES (?, ?)", Options: &message.QueryOptions{
				PositionalValues: []*primitive.Value{primitive.NewValue([]byte{0, 0, 0, 1}), primitive.NewValue(big)}}}, true)
			if f := c.recv(); f.Header.StreamId != 12 {
				t.Fatalf("insert: %v", f)
			} else if _, ok := f.Body.Message.(*message.VoidResult); !ok {
				t.Fatalf("insert: %v", f)
			}
			// Pipelined: two requests before reading an answer; they run
			// concurrently and are told apart by stream id.
			c.send(13, &message.Query{Query: "SELECT b FROM k.t WHERE a = 1"}, true)
			c.send(14, &message.Query{Query: "SELECT nope FROM k.t"}, true)
			got := map[int16]*frame.Frame{}
			for range 2 {
				f := c.recv()
				got[f.Header.StreamId] = f
			}
			rows, ok := got[13].Body.Message.(*message.RowsResult)
			if !ok || len(rows.Data) != 1 || !bytes.Equal(rows.Data[0][0], big) {
				t.Fatalf("select: %v", got[13])
			}
			if _, ok := got[14].Body.Message.(*message.Invalid); !ok {
				t.Fatalf("bad column: %v", got[14])
			}
			if st := s.Stats(); st.Compression[strings.ToLower(tc.name)] != 1 || st.BytesReceived < 100 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestUnsupportedVersionsAreRefused(t *testing.T) {
	s := startServer(t, Config{})
	for _, v := range []byte{6, 2, 66} {
		nc, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		// OPTIONS, stream 0x0107, empty body.
		nc.Write([]byte{v, 0, 1, 7, byte(primitive.OpCodeOptions), 0, 0, 0, 0})
		resp, err := io.ReadAll(nc) // the server closes after answering
		nc.Close()
		if err != nil {
			t.Fatal(err)
		}
		hdr := 9
		wantV, wantStream := v, []byte{1, 7}
		if v < 3 {
			hdr, wantStream = 8, []byte{1}
		}
		if v > 5 {
			wantV = 5
		}
		if len(resp) < hdr+4 || resp[0] != 0x80|wantV || !bytes.Equal(resp[2:2+len(wantStream)], wantStream) ||
			resp[hdr-5] != byte(primitive.OpCodeError) || binary.BigEndian.Uint32(resp[hdr:]) != uint32(primitive.ErrorCodeProtocolError) {
			t.Fatalf("v%d: answer %x", v, resp)
		}
		if !strings.Contains(string(resp), "Invalid or unsupported protocol version") {
			t.Fatalf("v%d: message %q", v, resp[hdr:])
		}
	}
	if st := s.Stats(); st.RejectedVersions[6] != 1 || st.RejectedVersions[2] != 1 {
		t.Fatalf("rejected %v", st.RejectedVersions)
	}
}

func TestBadFrames(t *testing.T) {
	s := startServer(t, Config{MaxFrameBytes: 1 << 10})
	c := dial(t, s, nil)
	c.startup("")
	// A query before STARTUP on another connection is refused.
	c2 := dial(t, s, nil)
	c2.send(2, &message.Query{Query: "SELECT * FROM system.local"}, false)
	if _, ok := c2.recv().Body.Message.(*message.ProtocolError); !ok {
		t.Fatal("query before STARTUP accepted")
	}
	// An unknown compression is refused.
	c2.send(3, message.NewStartup("CQL_VERSION", "3.0.0", "COMPRESSION", "zstd"), false)
	if _, ok := c2.recv().Body.Message.(*message.ProtocolError); !ok {
		t.Fatal("unknown compression accepted")
	}
	// A frame larger than MaxFrameBytes: PROTOCOL_ERROR, then the connection closes.
	// The server answers after the header and closes, so the write may fail.
	var buf bytes.Buffer
	c.codec.EncodeFrame(frame.NewFrame(primitive.ProtocolVersion4, 4, &message.Query{Query: strings.Repeat("x", 2000)}), &buf)
	c.nc.Write(buf.Bytes())
	if _, ok := c.recv().Body.Message.(*message.ProtocolError); !ok {
		t.Fatal("oversized frame accepted")
	}
	if _, err := c.br.ReadByte(); err == nil {
		t.Fatal("connection still open after an oversized frame")
	}
}

func TestCloseInterruptsServiceTime(t *testing.T) {
	s, err := Start(Config{Latency: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Exec("CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"); err != nil {
		t.Fatal(err)
	}
	s.Exec("CREATE TABLE k.t (a int PRIMARY KEY)")
	c := dial(t, s, nil)
	c.startup("")
	c.send(5, &message.Query{Query: "SELECT * FROM k.t"}, false)
	waitFor(t, 5*time.Second, func() bool { return s.Stats().InFlight == 1 })
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with a request sleeping", d)
	}
}

func TestControlHandler(t *testing.T) {
	s := startServer(t, Config{})
	h := s.ControlHandler()
	do := func(method, url string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, url, nil))
		return rec.Code
	}
	if do("POST", "/fault?kind=overloaded&n=2") != http.StatusOK || do("POST", "/fault?kind=bogus&n=1") != http.StatusBadRequest {
		t.Fatal("fault endpoint")
	}
	if f, _ := s.faults.pick(); f != FaultOverloaded {
		t.Fatalf("queued fault %v", f)
	}
	do("POST", "/fault/clear")
	if f, _ := s.faults.pick(); f != FaultNone {
		t.Fatal("clear did not clear")
	}
	if do("POST", "/latency?d=3ms") != http.StatusOK {
		t.Fatal("latency")
	}
	if _, lat := s.faults.pick(); lat != 3*time.Millisecond {
		t.Fatalf("latency %v", lat)
	}
	if do("POST", "/down?for=0") != http.StatusOK {
		t.Fatal("down")
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Fatal("still listening after /down")
	}
	if do("POST", "/up") != http.StatusOK {
		t.Fatal("up")
	}
	if nc, err := net.DialTimeout("tcp", s.Addr(), time.Second); err != nil {
		t.Fatalf("not listening after /up: %v", err)
	} else {
		nc.Close()
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/stats", nil))
	if !strings.Contains(rec.Body.String(), `"InFlightPeak"`) {
		t.Fatalf("stats: %s", rec.Body.String())
	}
}

func TestBodyCodecs(t *testing.T) {
	for _, name := range []string{"lz4", "snappy"} {
		bc := newBodyCodec(name, 1<<20)
		for _, in := range [][]byte{{}, []byte("x"), bytes.Repeat([]byte("abc"), 10000)} {
			var z, out bytes.Buffer
			if err := bc.CompressWithLength(bytes.NewReader(in), &z); err != nil {
				t.Fatal(err)
			}
			if err := bc.DecompressWithLength(&z, &out); err != nil || !bytes.Equal(out.Bytes(), in) {
				t.Fatalf("%s round trip of %d bytes: %v", name, len(in), err)
			}
		}
		// A declared size beyond the bound is refused before allocating.
		var z bytes.Buffer
		newBodyCodec(name, 1<<30).CompressWithLength(bytes.NewReader(make([]byte, 2<<20)), &z)
		if err := bc.DecompressWithLength(&z, io.Discard); err == nil {
			t.Fatalf("%s: 2 MiB body accepted with a 1 MiB bound", name)
		}
	}
	// Our lz4 framing matches the reference library's.
	var ours, theirs bytes.Buffer
	in := lowEntropy(1000)
	newBodyCodec("lz4", 1<<20).CompressWithLength(bytes.NewReader(in), &ours)
	var back bytes.Buffer
	if err := (lz4.Compressor{}).DecompressWithLength(&ours, &back); err != nil || !bytes.Equal(back.Bytes(), in) {
		t.Fatalf("reference lz4 cannot read ours: %v", err)
	}
	(lz4.Compressor{}).CompressWithLength(bytes.NewReader(in), &theirs)
	back.Reset()
	if err := newBodyCodec("lz4", 1<<20).DecompressWithLength(&theirs, &back); err != nil || !bytes.Equal(back.Bytes(), in) {
		t.Fatalf("we cannot read reference lz4: %v", err)
	}
}

// lowEntropy returns letters from a 16-letter alphabet: compressible about 2x.
func lowEntropy(n int) []byte {
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(r.IntN(16))
	}
	return b
}
