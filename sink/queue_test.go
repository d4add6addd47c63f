package sink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type qitem struct {
	id  int
	key uint8
}

// fakeStore is a Send that records what it accepted and checks the queue's
// promises as it goes: one key per batch, at most BatchRows items, at most
// Writers sends at once.
type fakeStore struct {
	mu        sync.Mutex
	got       map[int]int // id -> times accepted
	batches   int
	mixed     int // batches holding two keys
	oversized int
	inFlight  atomic.Int64
	peak      atomic.Int64
	batchRows int

	failRate float64       // fraction of attempts that fail
	latency  time.Duration // max service time (uniform)
	rng      *rand.Rand
	rngMu    sync.Mutex
}

func newFakeStore(seed uint64, batchRows int, failRate float64, latency time.Duration) *fakeStore {
	return &fakeStore{got: map[int]int{}, batchRows: batchRows, failRate: failRate, latency: latency, rng: rand.New(rand.NewPCG(seed, 7))}
}

func (f *fakeStore) draw() (fail bool, d time.Duration) {
	f.rngMu.Lock()
	defer f.rngMu.Unlock()
	fail = f.rng.Float64() < f.failRate
	if f.latency > 0 {
		d = time.Duration(f.rng.Int64N(int64(f.latency)))
	}
	return fail, d
}

var errFake = errors.New("fake store: overloaded")

func (f *fakeStore) send(ctx context.Context, items []qitem) error {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	fail, d := f.draw()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errFake
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches++
	if len(items) > f.batchRows {
		f.oversized++
	}
	for _, it := range items {
		if it.key != items[0].key {
			f.mixed++
			break
		}
	}
	for _, it := range items {
		f.got[it.id]++
	}
	return nil
}

func handler(f *fakeStore) QueueHandler[qitem, uint8] {
	return QueueHandler[qitem, uint8]{
		Send: f.send,
		Key:  func(it qitem) uint8 { return it.key },
		Logf: func(string, ...any) {},
	}
}

func testQueueConfig() QueueConfig {
	c := DefaultQueueConfig()
	c.Writers, c.BatchRows, c.Capacity = 4, 10, 100
	c.MinBackoff, c.MaxBackoff, c.AttemptTimeout, c.DrainTimeout = time.Millisecond, 20*time.Millisecond, time.Second, 10*time.Second
	return c
}

func TestQueueConfigValidate(t *testing.T) {
	if err := DefaultQueueConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for field, mut := range map[string]func(*QueueConfig){
		"sink.writers=0":          func(c *QueueConfig) { c.Writers = 0 },
		"sink.batch-rows=0":       func(c *QueueConfig) { c.BatchRows = 0 },
		"sink.batch-rows=70000":   func(c *QueueConfig) { c.BatchRows = 70000 },
		"sink.queue-capacity=10":  func(c *QueueConfig) { c.Capacity = 10 },
		"sink.max-retries=-1":     func(c *QueueConfig) { c.MaxRetries = -1 },
		"sink.min-backoff=0s":     func(c *QueueConfig) { c.MinBackoff = 0 },
		"sink.min-backoff=6s":     func(c *QueueConfig) { c.MinBackoff = 6 * time.Second },
		"sink.max-backoff=10m0s":  func(c *QueueConfig) { c.MinBackoff, c.MaxBackoff = time.Second, 10*time.Minute },
		"sink.attempt-timeout=0s": func(c *QueueConfig) { c.AttemptTimeout = 0 },
		"sink.drain-timeout=-1s":  func(c *QueueConfig) { c.DrainTimeout = -time.Second },
	} {
		c := DefaultQueueConfig()
		mut(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: got %v", field, err)
		}
	}
	if got := DefaultQueueConfig().RetryBound(); got != 85*time.Second {
		t.Errorf("default RetryBound %v, want 85s", got)
	}
}

func TestQueueBackoffFullJitter(t *testing.T) {
	c := DefaultQueueConfig()
	for attempt := range 40 {
		ceil := min(c.MaxBackoff, c.MinBackoff<<min(attempt, 30))
		if attempt >= 30 {
			ceil = c.MaxBackoff
		}
		var sum time.Duration
		for range 200 {
			d := c.backoff(attempt)
			if d <= 0 || d > ceil {
				t.Fatalf("attempt %d: backoff %v outside (0, %v]", attempt, d, ceil)
			}
			sum += d
		}
		if mean := sum / 200; mean < ceil/4 || mean > ceil*3/4 {
			t.Fatalf("attempt %d: mean backoff %v, want about %v (uniform)", attempt, mean, ceil/2)
		}
	}
}

