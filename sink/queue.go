package sink

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"sync"
	"time"
)

// Queue is a bounded, sharded write queue in front of a remote store (the
// model is Prometheus' storage/remote/queue_manager.go: bounded shards, a
// batch sent when full or at a flush, retries with back-off, a soft stop
// that drains with a deadline and then a hard one).
//
// Items are grouped by a key (for Cassandra: the partition key) into open
// batches; a batch is sealed when it holds BatchRows items or at Flush, and
// Writers goroutines send sealed batches, each with Send, so a batch never
// mixes keys and at most Writers sends are in flight. The queue holds at most
// Capacity items (open, sealed and in flight): Enqueue blocks when it is
// full, which is how a slow store slows the engine down.
//
// Retries: a failed Send is retried up to MaxRetries times after a full-
// jitter exponential back-off, each attempt bounded by AttemptTimeout. A
// batch that still fails, or whose error the handler calls permanent, is
// dropped: counted, logged, and the queue turns failed. The run must stop
// then (its output has a hole), so every later batch is dropped at once
// without a send and Enqueue and Flush return the error: a store gone for
// good ends the run within one batch's retry bound (QueueConfig.RetryBound),
// never a hang.
//
// Invariant: every item accepted by Enqueue ends exactly once as sent or
// dropped, and Flush returns only when every item accepted before it has
// ended. Items are handed to Send in batches the queue owns; the same
// batch is re-sent on a retry, so Send must be idempotent (Cassandra
// upserts are).
type Queue[T any, K comparable] struct {
	cfg QueueConfig
	h   QueueHandler[T, K]

	// ctx is the hard stop: cancelled by Close after DrainTimeout, it ends
	// in-flight attempts and back-offs.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	open map[K]*queueBatch[T]
	// last is the open batch the previous item went to, and its key:
	// items come sorted (rows by product and cell), so runs of one key
	// skip the map (a 40-byte key hashed per row was ~3% of the Cassandra
	// sink's CPU). nil whenever that batch is sealed.
	last    *queueBatch[T]
	lastKey K
	ready   chan *queueBatch[T] // sealed batches; cap Capacity, so a send under mu never blocks
	queued  int                 // items accepted and not yet sent or dropped
	epoch   uint64              // Flush generation new items join
	pending map[uint64]int      // items outstanding per epoch
	failed  error               // sticky: set by the first drop
	closed  bool
	changed chan struct{} // closed and replaced whenever items end or the state changes
	free    []*queueBatch[T]

	stats queueCounters
}

// QueueHandler is what a Queue calls.
type QueueHandler[T any, K comparable] struct {
	// Send writes one batch (all items share a key). ctx carries the attempt
	// timeout. items are only valid during the call. Required.
	Send func(ctx context.Context, items []T) error
	// Key returns the item's shard key; a batch holds items of one key.
	// Required.
	Key func(item T) K
	// Permanent reports errors not worth retrying (a bad statement,
	// credentials). nil: every error is retried.
	Permanent func(err error) bool
	// Logf receives drop and shutdown messages. nil: log.Printf.
	Logf func(format string, args ...any)
}

type queueBatch[T any] struct {
	items []T
	epoch uint64
}

