package scaleout

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink"
)

// Aggregate is the aggregate role's transport: it consumes the internal
// topic on a Key_Shared subscription with the sticky hash ranges given,
// owns the regions of the slots whose keys fall in them, and closes a
// minute once every dedup process's watermark on every owned slot has
// passed it (a watermark is ordered only with the events of its own key).
type Aggregate struct {
	cfg    Config
	agg    *pipeline.Aggregator
	cons   pulsar.Consumer
	owned  []bool
	dedups int
	wm     [][]int64 // [dedup][slot]
	low    int64
	msg    pipeline.CountedMessage
	maxK   int
	// countFrom caches, per source cell, the owned slot its events are
	// counted from: an event reaching several slots this process owns
	// arrives once per slot and must count once.
	countFrom map[uint64]int
	regions   []uint64
	slots     []int
	mine      []pipeline.Counted
}

// NewAggregate subscribes to cfg.Topic as subscription sub with ranges
// (ParseRanges) for `dedups` dedup processes; rows go to snk. pcfg is the
// engine's configuration (its Owns is set here).
func NewAggregate(client pulsar.Client, cfg Config, sub string, ranges []int, dedups int, pcfg pipeline.Config, snk sink.Writer) (*Aggregate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Aggregate{cfg: cfg, owned: cfg.owned(ranges), dedups: dedups, low: pipeline.NoWatermark,
		maxK: pcfg.Def.MaxRingValue(), countFrom: map[uint64]int{}}
	if !slices.Contains(a.owned, true) {
		return nil, fmt.Errorf("scaleout.ranges %v: no slot of the %d falls in them (widen the ranges)", ranges, cfg.Slots)
	}
	pcfg.Owns = func(cell uint64) bool { return a.owned[cfg.slotOf(pipeline.Region(cell, cfg.RegionRes))] }
	var err error
	if a.agg, err = pipeline.NewAggregator(pcfg, dedups, snk); err != nil {
		return nil, err
	}
	a.wm = make([][]int64, dedups)
	for d := range a.wm {
		a.wm[d] = make([]int64, cfg.Slots)
		for s := range a.wm[d] {
			a.wm[d][s] = pipeline.NoWatermark
		}
	}
	policy, err := pulsar.NewKeySharedPolicySticky(ranges)
	if err != nil {
		return nil, fmt.Errorf("scaleout.ranges: %w", err)
	}
	a.cons, err = client.Subscribe(pulsar.ConsumerOptions{
		Topic: cfg.Topic, SubscriptionName: sub, Type: pulsar.KeyShared, KeySharedPolicy: policy,
		SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest,
	})
	if err != nil {
		return nil, fmt.Errorf("scaleout: subscribe to %s: %w", cfg.Topic, err)
	}
	return a, nil
}

// Stats are the aggregator's counters.
func (a *Aggregate) Stats() *pipeline.Stats { return &a.agg.Stats }

// Run consumes until every dedup process has ended (EndOfStream) on every
// owned slot, or ctx is done.
func (a *Aggregate) Run(ctx context.Context) error {
	defer a.cons.Close()
	for a.low != EndOfStream {
		m, err := a.cons.Receive(ctx)
		if err != nil {
			return fmt.Errorf("scaleout: receive: %w", err)
		}
		if err := a.handle(ctx, m); err != nil {
			return err
		}
		// No checkpoint yet: acknowledged once handled (SCALEOUT.md).
		if err := a.cons.Ack(m); err != nil {
			return fmt.Errorf("scaleout: ack: %w", err)
		}
	}
	return nil
}

var errNotMine = errors.New("a message for a slot this process does not own")

func (a *Aggregate) handle(ctx context.Context, m pulsar.Message) error {
	slot, ok := parseSlotKey(m.Key())
	if !ok || slot >= a.cfg.Slots {
		return fmt.Errorf("scaleout: message key %q is no slot of %d", m.Key(), a.cfg.Slots)
	}
	if !a.owned[slot] {
		return fmt.Errorf("scaleout: %w (%d): are two processes' ranges overlapping, or the hash ranges not sticky?", errNotMine, slot)
	}
	if err := pipeline.DecodeCountedMessage(m.Payload(), &a.msg); err != nil {
		return fmt.Errorf("scaleout: message %v: %w", m.ID(), err)
	}
	src := int(a.msg.Source)
	if src >= a.dedups {
		return fmt.Errorf("scaleout: a message of dedup process %d, but -scaleout.dedups=%d", src, a.dedups)
	}
	for _, p := range a.msg.Products {
		if err := a.agg.Product(src, p.Code, p.UUID); err != nil {
			return err
		}
	}
	a.mine = a.mine[:0]
	for _, c := range a.msg.Events {
		from, ok := a.countFrom[c.Cell]
		if !ok {
			if len(a.countFrom) >= maxCachedCells {
				clear(a.countFrom) // cells move: recomputing is cheaper than growing forever
			}
			var err error
			if a.slots, err = a.cfg.cellSlots(c.Cell, a.maxK, &a.regions, a.slots[:0]); err != nil {
				return err
			}
			from = a.cfg.Slots
			for _, s := range a.slots {
				if a.owned[s] {
					from = min(from, s)
				}
			}
			a.countFrom[c.Cell] = from
		}
		if from == slot {
			a.mine = append(a.mine, c)
		}
	}
	if err := a.agg.Counted(src, a.mine); err != nil {
		return err
	}
	if a.msg.Watermark == pipeline.NoWatermark {
		return nil
	}
	a.wm[src][slot] = max(a.wm[src][slot], a.msg.Watermark)
	low := int64(EndOfStream)
	for d := range a.wm {
		for s, own := range a.owned {
			if own {
				low = min(low, a.wm[d][s])
			}
		}
	}
	if low <= a.low {
		return nil
	}
	a.low = low
	if low == pipeline.NoWatermark || low == EndOfStream {
		// EndOfStream follows a dedup process's final watermark on every
		// slot: its last minutes are closed already.
		return nil
	}
	for d := range a.dedups {
		if err := a.agg.Watermark(ctx, d, low); err != nil {
			return err
		}
	}
	return nil
}