// TestQueueProperty: random configurations, keys, failure rates and service
// times. Every item is accepted by the store exactly once unless it was
// dropped and counted; batches never mix keys nor exceed BatchRows; sends in
// flight never exceed Writers; every Flush covers what was enqueued before it.
func TestQueueProperty(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { queueProperty(t, seed) })
		})
	}
}

func queueProperty(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	cfg := testQueueConfig()
	cfg.Writers = 1 + rng.IntN(8)
	cfg.BatchRows = 1 + rng.IntN(20)
	cfg.Capacity = cfg.BatchRows + rng.IntN(200)
	cfg.MaxRetries = rng.IntN(4)
	failRate := []float64{0, 0.1, 0.3}[rng.IntN(3)]
	f := newFakeStore(seed, cfg.BatchRows, failRate, time.Duration(rng.IntN(5))*time.Millisecond)
	q, err := NewQueue(cfg, handler(f))
	if err != nil {
		t.Fatal(err)
	}
	keys := 1 + rng.IntN(30)
	ctx := context.Background()
	id := 0
	var flushErr error
	// Three producers enqueue concurrently, the test flushes in between.
	for round := range 5 {
		var wg sync.WaitGroup
		var enqErr atomic.Value
		for p := range 3 {
			n := rng.IntN(300)
			items := make([]qitem, n)
			for i := range items {
				items[i] = qitem{id: id, key: uint8(rng.IntN(keys))}
				id++
			}
			chunk := 1 + rng.IntN(50)
			wg.Go(func() {
				_ = p
				for len(items) > 0 {
					c := min(chunk, len(items))
					if err := q.Enqueue(ctx, items[:c]...); err != nil {
						enqErr.Store(err)
						return
					}
					items = items[c:]
				}
			})
		}
		wg.Wait()
		before := q.Stats().Enqueued
		err := q.Flush(ctx)
		st := q.Stats()
		if err == nil {
			if st.SentItems+st.DroppedItems < before || st.DroppedItems != 0 {
				t.Fatalf("round %d: Flush returned with %d sent + %d dropped of %d enqueued", round, st.SentItems, st.DroppedItems, before)
			}
		} else {
			if !errors.Is(err, ErrDropped) || st.DroppedItems == 0 {
				t.Fatalf("round %d: Flush error %v with %d dropped", round, err, st.DroppedItems)
			}
			flushErr = err
		}
		if e := enqErr.Load(); e != nil && !errors.Is(e.(error), ErrDropped) {
			t.Fatalf("Enqueue: %v", e)
		}
	}
	closeErr := q.Close()
	st := q.Stats()
	f.mu.Lock()
	defer f.mu.Unlock()
	for gotID, n := range f.got {
		if n != 1 {
			t.Fatalf("item %d accepted %d times", gotID, n)
		}
	}
	if int64(len(f.got)) != st.SentItems || st.SentItems+st.DroppedItems != st.Enqueued || st.Queued != 0 {
		t.Fatalf("store has %d items; stats %+v", len(f.got), st)
	}
	if (st.DroppedItems > 0) != (closeErr != nil) || (flushErr != nil && closeErr == nil) {
		t.Fatalf("dropped %d, Flush error %v, Close error %v", st.DroppedItems, flushErr, closeErr)
	}
	if failRate == 0 && st.DroppedItems != 0 {
		t.Fatalf("dropped %d without failures", st.DroppedItems)
	}
	if f.mixed != 0 || f.oversized != 0 {
		t.Fatalf("%d batches mixed keys, %d exceeded %d rows", f.mixed, f.oversized, cfg.BatchRows)
	}
	if p := f.peak.Load(); p > int64(cfg.Writers) || st.InFlightPeak > int64(cfg.Writers) {
		t.Fatalf("in flight peak %d (stats %d) > writers %d", p, st.InFlightPeak, cfg.Writers)
	}
	if int64(f.batches) != st.SentBatches || st.BatchItems.Count != uint64(st.SentBatches) || st.BatchItems.Sum != float64(st.SentItems) {
		t.Fatalf("batches: store %d, stats %d, histogram %d/%g", f.batches, st.SentBatches, st.BatchItems.Count, st.BatchItems.Sum)
	}
}