// QueueConfig are a Queue's knobs. Flags of `demandpipe run` map one to one
// (-sink.writers, -sink.batch-rows, ...).
type QueueConfig struct {
	// Writers is the number of concurrent sends (-sink.writers, default 16).
	// By Little's law a store answering a batch in 2 ms takes Writers x
	// BatchRows / 2 ms: 16 x 50 / 2 ms = 400k rows/s, seven times a dense
	// metro minute (55k rows) per second; CASSANDRA.md has the measured grid.
	Writers int
	// BatchRows is the most items of one key sent together
	// (-sink.batch-rows, default 50: Cassandra warns at 5 KiB per batch,
	// and 50 rows of ~70 bytes is ~3.5 KiB).
	BatchRows int
	// Capacity bounds the items held (open, sealed and in flight)
	// (-sink.queue-capacity, default 16,384: 20 full batches per writer;
	// ~2 MiB of Cassandra rows). Enqueue blocks when it is reached.
	Capacity int
	// MaxRetries is how many times a failed batch is sent again before it
	// is dropped (-sink.max-retries, default 8).
	MaxRetries int
	// MinBackoff and MaxBackoff bound the wait before retry n, drawn
	// uniformly from (0, min(MaxBackoff, MinBackoff x 2^n)] ("full
	// jitter", so writers that failed together do not retry together)
	// (-sink.min-backoff 100ms, -sink.max-backoff 5s). The eight default
	// ceilings sum to 0.1+0.2+0.4+0.8+1.6+3.2+5+5 = 16.3s, ~8s expected:
	// a batch rides out a node restart or a network blip of several
	// seconds before the run gives up.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// AttemptTimeout bounds one Send (-sink.attempt-timeout, default 5s:
	// Cassandra's own write_request_timeout is 2 s, so a live node answers
	// well within it).
	AttemptTimeout time.Duration
	// DrainTimeout bounds Close's soft stop (-sink.drain-timeout, default
	// 90s, just above the default RetryBound of 85s); after it in-flight
	// sends are cancelled and what is left is dropped and counted.
	DrainTimeout time.Duration
}

// RegisterFlags binds the fields to fs as -sink.writers, -sink.batch-rows,
// -sink.queue-capacity, -sink.max-retries, -sink.min-backoff,
// -sink.max-backoff, -sink.attempt-timeout and -sink.drain-timeout.
func (c *QueueConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Writers, "sink.writers", c.Writers, "concurrent writes to the sink (Cassandra), 1..1024")
	fs.IntVar(&c.BatchRows, "sink.batch-rows", c.BatchRows, "rows per write batch, all of one partition (Cassandra)")
	fs.IntVar(&c.Capacity, "sink.queue-capacity", c.Capacity, "rows the write queue holds before the engine waits (back-pressure)")
	fs.IntVar(&c.MaxRetries, "sink.max-retries", c.MaxRetries, "retries of a failed batch before its rows are dropped, counted and the run fails")
	fs.DurationVar(&c.MinBackoff, "sink.min-backoff", c.MinBackoff, "first retry waits up to this (exponential, full jitter)")
	fs.DurationVar(&c.MaxBackoff, "sink.max-backoff", c.MaxBackoff, "longest wait before a retry")
	fs.DurationVar(&c.AttemptTimeout, "sink.attempt-timeout", c.AttemptTimeout, "deadline of one write attempt")
	fs.DurationVar(&c.DrainTimeout, "sink.drain-timeout", c.DrainTimeout, "at shutdown, how long the queue may take to drain before what is left is dropped (and the run fails)")
}

// DefaultQueueConfig returns the defaults documented on QueueConfig.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{
		Writers:        16,
		BatchRows:      50,
		Capacity:       16384,
		MaxRetries:     8,
		MinBackoff:     100 * time.Millisecond,
		MaxBackoff:     5 * time.Second,
		AttemptTimeout: 5 * time.Second,
		DrainTimeout:   90 * time.Second,
	}
}

