package cassandra

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"
	"go.uber.org/goleak"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/cqltest"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/sink"
)

func TestMain(m *testing.M) {
	// gocql v2.1.2 can leave its ring refresher and control-connection
	// reconnect blocked after Session.Close when connections were dropped
	// under it (cqltest's own TestMain ignores the same two).
	goleak.VerifyTestMain(norace.M(m),
		goleak.IgnoreAnyFunction("github.com/apache/cassandra-gocql-driver/v2.(*Session).refreshRing"),
		goleak.IgnoreAnyFunction("github.com/apache/cassandra-gocql-driver/v2.(*controlConn).reconnect"),
		// closeSession's goroutine, left in Session.Close by the same hang,
		// and the session's own loops that Close stops only once it
		// returns (seen once in a loaded CI run).
		goleak.IgnoreAnyFunction("github.com/demandpipe/demandpipe/sink/cassandra.closeSession.func1"),
		goleak.IgnoreAnyFunction("github.com/apache/cassandra-gocql-driver/v2.(*Session).reconnectDownedHosts"),
		goleak.IgnoreAnyFunction("github.com/apache/cassandra-gocql-driver/v2.(*eventDebouncer).flusher"),
		goleak.IgnoreAnyFunction("github.com/apache/cassandra-gocql-driver/v2.(*refreshDebouncer).flusher"),
	)
}

