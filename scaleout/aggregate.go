package scaleout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink"
)

// Aggregate is the aggregate role's transport: it consumes the internal
// topic on a Key_Shared subscription with the sticky hash ranges given,
// owns the regions of the slots whose keys fall in them, and closes a
// minute once every dedup process's watermark on every owned slot has
// passed it (a watermark is ordered only with the events of its own key).
//
// With a sink that keeps state per part (store, cassandra:
// sink.PartCheckpointer) it is recoverable: each slot's counts and
// checkpoint commit with every minute's rows, a message is acknowledged
// only once every minute it carries is committed, and a process that
// starts (after a crash, or taking a dead process's ranges) restores its
// slots from the sink and drops what comes again (SCALEOUT.md,
// "Recovery"). With any other sink a message is acknowledged once handled
// and a lost process means running the deployment again.
type Aggregate struct {
	eng    pipeline.Stats // the count and close counters (aggregate.Stats) inside the engine's, for its summary
	cfg    Config
	agg    *aggregate.Aggregator
	cons   pulsar.Consumer
	owned  []bool
	dedups int
	wm     [][]int64 // [dedup][slot]
	clk    [][]int64 // [dedup][slot]: the watermarks' clocks (CountedMessage.Clock)
	low    int64
	msg    aggregate.CountedMessage
	maxK   int
	// countFrom caches, per source cell, the owned slot its events are
	// counted from: an event reaching several slots this process owns
	// arrives once per slot and must count once.
	countFrom map[uint64]int
	regions   []uint64
	slots     []int
	durable   bool
	// lastSeq is the last message number handled per [dedup][slot] (-1:
	// none): a message redelivered after a lost connection is dropped.
	lastSeq [][]int64
	// epoch is each [dedup][slot]'s epoch (0: none seen yet).
	epoch [][]uint64
	// unacked are the messages handled and not yet acknowledged, with
	// the last minute each carries (acknowledged once it is committed).
	unacked []pending
	stats   counters
	ranges  []int
	lost    *lostSlots
	members *members
}

// lostSlots hears the client close the consumer for a cause: with sticky
// ranges, a resubscription the broker refuses (ConsumerAssignError: the
// ranges were given to another process while this one was cut off), which
// the client does not retry.
type lostSlots struct {
	mu     sync.Mutex
	cause  error
	cancel context.CancelCauseFunc
	// heard is closed once the client has told why it closed the consumer
	// (the hook fires once per consumer, cause or not).
	heard chan struct{}
}

// whyWait bounds how long Run waits for the client to say why it closed
// the consumer: the client closes Receive's channel first and calls the
// interceptor after its partition consumers, dead-letter and retry
// producers have closed (pulsar-client-go v0.21.0 consumer_impl.go,
// closeWithCause), so a Receive can end before the cause is known.
// TestAggregateStopsWhenItsSlotsAreTaken lost that race under a loaded CI
// run (the error said only "consumer closed").
const whyWait = 5 * time.Second

var (
	errLostSlots      = errors.New("lost its slots")
	errDedupRestarted = errors.New("the deployment cannot go on exactly")
)

func (l *lostSlots) BeforeConsume(pulsar.ConsumerMessage)                   {}
func (l *lostSlots) OnAcknowledge(pulsar.Consumer, pulsar.MessageID)        {}
func (l *lostSlots) OnNegativeAcksSend(pulsar.Consumer, []pulsar.MessageID) {}

// OnConsumerClose implements pulsar.ConsumerCloseInterceptor.
func (l *lostSlots) OnConsumerClose(_ pulsar.Consumer, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer func() {
		select {
		case <-l.heard: // told before (by another consumer of the same process)
		default:
			close(l.heard)
		}
	}()
	if err == nil {
		return // closed by Run, or by the client without a cause
	}
	l.cause = err
	if l.cancel != nil {
		l.cancel(errLostSlots)
	}
}

// await waits, at most whyWait, for the client to say why it closed the
// consumer whose Receive ended with err, when it did so itself.
func (l *lostSlots) await(err error) {
	var pe *pulsar.Error
	if !errors.As(err, &pe) || pe.Result() != pulsar.ConsumerClosed {
		return
	}
	select {
	case <-l.heard:
	case <-time.After(whyWait):
	}
}

// watch makes a lost subscription cancel run.
func (l *lostSlots) watch(cancel context.CancelCauseFunc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cancel = cancel
	if l.cause != nil {
		cancel(errLostSlots)
	}
}

// counters are Stats as atomics: Run updates them, metrics read them.
type counters struct {
	messages, duplicates, replayed, acked atomic.Int64
	restarts                              atomic.Int64
	unacked, lag                          atomic.Int64
}

type pending struct {
	id   pulsar.MessageID
	last int64
}