// TestQueueFlushSealsPartialBatches: items below BatchRows are sent at a
// Flush, one batch per key, and Flush waits for them.
func TestQueueFlushSealsPartialBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testQueueConfig()
		cfg.BatchRows, cfg.Capacity = 100, 1000
		f := newFakeStore(1, cfg.BatchRows, 0, 3*time.Millisecond)
		q, _ := NewQueue(cfg, handler(f))
		defer q.Close()
		for i := range 30 {
			if err := q.Enqueue(t.Context(), qitem{id: i, key: uint8(i % 3)}); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if st := q.Stats(); st.SentBatches != 0 || st.Queued != 30 {
			t.Fatalf("partial batches sent before Flush: %+v", st)
		}
		if err := q.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.got) != 30 || f.batches != 3 || f.mixed != 0 {
			t.Fatalf("after Flush: %d items in %d batches (%d mixed)", len(f.got), f.batches, f.mixed)
		}
	})
}

// TestQueueBackPressure: with the store stalled, Enqueue blocks once
// Capacity items are held, and the queue never holds more.
func TestQueueBackPressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testQueueConfig()
		release := make(chan struct{})
		var maxQueued atomic.Int64
		var q *Queue[qitem, uint8]
		h := QueueHandler[qitem, uint8]{
			Key: func(it qitem) uint8 { return it.key },
			Send: func(ctx context.Context, items []qitem) error {
				if n := q.Stats().Queued; n > maxQueued.Load() {
					maxQueued.Store(n)
				}
				<-release
				return nil
			},
		}
		q, _ = NewQueue(cfg, h)
		done := make(chan error, 1)
		go func() {
			items := make([]qitem, 3*cfg.Capacity)
			for i := range items {
				items[i] = qitem{id: i, key: uint8(i % 7)}
			}
			done <- q.Enqueue(context.Background(), items...)
		}()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Enqueue of 3x capacity returned (%v) with the store stalled", err)
		default:
		}
		st := q.Stats()
		if st.Queued != int64(cfg.Capacity) || st.InFlight != int64(cfg.Writers) || st.Blocked == 0 {
			t.Fatalf("stalled: %+v", st)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := q.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if st := q.Stats(); st.SentItems != int64(3*cfg.Capacity) || maxQueued.Load() > int64(cfg.Capacity) {
			t.Fatalf("sent %d, max queued %d", st.SentItems, maxQueued.Load())
		}
	})
}

// TestQueueOpenBatchesNeverDeadlock: Capacity filled by partial batches of
// many keys (none reaches BatchRows) still makes progress without a Flush.
func TestQueueOpenBatchesNeverDeadlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testQueueConfig()
		cfg.BatchRows, cfg.Capacity = 50, 50
		f := newFakeStore(1, cfg.BatchRows, 0, 0)
		q, _ := NewQueue(cfg, handler(f))
		items := make([]qitem, 500)
		for i := range items {
			items[i] = qitem{id: i, key: uint8(i % 100)}
		}
		if err := q.Enqueue(t.Context(), items...); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if len(f.got) != 500 || f.mixed != 0 {
			t.Fatalf("%d of 500 delivered, %d mixed", len(f.got), f.mixed)
		}
	})
}

// TestQueueGoneForGood: a store that always fails ends Enqueue and Flush
// with ErrDropped within RetryBound, even when every writer is stuck in a
// timing-out attempt; nothing hangs.
func TestQueueGoneForGood(t *testing.T) {
	for _, mode := range []string{"refused", "hangs"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testQueueConfig()
				cfg.MaxRetries, cfg.MinBackoff, cfg.MaxBackoff, cfg.AttemptTimeout = 3, 100*time.Millisecond, time.Second, 2*time.Second
				var attempts atomic.Int64
				h := QueueHandler[qitem, uint8]{
					Key: func(it qitem) uint8 { return it.key },
					Send: func(ctx context.Context, items []qitem) error {
						attempts.Add(1)
						if mode == "hangs" {
							<-ctx.Done()
							return ctx.Err()
						}
						return errors.New("connection refused")
					},
					Logf: func(string, ...any) {},
				}
				q, _ := NewQueue(cfg, h)
				start := time.Now()
				items := make([]qitem, 10*cfg.Capacity)
				for i := range items {
					items[i] = qitem{id: i, key: uint8(i % 5)}
				}
				err := q.Enqueue(t.Context(), items...)
				if err == nil {
					err = q.Flush(t.Context())
				}
				elapsed := time.Since(start)
				if !errors.Is(err, ErrDropped) {
					t.Fatalf("got %v, want ErrDropped", err)
				}
				if bound := cfg.RetryBound(); elapsed > bound {
					t.Fatalf("failed after %v, bound %v", elapsed, bound)
				}
				if cerr := q.Close(); !errors.Is(cerr, ErrDropped) {
					t.Fatalf("Close: %v", cerr)
				}
				st := q.Stats()
				if st.DroppedItems == 0 || st.SentItems+st.DroppedItems != st.Enqueued {
					t.Fatalf("stats %+v", st)
				}
				// Retries stop once the queue failed: no batch is retried past
				// the first drop, so attempts stay near Writers x (MaxRetries+1).
				if a := attempts.Load(); a > int64(cfg.Writers*(cfg.MaxRetries+1)) {
					t.Fatalf("%d attempts for a gone store", a)
				}
				t.Logf("%s: failed after %v (bound %v), %d attempts", mode, elapsed, cfg.RetryBound(), attempts.Load())
			})
		})
	}
}