// Validate reports the first out-of-range field.
func (c QueueConfig) Validate() error {
	switch {
	case c.Writers < 1 || c.Writers > 1024:
		return fmt.Errorf("sink.writers=%d: must be in 1..1024", c.Writers)
	case c.BatchRows < 1 || c.BatchRows > 65535:
		return fmt.Errorf("sink.batch-rows=%d: must be in 1..65535 (a CQL batch holds at most 65535 statements)", c.BatchRows)
	case c.Capacity < c.BatchRows || c.Capacity > 1<<26:
		return fmt.Errorf("sink.queue-capacity=%d: must be in sink.batch-rows (%d)..%d", c.Capacity, c.BatchRows, 1<<26)
	case c.MaxRetries < 0 || c.MaxRetries > 100:
		return fmt.Errorf("sink.max-retries=%d: must be in 0..100", c.MaxRetries)
	case c.MinBackoff <= 0 || c.MinBackoff > c.MaxBackoff:
		return fmt.Errorf("sink.min-backoff=%v: must be > 0 and <= sink.max-backoff (%v)", c.MinBackoff, c.MaxBackoff)
	case c.MaxBackoff > 5*time.Minute:
		return fmt.Errorf("sink.max-backoff=%v: must be at most 5m", c.MaxBackoff)
	case c.AttemptTimeout <= 0 || c.AttemptTimeout > 5*time.Minute:
		return fmt.Errorf("sink.attempt-timeout=%v: must be in (0, 5m]", c.AttemptTimeout)
	case c.DrainTimeout <= 0 || c.DrainTimeout > time.Hour:
		return fmt.Errorf("sink.drain-timeout=%v: must be in (0, 1h]", c.DrainTimeout)
	}
	return nil
}

// RetryBound is the longest one batch can take before it is sent or
// dropped: (MaxRetries+1) attempts of at most AttemptTimeout plus
// MaxRetries back-offs of at most MaxBackoff. Defaults: 9 x 5s + 8 x 5s =
// 85s. A store gone for good fails the run within about this long after
// the first batch that met it was sealed; a refused connection fails an
// attempt at once, so then only the back-offs count: at most 16.3s, ~8s
// expected.
func (c QueueConfig) RetryBound() time.Duration {
	return time.Duration(c.MaxRetries+1)*c.AttemptTimeout + time.Duration(c.MaxRetries)*c.MaxBackoff
}

// Errors of a Queue.
var (
	ErrQueueClosed = errors.New("sink queue: closed")
	// ErrDropped wraps the error that made the queue drop a batch.
	ErrDropped = errors.New("sink queue: batch dropped")
)

// NewQueue starts a queue's writers. Close must be called to release them.
func NewQueue[T any, K comparable](cfg QueueConfig, h QueueHandler[T, K]) (*Queue[T, K], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h.Send == nil || h.Key == nil {
		return nil, errors.New("sink queue: QueueHandler needs Send and Key")
	}
	if h.Logf == nil {
		h.Logf = log.Printf
	}
	ctx, cancel := context.WithCancel(context.Background())
	q := &Queue[T, K]{
		cfg: cfg, h: h, ctx: ctx, cancel: cancel,
		open:    make(map[K]*queueBatch[T]),
		ready:   make(chan *queueBatch[T], cfg.Capacity),
		pending: make(map[uint64]int),
		changed: make(chan struct{}),
	}
	q.stats.capacity.Store(int64(cfg.Capacity))
	q.stats.batchItems.init(batchItemBounds)
	q.stats.sendSeconds.init(sendSecondBounds)
	for range cfg.Writers {
		q.wg.Add(1)
		go q.writer()
	}
	return q, nil
}

// Config returns the queue's configuration.
func (q *Queue[T, K]) Config() QueueConfig { return q.cfg }