// Stats are the aggregate transport's counters.
type Stats struct {
	Messages   int64 // messages handled
	Duplicates int64 // messages dropped as copies of ones handled (redelivered after a lost connection)
	Replayed   int64 // events dropped because their slot was committed through their minute
	Acked      int64 // messages acknowledged
}

// Layout names the internal topic's layout for a definition: a slot's
// checkpoint holds it, and a restore under another layout is refused.
func (c Config) Layout(maxK int) string {
	return fmt.Sprintf("slots=%d,region-res=%d,max-k=%d", c.Slots, c.RegionRes, maxK)
}

// NewAggregate subscribes to cfg.Topic as subscription sub with ranges
// (ParseRanges) for `dedups` dedup processes; rows go to snk. pcfg is the
// engine's configuration (its Owns is set here).
func NewAggregate(client pulsar.Client, cfg Config, sub string, ranges []int, dedups int, pcfg pipeline.Config, snk sink.Writer) (*Aggregate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Aggregate{cfg: cfg, owned: cfg.owned(ranges), dedups: dedups, low: aggregate.NoWatermark,
		maxK: pcfg.Def.MaxRingValue(), countFrom: map[uint64]int{}}
	if !slices.Contains(a.owned, true) {
		return nil, fmt.Errorf("scaleout.ranges %v: no slot of the %d falls in them (widen the ranges)", ranges, cfg.Slots)
	}
	pcfg.Owns = func(cell uint64) bool { return a.owned[cfg.slotOf(aggregate.Region(cell, cfg.RegionRes))] }
	var err error
	if a.agg, err = aggregate.NewAggregator(pcfg.Aggregate(), dedups, snk, &a.eng.Stats); err != nil {
		return nil, err
	}
	// The slots are parts: kept apart per slot and per dedup process, and
	// committed with the rows when the sink keeps state.
	pc, durable := snk.(sink.PartCheckpointer)
	a.durable = durable
	names := make([]string, cfg.Slots)
	var owned []int
	for s := range names {
		names[s] = sub + "/" + slotKey(s) // the subscription names the deployment
		if a.owned[s] {
			owned = append(owned, s)
		}
	}
	if err := a.agg.UseParts(aggregate.PartConfig{Names: names, Owned: owned, Layout: cfg.Layout(a.maxK),
		Retain: cfg.Retain, CountFrom: a.slotFrom}, pc); err != nil {
		return nil, err
	}
	a.wm = make([][]int64, dedups)
	a.clk = make([][]int64, dedups)
	a.lastSeq = make([][]int64, dedups)
	a.epoch = make([][]uint64, dedups)
	for d := range a.wm {
		a.wm[d] = make([]int64, cfg.Slots)
		a.clk[d] = make([]int64, cfg.Slots)
		a.lastSeq[d] = make([]int64, cfg.Slots)
		a.epoch[d] = make([]uint64, cfg.Slots)
		for s := range a.wm[d] {
			a.wm[d][s], a.clk[d][s] = aggregate.NoWatermark, aggregate.NoWatermark
			a.lastSeq[d][s] = -1
		}
	}
	policy, err := pulsar.NewKeySharedPolicySticky(ranges)
	if err != nil {
		return nil, fmt.Errorf("scaleout.ranges: %w", err)
	}
	a.ranges = ranges
	a.lost = &lostSlots{heard: make(chan struct{})}
	a.cons, err = client.Subscribe(pulsar.ConsumerOptions{
		Topic: cfg.Topic, SubscriptionName: sub, Type: pulsar.KeyShared, KeySharedPolicy: policy,
		SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest,
		Interceptors:                pulsar.ConsumerInterceptors{a.lost},
	})
	if err != nil {
		return nil, fmt.Errorf("scaleout: subscribe to %s: %w", cfg.Topic, err)
	}
	if a.members, err = newMembers(client, cfg, sub, ranges, slog.Default()); err != nil {
		a.cons.Close()
		return nil, err
	}
	return a, nil
}

// Durable reports whether the process commits its slots' state (its sink
// keeps state per part) and so can be restarted or replaced.
func (a *Aggregate) Durable() bool { return a.durable }

// Stats are the engine's counters.
func (a *Aggregate) Stats() *pipeline.Stats { return &a.eng }

// Transport returns the transport's counters.
func (a *Aggregate) Transport() Stats {
	c := &a.stats
	return Stats{Messages: c.messages.Load(), Duplicates: c.duplicates.Load(), Replayed: c.replayed.Load(), Acked: c.acked.Load()}
}

