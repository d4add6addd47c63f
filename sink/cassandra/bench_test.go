package cassandra

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/apache/cassandra-gocql-driver/v2/lz4"
	"github.com/apache/cassandra-gocql-driver/v2/snappy"
	"github.com/klauspost/compress/s2"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/cqltest"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink"
)

// recorder is a "snappy" codec that keeps a copy of every uncompressed
// request body: real CQL frames of our rows for the codec comparison.
type recorder struct {
	SnappyS2
	mu     sync.Mutex
	bodies [][]byte
}

func (r *recorder) AppendCompressedWithLength(dst, src []byte) ([]byte, error) {
	r.mu.Lock()
	r.bodies = append(r.bodies, append([]byte(nil), src...))
	r.mu.Unlock()
	return r.SnappyS2.AppendCompressedWithLength(dst, src)
}

// frameBody returns the body of the largest CQL request the sink sends
// for b's rows (a BATCH of BatchRows rows of one partition).
func frameBody(b *encode.Batch) []byte {
	bodies, _ := captureFrames(b, 50)
	var best []byte
	for _, f := range bodies {
		if len(f) > len(best) {
			best = f
		}
	}
	return best
}

// captureFrames writes b through a sink and returns the request bodies
// that carried rows, and the number of rows.
func captureFrames(b *encode.Batch, batchRows int) ([][]byte, int) {
	srv, err := startServerErr()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	rec := &recorder{}
	old := newCompressor
	newCompressor = func(string) gocql.Compressor { return rec }
	defer func() { newCompressor = old }()
	cfg := DefaultConfig()
	cfg.Hosts, cfg.Port, cfg.CreateSchema, cfg.ReplicationFactor = []string{"127.0.0.1"}, srv.Port(), true, 1
	cfg.Queue.BatchRows = batchRows
	s, err := Open(context.Background(), cfg, Options{Logf: func(string, ...any) {}})
	if err != nil {
		panic(err)
	}
	rec.mu.Lock()
	rec.bodies = nil // drop the handshake and schema frames
	rec.mu.Unlock()
	if err := s.Write(context.Background(), b); err != nil {
		panic(err)
	}
	if err := s.CloseMinute(context.Background(), b.Minute); err != nil {
		panic(err)
	}
	s.Close()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out [][]byte
	for _, f := range rec.bodies {
		if len(f) > 100 { // skip the odd system query of the control connection
			out = append(out, f)
		}
	}
	return out, b.Len()
}

// BenchmarkCodec compares the three frame codecs on the request bodies the
// sink really sends (BATCHes of 50 rows of one minute of the engine's rows, engineBatch): bytes on
// the wire per row and CPU per row, compression and decompression.
//
//	go test ./sink/cassandra -run '^$' -bench Codec -benchtime 2000x
func BenchmarkCodec(b *testing.B) {
	bodies, rows := captureFrames(engineBatch(b), 50)
	raw := 0
	for _, f := range bodies {
		raw += len(f)
	}
	for _, c := range []gocql.Compressor{SnappyS2{}, snappyS2Better{}, snappy.SnappyCompressor{}, lz4.LZ4Compressor{}} {
		name := fmt.Sprintf("%T", c)
		b.Run("compress/"+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(raw))
			var wire int
			for b.Loop() {
				wire = 0
				for _, f := range bodies {
					out, err := c.AppendCompressedWithLength(nil, f)
					if err != nil {
						b.Fatal(err)
					}
					wire += len(out)
				}
			}
			b.ReportMetric(float64(wire)/float64(rows), "wire_B/row")
			b.ReportMetric(float64(raw)/float64(rows), "raw_B/row")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows), "ns/row")
		})
		comp := make([][]byte, len(bodies))
		for i, f := range bodies {
			comp[i], _ = c.AppendCompressedWithLength(nil, f)
		}
		b.Run("decompress/"+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(raw))
			for b.Loop() {
				for _, f := range comp {
					if _, err := c.AppendDecompressedWithLength(nil, f); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows), "ns/row")
		})
	}
}

// BenchmarkWrite: rows per second through the whole write path into the
// test double with no service time (client CPU bound: encoding, the
// driver, the loopback, the double's own parsing on the same 2 cores),
// against sink.Null on the same batches. One op is one minute of
// the engine's rows (engineBatch).
//
//	go test ./sink/cassandra -run '^$' -bench 'Write$' -benchtime 20x
//
// With DEMANDPIPE_CQLTEST=HOST:PORT the sink writes to that server (a
// cqltestd process) instead of one in this process, so cpu_ns/row and a
// -cpuprofile are the client's alone:
//
//	taskset -c 1 go run ./internal/cqltest/cmd/cqltestd -addr 127.0.0.1:19042 &
//	DEMANDPIPE_CQLTEST=127.0.0.1:19042 taskset -c 0 go test ./sink/cassandra -run '^$' \
//	    -bench 'Write$/codec=snappy/batch=50' -benchtime 40x -cpuprofile cpu.prof
func BenchmarkWrite(b *testing.B) {
	batch := engineBatch(b)
	run := func(b *testing.B, w sink.Writer) {
		b.ReportAllocs()
		ctx := context.Background()
		cpu0 := cpuTime()
		for b.Loop() {
			if err := w.Write(ctx, batch); err != nil {
				b.Fatal(err)
			}
			if err := w.CloseMinute(ctx, batch.Minute); err != nil {
				b.Fatal(err)
			}
		}
		rows := float64(b.N) * float64(batch.Len())
		b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/rows, "cpu_ns/row")
	}
	b.Run("sink=null", func(b *testing.B) { run(b, &sink.Null{}) })
	for _, codec := range []string{"snappy", "lz4", "none"} {
		for _, br := range []int{1, 50} {
			b.Run(fmt.Sprintf("sink=cassandra/codec=%s/batch=%d", codec, br), func(b *testing.B) {
				cfg, srv := benchConfig(b)
				cfg.Compression, cfg.Queue.BatchRows, cfg.Queue.Writers = codec, br, 16
				s := openSink(b, cfg)
				defer s.Close()
				if srv == nil {
					run(b, s)
					return
				}
				srv.ResetStats()
				run(b, s)
				st := srv.Stats()
				b.ReportMetric(float64(st.BytesReceived)/float64(st.RowsWritten), "wire_B/row")
			})
		}
	}
}