// Enqueue adds items, blocking while the queue is full. It returns the
// queue's failure once a batch was dropped, ErrQueueClosed after Close, or
// ctx's error; items accepted before an error stay queued.
func (q *Queue[T, K]) Enqueue(ctx context.Context, items ...T) error {
	for len(items) > 0 {
		q.mu.Lock()
		if err := q.stateErr(); err != nil {
			q.mu.Unlock()
			return err
		}
		free := q.cfg.Capacity - q.queued
		if free <= 0 {
			// Full. If nothing is sealed or in flight, only open batches
			// hold items: seal the largest so writers can make progress.
			if len(q.ready) == 0 && q.stats.inFlight.Load() == 0 {
				q.sealLargest()
			}
			ch := q.changed
			q.mu.Unlock()
			q.stats.blocked.Add(1)
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		n := min(free, len(items))
		for _, it := range items[:n] {
			q.add(it)
		}
		q.queued += n
		q.pending[q.epoch] += n
		q.stats.queued.Store(int64(q.queued))
		q.mu.Unlock()
		q.stats.enqueued.Add(int64(n))
		items = items[n:]
	}
	return nil
}

// Flush seals every open batch and waits until every item enqueued before
// it has been sent or dropped. It returns the queue's failure (wrapping
// ErrDropped) if any batch was dropped, now or before: a durable sink's
// CloseMinute is a Flush.
func (q *Queue[T, K]) Flush(ctx context.Context) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrQueueClosed
	}
	q.sealAll()
	e := q.epoch
	q.epoch++
	for pe, n := range q.pending {
		if n == 0 {
			delete(q.pending, pe) // ended epochs: the map holds only live ones
		}
	}
	for {
		if q.failed != nil {
			err := q.failed
			q.mu.Unlock()
			return err
		}
		outstanding := false
		for pe, n := range q.pending {
			if pe <= e && n > 0 {
				outstanding = true
				break
			}
		}
		if !outstanding {
			q.mu.Unlock()
			return nil
		}
		ch := q.changed
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		q.mu.Lock()
	}
}

// Close seals what is open, lets the writers drain it for up to
// DrainTimeout, then cancels what is still being sent (dropped and
// counted), and waits for the writers. It returns the queue's failure, if
// any. Close is idempotent.
func (q *Queue[T, K]) Close() error {
	q.mu.Lock()
	if q.closed {
		err := q.failed
		q.mu.Unlock()
		return err
	}
	q.closed = true
	q.sealAll()
	close(q.ready)
	q.notify()
	q.mu.Unlock()

	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	t := time.NewTimer(q.cfg.DrainTimeout)
	select {
	case <-done:
		t.Stop()
	case <-t.C:
		q.mu.Lock()
		q.fail(fmt.Errorf("%w: close: still sending after the drain timeout %v", ErrDropped, q.cfg.DrainTimeout))
		q.mu.Unlock()
		q.cancel()
		<-done
	}
	q.cancel()
	q.mu.Lock()
	defer q.mu.Unlock()
	if d := q.stats.droppedItems.Load(); d > 0 {
		q.h.Logf("sink queue: closed with %d items dropped (%d sent): %v", d, q.stats.sentItems.Load(), q.failed)
	}
	return q.failed
}

// Err returns the queue's failure: nil until a batch was dropped.
func (q *Queue[T, K]) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failed
}

func (q *Queue[T, K]) stateErr() error {
	if q.failed != nil {
		return q.failed
	}
	if q.closed {
		return ErrQueueClosed
	}
	return nil
}

// add puts one item in its key's open batch, sealing it when full. mu held.
func (q *Queue[T, K]) add(it T) {
	k := q.h.Key(it)
	b := q.last
	if b == nil || k != q.lastKey {
		if b = q.open[k]; b == nil {
			b = q.newBatch()
			q.open[k] = b
		}
		q.last, q.lastKey = b, k
	}
	b.items = append(b.items, it)
	if len(b.items) >= q.cfg.BatchRows {
		delete(q.open, k)
		q.seal(b)
		q.last = nil
	}
}

func (q *Queue[T, K]) newBatch() *queueBatch[T] {
	if n := len(q.free); n > 0 {
		b := q.free[n-1]
		q.free = q.free[:n-1]
		b.epoch = q.epoch
		return b
	}
	return &queueBatch[T]{items: make([]T, 0, q.cfg.BatchRows), epoch: q.epoch}
}

// seal hands b to the writers. It never blocks: ready has room for
// Capacity batches and every batch holds at least one of at most Capacity
// items. mu held.
func (q *Queue[T, K]) seal(b *queueBatch[T]) { q.ready <- b }

func (q *Queue[T, K]) sealAll() {
	q.last = nil
	for k, b := range q.open {
		delete(q.open, k)
		q.seal(b)
	}
}