// Run restores the owned slots (when durable), then consumes until every
// dedup process has ended (EndOfStream) on every owned slot, or ctx is
// done. The end-of-stream messages stay unacknowledged, so that a process
// started again on the same ranges ends too.
func (a *Aggregate) Run(ctx context.Context) error {
	defer a.cons.Close()
	defer a.members.close()
	// Tinder's lesson: a process that no longer holds its slots stops at
	// once. A close already under way completes; it writes what the new
	// owner writes (SCALEOUT.md, "A process that lost its slots").
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a.lost.watch(cancel)
	mctx, stopMembers := context.WithCancel(ctx)
	var mwg sync.WaitGroup
	mwg.Go(func() { a.members.run(mctx) })
	err := a.run(ctx)
	a.lost.await(err)
	if err == nil {
		err = a.members.finish(ctx)
	}
	stopMembers()
	mwg.Wait()
	if errors.Is(context.Cause(ctx), errLostSlots) {
		a.lost.mu.Lock()
		cause := a.lost.cause
		a.lost.mu.Unlock()
		return fmt.Errorf("scaleout: this process %w (ranges %v): its subscription was closed (%v), e.g. the ranges were given to another process while it was cut off; stopping: nothing after its last commit was acknowledged, and the slots' new owner restores them", errLostSlots, a.ranges, cause)
	}
	return err
}

func (a *Aggregate) run(ctx context.Context) error {
	if a.durable {
		if err := a.agg.Restore(ctx); err != nil {
			return err
		}
		for s, own := range a.owned {
			if c := a.agg.Committed(s); own && c != aggregate.NoWatermark {
				// Every dedup process had passed c on s when it committed
				// (its clock too, as far as this process can tell: the
				// store kept the part's own).
				for d := range a.wm {
					a.wm[d][s], a.clk[d][s] = c, c
				}
			}
		}
	}
	for a.low != EndOfStream {
		m, err := a.cons.Receive(ctx)
		if err != nil {
			return fmt.Errorf("scaleout: receive: %w", err)
		}
		last, err := a.handle(ctx, m)
		if err != nil {
			return err
		}
		if !a.durable {
			if err := a.ack(m.ID()); err != nil {
				return err
			}
			continue
		}
		if last != EndOfStream {
			a.unacked = append(a.unacked, pending{m.ID(), last})
		}
		if err := a.ackCommitted(); err != nil {
			return err
		}
	}
	return nil
}

func (a *Aggregate) ack(id pulsar.MessageID) error {
	if err := a.cons.AckID(id); err != nil {
		return fmt.Errorf("scaleout: ack: %w", err)
	}
	a.stats.acked.Add(1)
	return nil
}

// ackCommitted acknowledges the messages whose minutes are all committed.
func (a *Aggregate) ackCommitted() error {
	closed := a.agg.Closed()
	keep := a.unacked[:0]
	for _, p := range a.unacked {
		if p.last > closed {
			keep = append(keep, p)
			continue
		}
		if err := a.ack(p.id); err != nil {
			return err
		}
	}
	clear(a.unacked[len(keep):])
	a.unacked = keep
	a.stats.unacked.Store(int64(len(keep)))
	return nil
}

// slotFrom is the owned slot an event of cell counts from: the lowest
// owned slot its halo reaches.
func (a *Aggregate) slotFrom(cell uint64) (int, error) {
	if from, ok := a.countFrom[cell]; ok {
		return from, nil
	}
	if len(a.countFrom) >= maxCachedCells {
		clear(a.countFrom) // cells move: recomputing is cheaper than growing forever
	}
	var err error
	if a.slots, err = a.cfg.cellSlots(cell, a.maxK, &a.regions, a.slots[:0]); err != nil {
		return 0, err
	}
	from := a.cfg.Slots
	for _, s := range a.slots {
		if a.owned[s] {
			from = min(from, s)
		}
	}
	a.countFrom[cell] = from
	return from, nil
}

var errNotMine = errors.New("a message for a slot this process does not own")

// maxDedups bounds the dedup processes an aggregator keeps watermarks for
// (a corrupt or hostile number would otherwise size its tables).
const maxDedups = 1024

// member makes sure dedup process d is known; one heard of for the first
// time has watermark start on every slot.
func (a *Aggregate) member(d int, start int64) error {
	if d < a.dedups {
		return nil
	}
	if d >= maxDedups {
		return fmt.Errorf("scaleout: a message of dedup process %d: at most %d are supported", d, maxDedups)
	}
	for a.dedups <= d {
		wm, clk, seq, ep := make([]int64, a.cfg.Slots), make([]int64, a.cfg.Slots), make([]int64, a.cfg.Slots), make([]uint64, a.cfg.Slots)
		for s := range wm {
			wm[s], clk[s], seq[s] = start, start, -1
		}
		a.wm, a.clk, a.lastSeq, a.epoch = append(a.wm, wm), append(a.clk, clk), append(a.lastSeq, seq), append(a.epoch, ep)
		a.agg.AddSource()
		a.dedups++
	}
	return nil
}