// BenchmarkGrid is the batch size x writers table against a server with a
// fixed service time (Uber's "batch vs single-row writes" experiment, on
// the test double): rows/s for 4,000 of the engine's rows per op.
//
//	go test ./sink/cassandra -run '^$' -bench Grid -benchtime 3x
func BenchmarkGrid(b *testing.B) {
	const service = 2 * time.Millisecond
	const rows = 4000 // batch=1 with 4 writers takes 2 s per op at 2 ms
	full := engineBatch(b)
	batch := &encode.Batch{Minute: full.Minute, NumFeatures: full.NumFeatures, Names: full.Names,
		Cells: full.Cells[:rows], Products: full.Products[:rows], Features: full.Features[:rows*full.NumFeatures]}
	for _, br := range []int{1, 50, 100, 200} {
		for _, w := range []int{4, 16, 64, 128} {
			b.Run(fmt.Sprintf("batch=%d/writers=%d", br, w), func(b *testing.B) {
				srv := startServer(b, 0)
				cfg := testConfig(srv)
				cfg.Queue.BatchRows, cfg.Queue.Writers, cfg.NumConns = br, w, 2
				s := openSink(b, cfg)
				defer s.Close()
				srv.SetLatency(service)
				ctx := context.Background()
				cpu0 := cpuTime()
				for b.Loop() {
					if err := s.Write(ctx, batch); err != nil {
						b.Fatal(err)
					}
					if err := s.CloseMinute(ctx, batch.Minute); err != nil {
						b.Fatal(err)
					}
				}
				rows := float64(b.N) * float64(batch.Len())
				b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/rows, "cpu_ns/row")
				b.ReportMetric(float64(srv.Stats().InFlightPeak), "peak_in_flight")
			})
		}
	}
}

// benchConfig is testConfig for a benchmark: against the server at
// $DEMANDPIPE_CQLTEST (srv nil) when set, else against one started here.
func benchConfig(b *testing.B) (Config, *cqltest.Server) {
	addr := os.Getenv("DEMANDPIPE_CQLTEST")
	if addr == "" {
		srv := startServer(b, 0)
		return testConfig(srv), srv
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		b.Fatalf("DEMANDPIPE_CQLTEST=%q: %v", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		b.Fatalf("DEMANDPIPE_CQLTEST=%q: %v", addr, err)
	}
	return testConfigAt(host, p), nil
}

// cpuTime is the process's user+system CPU time (the test double's
// included: it shares the process).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startServerErr() (*cqltest.Server, error) { return cqltest.Start(cqltest.Config{}) }

var engineOnce struct {
	sync.Once
	b *encode.Batch
}

// engineBatch is the largest minute the engine writes for a generated city
// (gen defaults but 20,000 events a minute and 5,000 riders, 4 minutes):
// real feature rows, 54 features each, the densest minute's ~30k rows.
func engineBatch(tb testing.TB) *encode.Batch {
	engineOnce.Do(func() {
		gc := gen.DefaultConfig()
		gc.EventsPerMinute, gc.Riders = 20_000, 5_000
		in, err := gen.Generate(gc, 80_000)
		if err != nil {
			tb.Fatal(err)
		}
		e, err := pipeline.New(pipeline.DefaultConfig())
		if err != nil {
			tb.Fatal(err)
		}
		col := newCollector(nil)
		col.names = encode.NewProducts()
		if err := e.Run(context.Background(), bytes.NewReader(in), col); err != nil {
			tb.Fatal(err)
		}
		perMinute := map[int64]int{}
		for k := range col.rows {
			perMinute[k.minute]++
		}
		best := int64(0)
		for m, n := range perMinute {
			if n > perMinute[best] {
				best = m
			}
		}
		b := &encode.Batch{Names: col.names}
		b.Reset(best, 54)
		for k, f := range col.rows {
			if k.minute != best {
				continue
			}
			code, _ := col.names.Code(k.product)
			b.Cells = append(b.Cells, k.cell)
			b.Products = append(b.Products, code)
			b.Features = append(b.Features, f...)
		}
		engineOnce.b = b
	})
	return engineOnce.b
}

// snappyS2Better is SnappyS2 with s2's "better" Snappy-compatible encoder:
// measured for the codec table, not used.
type snappyS2Better struct{ SnappyS2 }

func (snappyS2Better) AppendCompressedWithLength(dst, src []byte) ([]byte, error) {
	return s2.EncodeSnappyBetter(make([]byte, s2.MaxEncodedLen(len(src))), src), nil
}