// TestQueuePermanentNotRetried: an error the handler calls permanent drops
// the batch on the first attempt.
func TestQueuePermanentNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bad := errors.New("syntax error")
		var attempts atomic.Int64
		h := QueueHandler[qitem, uint8]{
			Key:       func(it qitem) uint8 { return it.key },
			Send:      func(context.Context, []qitem) error { attempts.Add(1); return bad },
			Permanent: func(err error) bool { return errors.Is(err, bad) },
			Logf:      func(string, ...any) {},
		}
		q, _ := NewQueue(testQueueConfig(), h)
		_ = q.Enqueue(t.Context(), qitem{id: 1})
		err := q.Flush(t.Context())
		if !errors.Is(err, ErrDropped) || !errors.Is(err, bad) || attempts.Load() != 1 {
			t.Fatalf("err %v after %d attempts", err, attempts.Load())
		}
		if err := q.Enqueue(t.Context(), qitem{id: 2}); !errors.Is(err, ErrDropped) {
			t.Fatalf("Enqueue after a drop: %v", err)
		}
		q.Close()
	})
}

// TestQueueRetriesThenSucceeds: transient failures are retried with
// back-off and counted; nothing is dropped.
func TestQueueRetriesThenSucceeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var attempts atomic.Int64
		h := QueueHandler[qitem, uint8]{
			Key: func(it qitem) uint8 { return it.key },
			Send: func(context.Context, []qitem) error {
				if attempts.Add(1) <= 3 {
					return errFake
				}
				return nil
			},
		}
		cfg := testQueueConfig()
		cfg.Writers = 1
		q, _ := NewQueue(cfg, h)
		_ = q.Enqueue(t.Context(), qitem{id: 1})
		start := time.Now()
		if err := q.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 3*cfg.MaxBackoff {
			t.Fatalf("3 retries took %v", d)
		}
		q.Close()
		if st := q.Stats(); st.Retries != 3 || st.Failures != 3 || st.SentItems != 1 || st.DroppedItems != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestQueueContext: a blocked Enqueue and a waiting Flush return the
// caller's context error.
func TestQueueContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h := QueueHandler[qitem, uint8]{
			Key:  func(it qitem) uint8 { return it.key },
			Send: func(context.Context, []qitem) error { <-release; return nil },
		}
		cfg := testQueueConfig()
		q, _ := NewQueue(cfg, h)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		err := q.Enqueue(ctx, make([]qitem, 2*cfg.Capacity)...)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Enqueue: %v", err)
		}
		ctx2, cancel2 := context.WithTimeout(t.Context(), time.Second)
		defer cancel2()
		if err := q.Flush(ctx2); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Flush: %v", err)
		}
		close(release)
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if st := q.Stats(); st.SentItems != int64(cfg.Capacity) {
			t.Fatalf("sent %d, want the %d accepted", st.SentItems, cfg.Capacity)
		}
	})
}