// handle takes one message; last is the last minute it carries (its
// events' and its watermark's), EndOfStream for an end of stream.
func (a *Aggregate) handle(ctx context.Context, m pulsar.Message) (last int64, err error) {
	last = aggregate.NoWatermark
	slot, ok := parseSlotKey(m.Key())
	if !ok || slot >= a.cfg.Slots {
		return last, fmt.Errorf("scaleout: message key %q is no slot of %d", m.Key(), a.cfg.Slots)
	}
	if !a.owned[slot] {
		return last, fmt.Errorf("scaleout: %w (%d): are two processes' ranges overlapping, or the hash ranges not sticky?", errNotMine, slot)
	}
	if err := aggregate.DecodeCountedMessage(m.Payload(), &a.msg); err != nil {
		return last, fmt.Errorf("scaleout: message %v: %w", m.ID(), err)
	}
	src := int(a.msg.Source)
	// Dedup processes join (SCALEOUT.md): a process that took riders from
	// another is announced by it (Joins) before that one's watermarks pass
	// the join's start, and heard of no later than its own first message;
	// either way its watermark is the start until it says more.
	for _, j := range a.msg.Joins {
		if err := a.member(int(j), a.msg.Start); err != nil {
			return last, err
		}
	}
	if err := a.member(src, a.msg.Start); err != nil {
		return last, err
	}
	a.stats.messages.Add(1)
	if e := a.epoch[src][slot]; e != a.msg.Epoch {
		// The dedup process started again (or is heard on this slot for
		// the first time): it resumed from its checkpoint at Start and
		// sends its events of the minutes after it again, so what it sent
		// of those before is taken back. It published no watermark past
		// its checkpoint, so no such minute is closed here, unless it
		// started again without one.
		if e > a.msg.Epoch {
			return last, fmt.Errorf("scaleout: dedup process %d: a message of epoch %d after epoch %d on slot %d (are two processes using -scaleout.dedup-id=%d?)", src, a.msg.Epoch, e, slot, src)
		}
		if closed := a.agg.Closed(); e != 0 && a.msg.Start < closed {
			return last, fmt.Errorf("scaleout: dedup process %d started again from minute %d, but minutes up to %d are closed here: its events would count twice, so %w: was its checkpoint (the state topic) lost? Run the deployment again from the start (a new subscription and sink)",
				src, a.msg.Start, closed, errDedupRestarted)
		}
		if e != 0 {
			a.stats.restarts.Add(1)
		}
		a.agg.DropAbove(src, slot, a.msg.Start)
		a.epoch[src][slot], a.lastSeq[src][slot] = a.msg.Epoch, -1
	}
	if int64(a.msg.Seq) <= a.lastSeq[src][slot] {
		a.stats.duplicates.Add(1) // handled before a lost connection
		return last, nil
	}
	a.lastSeq[src][slot] = int64(a.msg.Seq)
	for _, p := range a.msg.Products {
		if err := a.agg.Product(src, p.Code, p.UUID); err != nil {
			return last, err
		}
	}
	for _, c := range a.msg.Events {
		last = max(last, c.Minute)
	}
	dropped, err := a.agg.CountedIn(src, slot, a.msg.Events)
	a.stats.replayed.Add(int64(dropped))
	if err != nil {
		return last, err
	}
	if a.msg.Watermark == aggregate.NoWatermark {
		return last, nil
	}
	last = max(last, a.msg.Watermark)
	a.wm[src][slot] = max(a.wm[src][slot], a.msg.Watermark)
	a.clk[src][slot] = max(a.clk[src][slot], min(a.msg.Clock, a.msg.Watermark))
	low, high, clock := int64(EndOfStream), int64(aggregate.NoWatermark), int64(EndOfStream)
	for d := range a.wm {
		for s, own := range a.owned {
			if own {
				low, clock = min(low, a.wm[d][s]), min(clock, a.clk[d][s])
				if w := a.wm[d][s]; w != EndOfStream {
					high = max(high, w)
				}
			}
		}
	}
	if low != aggregate.NoWatermark && high != aggregate.NoWatermark && low <= high {
		a.stats.lag.Store(high - low)
	}
	if low <= a.low {
		return last, nil
	}
	a.low = low
	if low == aggregate.NoWatermark || low == EndOfStream {
		// EndOfStream follows a dedup process's final watermark on every
		// slot: its last minutes are closed already.
		return last, nil
	}
	for d := range a.dedups {
		if err := a.agg.Watermark(ctx, d, low, clock); err != nil {
			return last, err
		}
	}
	return last, nil
}
