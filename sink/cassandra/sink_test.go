package cassandra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/cqltest"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink"
)

// TestRoundTrip: a replayed stream of random minutes reads back exactly,
// with each codec negotiated as asked, in protocol v5 but for snappy (v4);
// every CQL batch holds one partition.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, codec := range []string{"snappy", "lz4", "none"} {
		t.Run(codec, func(t *testing.T) {
			srv := startServer(t, 0)
			cfg := testConfig(srv)
			cfg.Compression = codec
			reg := prometheus.NewPedanticRegistry()
			s, err := Open(context.Background(), cfg, Options{Registerer: reg, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			if s.Codec() != codec {
				t.Fatalf("negotiated %q, asked %q", s.Codec(), codec)
			}
			d := makeTestData(t, 1, 4, 3000, 700)
			if err := d.write(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			st := srv.Stats()
			if st.Compression[codec] == 0 || len(st.Compression) != 1 {
				t.Fatalf("server saw codecs %v, want only %s", st.Compression, codec)
			}
			// gocql negotiates protocol v5 (segments with CRCs) with lz4
			// or no compression; snappy, which v5 does not allow, pins v4.
			wantV := map[string]int{"snappy": 4, "lz4": 5, "none": 5}[codec]
			if st.ProtocolVersions[wantV] == 0 || len(st.ProtocolVersions) != 1 || len(st.RejectedVersions) != 0 {
				t.Fatalf("protocol versions %v, refused %v: want only v%d", st.ProtocolVersions, st.RejectedVersions, wantV)
			}
			if wantV == 5 && (st.SegmentsReceived == 0 || st.SegmentsSent == 0) {
				t.Fatalf("v5 without segments: %d in, %d out", st.SegmentsReceived, st.SegmentsSent)
			}
			for i, p := range st.BatchPartitions {
				if p != 1 {
					t.Fatalf("batch %d touched %d partitions", i, p)
				}
			}
			if len(st.BatchPartitions) == 0 || st.Batches["UNLOGGED"] != int64(len(st.BatchPartitions)) || st.Batches["LOGGED"] != 0 {
				t.Fatalf("batches %v (%d recorded)", st.Batches, len(st.BatchPartitions))
			}
			// Batches carry the keyspace (routing to every replica; issue
			// 22 C8): on the wire from v5 on.
			if ks := map[int]string{4: "", 5: cfg.Keyspace}[wantV]; st.BatchKeyspaces[ks] != st.Batches["UNLOGGED"] {
				t.Fatalf("batches by keyspace %v, want all %d with %q", st.BatchKeyspaces, st.Batches["UNLOGGED"], ks)
			}
			if n, _ := srv.Rows(cfg.Keyspace, cfg.Table); n != len(d.want) {
				t.Fatalf("server holds %d rows, want %d", n, len(d.want))
			}
			checkReadBack(t, NewReader(s.Session(), cfg), d.minutes, d.products, d.cells, d.want)
			qs := s.QueueStats()
			if qs.SentItems != int64(len(d.want)) || qs.DroppedItems != 0 || qs.InFlightPeak > int64(cfg.Queue.Writers) {
				t.Fatalf("queue stats %+v", qs)
			}
			if got := testutil.ToFloat64(s.codecMx); got != 1 {
				t.Fatalf("compression_info = %v", got)
			}
			if n, err := testutil.GatherAndCount(reg, "demandpipe_sink_cassandra_compression_info", "demandpipe_sink_sent_items_total", "demandpipe_sink_write_duration_seconds"); err != nil || n != 3 {
				t.Fatalf("metrics: %d, %v", n, err)
			}
			if lint, err := testutil.GatherAndLint(reg); err != nil || len(lint) > 0 {
				t.Fatalf("lint %v %v", lint, err)
			}
			want := fmt.Sprintf(`demandpipe_sink_cassandra_compression_info{codec=%q,requested=%q} 1`, codec, codec)
			if err := testutil.GatherAndCompare(reg, strings.NewReader("# HELP demandpipe_sink_cassandra_compression_info 1, labelled with the frame codec the server negotiated (none when it refused the requested one) and the requested one.\n# TYPE demandpipe_sink_cassandra_compression_info gauge\n"+want+"\n"), "demandpipe_sink_cassandra_compression_info"); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if n, _ := testutil.GatherAndCount(reg); n != 0 {
				t.Fatalf("%d metrics left registered after Close", n)
			}
		})
	}
}

// TestSingleRowWrites: BatchRows = 1 writes token-aware single-row INSERTs
// (no BATCH at all) and reads back the same.
func TestSingleRowWrites(t *testing.T) {
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	cfg.Queue.BatchRows = 1
	s := openSink(t, cfg)
	defer s.Close()
	d := makeTestData(t, 2, 2, 500, 100)
	if err := d.write(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	st := srv.Stats()
	// Besides the rows: the writer lease, the definition record and a
	// minutes row per minute.
	if st.Requests["BATCH"] != 0 || st.Statements["INSERT"] != int64(len(d.want)+2+len(d.minutes)) {
		t.Fatalf("requests %v statements %v", st.Requests, st.Statements)
	}
	checkReadBack(t, NewReader(s.Session(), cfg), d.minutes, d.products, d.cells, d.want)
}

// TestEngineEndToEnd: the engine's rows for a generated city, written
// through the Cassandra sink, read back equal to what a collecting sink
// received.
func TestEngineEndToEnd(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	s := openSink(t, cfg)
	gc := gen.DefaultConfig()
	gc.EventsPerMinute, gc.Riders, gc.Hotspots = 600, 300, 3
	in, err := gen.Generate(gc, 2000)
	if err != nil {
		t.Fatal(err)
	}
	e, err := pipeline.New(pipeline.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	col := newCollector(s)
	if err := e.Run(context.Background(), bytes.NewReader(in), col); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(col.rows) == 0 || len(col.minutes) < 2 {
		t.Fatalf("engine wrote %d rows in %d minutes", len(col.rows), len(col.minutes))
	}
	t.Logf("engine: %d rows, %d minutes, %d cells, %d products", len(col.rows), len(col.minutes), len(col.cells), len(col.prods))
	r, err := OpenReader(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var cells []uint64
	for c := range col.cells {
		cells = append(cells, c)
	}
	var prods []encode.UUID
	for p := range col.prods {
		prods = append(prods, p)
	}
	checkReadBack(t, r, col.minutes, prods, cells, col.rows)
}

// TestInFlightBounded: with a service time, the server never has more
// statements in flight than -sink.writers.
func TestInFlightBounded(t *testing.T) {
	t.Parallel()
	for _, writers := range []int{1, 3, 8} {
		t.Run(fmt.Sprint(writers), func(t *testing.T) {
			srv := startServer(t, 0)
			cfg := testConfig(srv)
			cfg.Queue.Writers = writers
			s := openSink(t, cfg)
			defer s.Close()
			// Warm up: every connection prepares the INSERT and the driver's
			// start-up queries are done, so the peak counts only writes.
			if err := makeTestData(t, 13, 1, 300, 300).write(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			srv.SetLatency(3 * time.Millisecond)
			srv.ResetStats()
			d := makeTestData(t, 3, 2, 1500, 1000)
			if err := d.write(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			st := srv.Stats()
			if st.InFlightPeak > int64(writers) || st.InFlightPeak < 1 {
				t.Fatalf("server in-flight peak %d with %d writers; requests %v", st.InFlightPeak, writers, st.Requests)
			}
			if writers > 1 && st.InFlightPeak < 2 {
				t.Fatalf("server in-flight peak %d: writers did not overlap", st.InFlightPeak)
			}
		})
	}
}

// TestFaults: injected errors, dropped connections, a server down for a
// while, writes applied but answered WRITE_TIMEOUT, prepared statements
// forgotten (UNPREPARED) lose no row, change none and count none twice
// (the minutes list's row counts); the queue retried.
func TestFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		fault  cqltest.Fault
		rate   float64
		down   time.Duration
		forget bool // ForgetPrepared all along: EXECUTE and BATCH get UNPREPARED
	}{
		{"timeout", cqltest.FaultTimeout, 0.2, 0, false},
		{"timeout-applied", cqltest.FaultTimeoutApplied, 0.2, 0, false},
		{"unprepared", cqltest.FaultNone, 0, 0, true},
		{"overloaded", cqltest.FaultOverloaded, 0.2, 0, false},
		{"unavailable", cqltest.FaultUnavailable, 0.2, 0, false},
		{"server-error", cqltest.FaultServerError, 0.1, 0, false},
		{"drop", cqltest.FaultDrop, 0.02, 0, false},
		{"down", cqltest.FaultNone, 0, 2 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each its own server: the back-offs overlap
			srv := startServer(t, 0)
			cfg := testConfig(srv)
			// ~20 x 250 ms of back-off on average outlasts the 2 s outage.
			cfg.Queue.MaxRetries, cfg.Queue.MaxBackoff = 20, 500*time.Millisecond
			s := openSink(t, cfg)
			defer s.Close()
			srv.SetLatency(time.Millisecond)
			d := makeTestData(t, 4, 6, 1500, 800)
			if tc.rate > 0 {
				srv.SetFaultRate(tc.fault, tc.rate)
			}
			stopForgetting := func() {}
			if tc.forget {
				done, stopped := make(chan struct{}), make(chan struct{})
				go func() {
					defer close(stopped)
					for {
						select {
						case <-done:
							return
						case <-time.After(3 * time.Millisecond):
							srv.ForgetPrepared()
						}
					}
				}()
				stopForgetting = sync.OnceFunc(func() { close(done); <-stopped })
				defer stopForgetting()
			}
			ctx := context.Background()
			half := len(d.minutes) / 2
			first := &testData{minutes: d.minutes[:half], batches: d.batches}
			if err := first.write(ctx, s); err != nil {
				t.Fatal(err)
			}
			if tc.down > 0 {
				// The double pushes SCHEMA_CHANGE events for the schema Open
				// created, and gocql refreshes its schema 1 s after the last
				// (schemaRefreshDebounceTime). A refresh begun while the
				// server is down waits for schema agreement on the dead
				// control connection for 10 s (awaitSchemaAgreementWithTimeout)
				// and Session.Close waits for it: the outage comes after the
				// refresh, as for a sink that has run a second.
				waitKeyspaceKnown(t, s, cfg.Keyspace)
				if err := srv.Down(tc.down); err != nil {
					t.Fatal(err)
				}
			}
			rest := &testData{minutes: d.minutes[half:], batches: d.batches[firstBatchOf(d, d.minutes[half]):]}
			start := time.Now()
			if err := rest.write(ctx, s); err != nil {
				t.Fatal(err)
			}
			if tc.down > 0 && time.Since(start) < tc.down/2 {
				t.Fatalf("wrote through a %v outage in %v", tc.down, time.Since(start))
			}
			srv.ClearFaults()
			stopForgetting()
			qs := s.QueueStats()
			st := srv.Stats()
			if (qs.Retries == 0 && !tc.forget) || qs.DroppedItems != 0 || qs.SentItems != int64(len(d.want)) {
				t.Fatalf("queue %+v", qs)
			}
			if tc.forget && st.Errors["Unprepared"] == 0 {
				t.Fatalf("no UNPREPARED answered: %v", st.Errors)
			}
			if n, _ := srv.Rows(cfg.Keyspace, cfg.Table); n != len(d.want) {
				t.Fatalf("server holds %d rows, want %d", n, len(d.want))
			}
			// Every minute's row count is its rows' once, retries or not.
			perMinute := map[int64]int64{}
			for k := range d.want {
				perMinute[k.minute]++
			}
			store, err := NewStore(ctx, s.Session(), cfg, StoreOptions{Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			for _, mi := range store.Minutes(nil) {
				if int64(mi.Rows) != perMinute[mi.Minute] {
					t.Fatalf("minute %d lists %d rows, %d were written", mi.Minute, mi.Rows, perMinute[mi.Minute])
				}
				delete(perMinute, mi.Minute)
			}
			if len(perMinute) != 0 {
				t.Fatalf("minutes not listed: %v", perMinute)
			}
			t.Logf("%s: %d rows, %d batches, %d failures, %d retries; server injected %d, errors %v", tc.name, qs.SentItems, qs.SentBatches, qs.Failures, qs.Retries, st.Injected, st.Errors)
			checkReadBack(t, NewReader(s.Session(), cfg), d.minutes, d.products, d.cells, d.want)
			for i, p := range st.BatchPartitions {
				if p != 1 {
					t.Fatalf("batch %d touched %d partitions", i, p)
				}
			}
		})
	}
}

func firstBatchOf(d *testData, m int64) int {
	for i, b := range d.batches {
		if b.Minute == m {
			return i
		}
	}
	return len(d.batches)
}

// TestSlowServerBackPressure: a slow server slows Write down instead of
// letting rows pile up: the queue never holds more than its capacity.
func TestSlowServerBackPressure(t *testing.T) {
	t.Parallel()
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	cfg.Queue.Writers, cfg.Queue.BatchRows, cfg.Queue.Capacity = 2, 20, 200
	s := openSink(t, cfg)
	defer s.Close()
	const latency = 20 * time.Millisecond
	srv.SetLatency(latency)
	d := makeTestData(t, 5, 1, 3000, 3000)
	big := d.merged(d.minutes[0])
	var peak int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				peak = max(peak, s.QueueStats().Queued)
			}
		}
	})
	start := time.Now()
	err := s.Write(context.Background(), big)
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	n := big.Len()
	// Capacity rows may still be queued when Write returns; the rest had
	// to be sent, at best Writers x BatchRows per service time.
	floor := time.Duration((n-cfg.Queue.Capacity)/(cfg.Queue.Writers*cfg.Queue.BatchRows)) * latency
	if elapsed < floor*8/10 {
		t.Fatalf("Write of %d rows returned after %v against a %v server; floor %v", n, elapsed, latency, floor)
	}
	if peak > int64(cfg.Queue.Capacity) || s.QueueStats().Blocked == 0 {
		t.Fatalf("queue peak %d > capacity %d, or never blocked", peak, cfg.Queue.Capacity)
	}
	if err := s.CloseMinute(context.Background(), d.minutes[0]); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rows against %v: Write took %v (floor %v), queue peak %d of %d", n, latency, elapsed, floor, peak, cfg.Queue.Capacity)
}

// TestGoneForGood: a server that goes away and stays away fails Write or
// CloseMinute within a bounded time, with the drop counted.
func TestGoneForGood(t *testing.T) {
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	cfg.Queue.MaxRetries, cfg.Queue.MinBackoff, cfg.Queue.MaxBackoff, cfg.Queue.AttemptTimeout = 3, 50*time.Millisecond, 500*time.Millisecond, time.Second
	cfg.Queue.DrainTimeout = 5 * time.Second
	s := openSink(t, cfg)
	d := makeTestData(t, 6, 3, 2000, 500)
	if err := srv.Down(0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := d.write(context.Background(), s)
	elapsed := time.Since(start)
	if err == nil || !errors.Is(err, sink.ErrDropped) {
		t.Fatalf("got %v, want a drop", err)
	}
	if elapsed > 15*time.Second || elapsed > cfg.Queue.RetryBound()+2*time.Second {
		t.Fatalf("failed after %v (bound %v)", elapsed, cfg.Queue.RetryBound())
	}
	t.Logf("gone for good: %v after %v (bound %v)", err, elapsed, cfg.Queue.RetryBound())
	start = time.Now()
	if err := s.Close(); err == nil {
		t.Fatal("Close forgot the drop")
	}
	if qs := s.QueueStats(); qs.DroppedItems == 0 || time.Since(start) > cfg.Queue.DrainTimeout+time.Second {
		t.Fatalf("Close after %v, stats %+v", time.Since(start), qs)
	}
}

// TestOpenErrors: a missing table and an unreachable host fail Open with
// errors saying what to do.
func TestOpenErrors(t *testing.T) {
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	cfg.CreateSchema = false
	_, err := Open(context.Background(), cfg, Options{Logf: t.Logf})
	if err == nil || !strings.Contains(err.Error(), "demandpipe schema cassandra") {
		t.Fatalf("missing table: %v", err)
	}
	cfg.Port = 1 // nothing listens there
	cfg.ConnectTimeout = time.Second
	if _, err := Open(context.Background(), cfg, Options{Logf: t.Logf}); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Fatalf("unreachable: %v", err)
	}
}

// TestPermanentErrors classifies gocql errors.
func TestPermanentErrors(t *testing.T) {
	srv := startServer(t, 0)
	s := openSink(t, testConfig(srv))
	defer s.Close()
	err := s.sess.Query("INSERT INTO demandpipe.nope (a) VALUES (1)").Exec()
	if err == nil || !Permanent(err) {
		t.Fatalf("unknown table: %v, permanent %v", err, Permanent(err))
	}
	srv.InjectFault(cqltest.FaultOverloaded, 1)
	err = s.sess.Query("SELECT cell FROM demandpipe.features WHERE product = ? AND minute = 0 AND region = 0", gocql.UUID{}).Exec()
	if err == nil || Permanent(err) {
		t.Fatalf("overloaded: %v, permanent %v", err, Permanent(err))
	}
	if Permanent(context.DeadlineExceeded) || Permanent(gocql.ErrNoConnections) {
		t.Fatal("transport errors called permanent")
	}
}

// TestRefusedCodecIsLoud: a codec the server does not list is dropped by
// gocql without a word; Open notices, warns and reports "none".
func TestRefusedCodecIsLoud(t *testing.T) {
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	old := newCompressor
	newCompressor = func(string) gocql.Compressor { return renamed{SnappyS2{}} }
	defer func() { newCompressor = old }()
	var logs strings.Builder
	var mu sync.Mutex
	s, err := Open(context.Background(), cfg, Options{Logf: func(f string, a ...any) {
		mu.Lock()
		fmt.Fprintf(&logs, f+"\n", a...)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Codec() != "none" || !strings.Contains(logs.String(), "UNCOMPRESSED") {
		t.Fatalf("codec %q, logs %q", s.Codec(), logs.String())
	}
	if st := srv.Stats(); st.Compression["none"] == 0 || st.Compression["snappy"] != 0 {
		t.Fatalf("server saw %v", st.Compression)
	}
}

type renamed struct{ SnappyS2 }

func (renamed) Name() string { return "zstd" }

// TestOpener: the sink.Opener form, as sink.Openers.Open passes the spec
// "cassandra://127.0.0.1:PORT/ks?..." (arg "//127.0.0.1:PORT/ks?...").
func TestOpener(t *testing.T) {
	srv := startServer(t, 0)
	base := DefaultConfig()
	base.Queue.Writers = 2
	w, err := NewOpener(base, Options{Logf: t.Logf})(fmt.Sprintf("//127.0.0.1:%d/dp?create=true&rf=1&compression=lz4", srv.Port()))
	if err != nil {
		t.Fatal(err)
	}
	s := w.(*Sink)
	if s.cfg.Keyspace != "dp" || s.cfg.Queue.Writers != 2 || s.Codec() != "lz4" {
		t.Fatalf("opened %v codec %s", s.cfg, s.Codec())
	}
	d := makeTestData(t, 12, 1, 200, 200)
	if err := d.write(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n, _ := srv.Rows("dp", "features"); n != len(d.want) {
		t.Fatalf("%d rows, want %d", n, len(d.want))
	}
	if _, err := NewOpener(base, Options{})("//h/ks?compression=zstd"); err == nil {
		t.Fatal("bad spec opened")
	}
}

// TestOpenRetriesTransientErrors: an overloaded coordinator during schema
// creation and the table probe is retried (it used to fail the run at
// once, saying to create a table that existed); a cluster that keeps
// timing out fails Open within the retry bound, saying to check the
// cluster, not to create the table.
func TestOpenRetriesTransientErrors(t *testing.T) {
	// Not parallel: it shortens the package's openRetryFor.
	defer func(d time.Duration) { openRetryFor = d }(openRetryFor)
	openRetryFor = 2 * time.Second
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	srv.InjectFault(cqltest.FaultOverloaded, 3)
	s, err := Open(context.Background(), cfg, Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("3 overloaded answers at Open: %v", err)
	}
	s.Close()
	srv.SetFaultRate(cqltest.FaultTimeout, 1)
	defer srv.ClearFaults()
	start := time.Now()
	_, err = Open(context.Background(), cfg, Options{Logf: t.Logf})
	took := time.Since(start)
	if err == nil || strings.Contains(err.Error(), "create it") || !strings.Contains(err.Error(), "check the cluster") || took > 3*openRetryFor {
		t.Fatalf("a cluster timing out: after %v: %v", took, err)
	}
	t.Logf("a cluster timing out: after %v: %v", took.Round(time.Millisecond), err)
}