// TestQueueCloseHardStop: a store that never answers within the drain
// timeout: Close cancels the sends, counts the drop and returns.
func TestQueueCloseHardStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := QueueHandler[qitem, uint8]{
			Key:  func(it qitem) uint8 { return it.key },
			Send: func(ctx context.Context, _ []qitem) error { <-ctx.Done(); return ctx.Err() },
			Logf: func(string, ...any) {},
		}
		cfg := testQueueConfig()
		cfg.AttemptTimeout, cfg.MaxRetries, cfg.DrainTimeout = time.Minute, 100, 3*time.Second
		q, _ := NewQueue(cfg, h)
		_ = q.Enqueue(t.Context(), make([]qitem, 55)...)
		start := time.Now()
		err := q.Close()
		if !errors.Is(err, ErrDropped) || time.Since(start) != cfg.DrainTimeout {
			t.Fatalf("Close: %v after %v", err, time.Since(start))
		}
		if st := q.Stats(); st.DroppedItems != 55 {
			t.Fatalf("dropped %d of 55", st.DroppedItems)
		}
		if err := q.Enqueue(t.Context(), qitem{}); err == nil {
			t.Fatal("Enqueue after Close succeeded")
		}
		if err := q.Close(); err == nil {
			t.Fatal("second Close forgot the failure")
		}
	})
}

func TestQueueMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeStore(1, 10, 0, time.Millisecond)
		q, _ := NewQueue(testQueueConfig(), handler(f))
		reg := prometheus.NewPedanticRegistry()
		m, err := NewQueueMetrics(reg, prometheus.Labels{"sink": "test"}, q.Stats)
		if err != nil {
			t.Fatal(err)
		}
		items := make([]qitem, 25)
		for i := range items {
			items[i] = qitem{id: i}
		}
		_ = q.Enqueue(t.Context(), items...)
		_ = q.Flush(t.Context())
		q.Close()
		want := `
# HELP demandpipe_sink_sent_items_total Items written by the sink's store.
# TYPE demandpipe_sink_sent_items_total counter
demandpipe_sink_sent_items_total{sink="test"} 25
# HELP demandpipe_sink_batch_items Items per sent batch.
# TYPE demandpipe_sink_batch_items histogram
demandpipe_sink_batch_items_bucket{sink="test",le="1"} 0
demandpipe_sink_batch_items_bucket{sink="test",le="2"} 0
demandpipe_sink_batch_items_bucket{sink="test",le="5"} 1
demandpipe_sink_batch_items_bucket{sink="test",le="10"} 3
demandpipe_sink_batch_items_bucket{sink="test",le="20"} 3
demandpipe_sink_batch_items_bucket{sink="test",le="50"} 3
demandpipe_sink_batch_items_bucket{sink="test",le="100"} 3
demandpipe_sink_batch_items_bucket{sink="test",le="200"} 3
demandpipe_sink_batch_items_bucket{sink="test",le="500"} 3
demandpipe_sink_batch_items_bucket{sink="test",le="1000"} 3
demandpipe_sink_batch_items_bucket{sink="test",le="5000"} 3
demandpipe_sink_batch_items_bucket{sink="test",le="+Inf"} 3
demandpipe_sink_batch_items_sum{sink="test"} 25
demandpipe_sink_batch_items_count{sink="test"} 3
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "demandpipe_sink_sent_items_total", "demandpipe_sink_batch_items"); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"retries_total", "failures_total", "dropped_items_total", "in_flight_writes", "queue_items", "queue_capacity_items", "write_duration_seconds"} {
			if n, err := testutil.GatherAndCount(reg, "demandpipe_sink_"+name); err != nil || n != 1 {
				t.Errorf("%s: %d series, %v", name, n, err)
			}
		}
		if lint, err := testutil.GatherAndLint(reg); err != nil || len(lint) > 0 {
			t.Errorf("lint: %v %v", lint, err)
		}
		m.Unregister()
		if _, err := NewQueueMetrics(nil, nil, q.Stats); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkEnqueue measures Enqueue of rows that come sorted, in runs of
// one key (as the engine's rows do, product by product, cell by cell), to
// a store that answers at once.
func BenchmarkEnqueue(b *testing.B) {
	type key struct {
		product [16]byte
		minute  int64
		region  int64
	}
	type item struct {
		k   key
		val int64
	}
	cfg := DefaultQueueConfig()
	cfg.Writers, cfg.BatchRows, cfg.Capacity = 2, 50, 16384
	q, err := NewQueue(cfg, QueueHandler[item, key]{
		Send: func(context.Context, []item) error { return nil },
		Key:  func(it item) key { return it.k },
	})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	items := make([]item, 4096)
	for i := range items {
		items[i] = item{k: key{product: [16]byte{byte(i / 2048)}, minute: 28_620_600, region: int64(i / 37)}, val: int64(i)}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := q.Enqueue(ctx, items...); err != nil {
			b.Fatal(err)
		}
	}
	if err := q.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(items)), "ns/item")
}