func startServer(t testing.TB, latency time.Duration) *cqltest.Server {
	t.Helper()
	s, err := cqltest.Start(cqltest.Config{Latency: latency})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testConfig points at srv with a short queue: failures surface in
// seconds, not the production 40.
func testConfig(srv *cqltest.Server) Config { return testConfigAt("127.0.0.1", srv.Port()) }

// testConfigAt is testConfig for the server at host:port.
func testConfigAt(host string, port int) Config {
	c := DefaultConfig()
	c.Hosts = []string{host}
	c.Port = port
	c.CreateSchema = true
	c.Definition = feature.Default() // 54 features, as testFeatures
	c.ReplicationFactor = 1
	c.ReconnectInterval = 100 * time.Millisecond
	c.Queue.Writers = 4
	c.Queue.MinBackoff = 20 * time.Millisecond
	c.Queue.MaxBackoff = 200 * time.Millisecond
	c.Queue.AttemptTimeout = 2 * time.Second
	c.Queue.MaxRetries = 10
	c.Queue.DrainTimeout = 20 * time.Second
	return c
}

func openSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	s, err := Open(context.Background(), cfg, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitKeyspaceKnown waits until the session's schema metadata holds
// keyspace: for one created after it connected, until gocql's debounced
// refresh after the SCHEMA_CHANGE event has run.
func waitKeyspaceKnown(t testing.TB, s *Sink, keyspace string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Session().KeyspaceMetadata(keyspace)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("keyspace %s not in the driver's schema after 10 s: %v", keyspace, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type rowKey struct {
	minute  int64
	product encode.UUID
	cell    uint64
}

// testData is a stream of random minutes: rows keyed by (minute, product,
// cell) with features mostly small counts, some large, a few negative.
type testData struct {
	names    *encode.Products
	products []encode.UUID
	cells    []uint64
	minutes  []int64
	batches  []*encode.Batch // in write order, minute by minute
	want     map[rowKey][]int32
}

const testFeatures = 54

func nearbyCells(t testing.TB, radius int) []uint64 {
	t.Helper()
	c, err := h3.LatLngToCell(h3.NewLatLng(40.7549, -73.9840), 8)
	if err != nil {
		t.Fatal(err)
	}
	disk, err := h3.GridDisk(c, radius)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]uint64, len(disk))
	for i, d := range disk {
		out[i] = uint64(d)
	}
	return out
}

func makeTestData(t testing.TB, seed uint64, minutes, rowsPerMinute, maxBatch int) *testData {
	rng := rand.New(rand.NewPCG(seed, 3))
	d := &testData{names: encode.NewProducts(), cells: nearbyCells(t, 15), want: map[rowKey][]int32{}}
	for i := range 3 {
		var u encode.UUID
		u[0], u[15] = byte(i+1), 0x42
		d.products = append(d.products, u)
		if _, err := d.names.Code(u); err != nil {
			t.Fatal(err)
		}
	}
	m0 := int64(29_000_000)
	for m := range int64(minutes) {
		d.minutes = append(d.minutes, m0+m)
		seen := map[rowKey]bool{}
		var b *encode.Batch
		for range rowsPerMinute {
			k := rowKey{m0 + m, d.products[rng.IntN(3)], d.cells[rng.IntN(len(d.cells))]}
			if seen[k] {
				continue
			}
			seen[k] = true
			if b == nil || b.Len() >= 1+rng.IntN(maxBatch) {
				b = &encode.Batch{Names: d.names}
				b.Reset(m0+m, testFeatures)
				d.batches = append(d.batches, b)
			}
			f := make([]int32, testFeatures)
			for j := range f {
				switch r := rng.IntN(100); {
				case r < 50:
				case r < 90:
					f[j] = int32(rng.IntN(100))
				case r < 99:
					f[j] = int32(rng.IntN(1 << 20))
				default:
					f[j] = -int32(rng.IntN(1000))
				}
			}
			code, _ := d.names.Lookup(k.product)
			b.Cells = append(b.Cells, k.cell)
			b.Products = append(b.Products, code)
			b.Features = append(b.Features, f...)
			d.want[k] = f
		}
	}
	return d
}

// write replays d into w, closing each minute after its batches.
func (d *testData) write(ctx context.Context, w sink.Writer) error {
	i := 0
	for _, m := range d.minutes {
		for ; i < len(d.batches) && d.batches[i].Minute == m; i++ {
			if err := w.Write(ctx, d.batches[i]); err != nil {
				return err
			}
		}
		if err := w.CloseMinute(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// checkReadBack reads every (minute, product) over all of d's cells and
// compares with want: found rows equal, absent rows absent.
func checkReadBack(t testing.TB, r *Reader, minutes []int64, products []encode.UUID, cells []uint64, want map[rowKey][]int32) {
	t.Helper()
	n := 0
	for _, m := range minutes {
		for _, p := range products {
			got, err := r.Get(context.Background(), m, p, cells)
			if err != nil {
				t.Fatalf("Get(%d, %s): %v", m, p, err)
			}
			for i, row := range got {
				w, ok := want[rowKey{m, p, cells[i]}]
				if row.Cell != cells[i] || row.Found != ok || (ok && !slices.Equal(row.Features, w)) {
					t.Fatalf("minute %d product %s cell %x: got found=%v %v, want found=%v %v", m, p, cells[i], row.Found, row.Features, ok, w)
				}
				if ok {
					n++
				}
			}
		}
	}
	if n != len(want) {
		t.Fatalf("read back %d rows, want %d", n, len(want))
	}
}

// collector is a sink.Writer keeping a copy of every row, and forwarding
// to next (may be nil).
type collector struct {
	mu      sync.Mutex
	rows    map[rowKey][]int32
	minutes []int64
	cells   map[uint64]bool
	prods   map[encode.UUID]bool
	next    sink.Writer
	names   *encode.Products // if set, keeps a registry of the products seen
}

func newCollector(next sink.Writer) *collector {
	return &collector{rows: map[rowKey][]int32{}, cells: map[uint64]bool{}, prods: map[encode.UUID]bool{}, next: next}
}

func (c *collector) Write(ctx context.Context, b *encode.Batch) error {
	c.mu.Lock()
	for i := range b.Len() {
		u := b.UUID(i)
		c.rows[rowKey{b.Minute, u, b.Cells[i]}] = slices.Clone(b.Row(i))
		c.cells[b.Cells[i]] = true
		c.prods[u] = true
	}
	c.mu.Unlock()
	if c.next != nil {
		return c.next.Write(ctx, b)
	}
	return nil
}

func (c *collector) CloseMinute(ctx context.Context, m int64) error {
	c.mu.Lock()
	c.minutes = append(c.minutes, m)
	c.mu.Unlock()
	if c.next != nil {
		return c.next.CloseMinute(ctx, m)
	}
	return nil
}

func (c *collector) Close() error {
	if c.next != nil {
		return c.next.Close()
	}
	return nil
}

// merged is one batch holding every row of minute m.
func (d *testData) merged(m int64) *encode.Batch {
	out := &encode.Batch{Names: d.names}
	out.Reset(m, testFeatures)
	for _, b := range d.batches {
		if b.Minute == m {
			out.Cells = append(out.Cells, b.Cells...)
			out.Products = append(out.Products, b.Products...)
			out.Features = append(out.Features, b.Features...)
		}
	}
	return out
}