func (q *Queue[T, K]) sealLargest() {
	var bk K
	var best *queueBatch[T]
	for k, b := range q.open {
		if best == nil || len(b.items) > len(best.items) {
			bk, best = k, b
		}
	}
	if best != nil {
		delete(q.open, bk)
		q.seal(best)
		if best == q.last {
			q.last = nil
		}
	}
}

// notify wakes everyone waiting on a state change. mu held.
func (q *Queue[T, K]) notify() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// fail makes the queue failed with err, unless it already is. mu held.
func (q *Queue[T, K]) fail(err error) {
	if q.failed == nil {
		q.failed = err
		q.notify()
	}
}

func (q *Queue[T, K]) writer() {
	defer q.wg.Done()
	for b := range q.ready {
		err := q.send(b.items)
		n := len(b.items)
		q.mu.Lock()
		if err != nil {
			q.stats.droppedItems.Add(int64(n))
			q.stats.droppedBatches.Add(1)
			if q.failed == nil {
				q.h.Logf("sink queue: dropped a batch of %d items; the run must stop: %v", n, err)
			}
			q.fail(err)
		}
		q.queued -= n
		q.stats.queued.Store(int64(q.queued))
		if q.pending[b.epoch] -= n; q.pending[b.epoch] == 0 && b.epoch != q.epoch {
			delete(q.pending, b.epoch)
		}
		clear(b.items) // drop references held by the items
		b.items = b.items[:0]
		if len(q.free) < 4*q.cfg.Writers {
			q.free = append(q.free, b)
		}
		q.notify()
		q.mu.Unlock()
	}
}

// send tries a batch up to MaxRetries+1 times. It returns nil once sent, or
// the error (wrapping ErrDropped) that drops it.
func (q *Queue[T, K]) send(items []T) error {
	if err := q.Err(); err != nil {
		return err // failed already: drop without a send
	}
	for attempt := 0; ; attempt++ {
		if err := q.ctx.Err(); err != nil {
			return fmt.Errorf("%w: close: cancelled after the drain timeout", ErrDropped)
		}
		err := q.attempt(items)
		if err == nil {
			q.stats.sentItems.Add(int64(len(items)))
			q.stats.sentBatches.Add(1)
			q.stats.batchItems.observe(float64(len(items)))
			return nil
		}
		q.stats.failures.Add(1)
		if q.ctx.Err() != nil {
			return fmt.Errorf("%w: close: cancelled after the drain timeout: %v", ErrDropped, err)
		}
		if q.h.Permanent != nil && q.h.Permanent(err) {
			return fmt.Errorf("%w (%d items, permanent error): %w", ErrDropped, len(items), err)
		}
		if attempt >= q.cfg.MaxRetries {
			return fmt.Errorf("%w (%d items, after %d attempts): %w", ErrDropped, len(items), attempt+1, err)
		}
		if e := q.Err(); e != nil {
			return e // another batch failed for good: stop retrying this one
		}
		q.stats.retries.Add(1)
		t := time.NewTimer(q.cfg.backoff(attempt))
		select {
		case <-t.C:
		case <-q.ctx.Done():
			t.Stop()
		}
	}
}

func (q *Queue[T, K]) attempt(items []T) error {
	ctx, cancel := context.WithTimeout(q.ctx, q.cfg.AttemptTimeout)
	defer cancel()
	n := q.stats.inFlight.Add(1)
	for {
		p := q.stats.inFlightPeak.Load()
		if n <= p || q.stats.inFlightPeak.CompareAndSwap(p, n) {
			break
		}
	}
	start := time.Now()
	err := q.h.Send(ctx, items)
	q.stats.sendSeconds.observe(time.Since(start).Seconds())
	q.stats.inFlight.Add(-1)
	return err
}

// backoff is the full-jitter wait before retry attempt+1.
func (c QueueConfig) backoff(attempt int) time.Duration {
	ceil := c.MaxBackoff
	if attempt < 30 {
		ceil = min(c.MaxBackoff, c.MinBackoff<<attempt)
	}
	return time.Duration(rand.Int64N(int64(ceil)) + 1)
}
