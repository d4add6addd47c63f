package scaleout

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/pipeline"
)

// EndOfStream, as a watermark, says that the dedup process has finished:
// no message of it follows.
const EndOfStream = math.MaxInt64

// Publisher is the dedup role's transport: a pipeline.CountedWriter that
// sends each batch's counted events to the slots of the regions they reach
// (their halo), and each watermark to every slot.
type Publisher struct {
	cfg   Config
	prod  pulsar.Producer
	src   uint32
	seq   uint64
	maxK  int
	names [encode.MaxProducts]encode.UUID
	named [encode.MaxProducts]bool
	// slotsOf caches, per source cell, the slots its events go to (one
	// disk computation per cell, not per event).
	slotsOf map[uint64][]int
	regions []uint64
	per     [][]pipeline.Counted
	msg     pipeline.CountedMessage
	buf     []byte
	failed  atomic.Pointer[error] // first failed asynchronous send (set on the client's goroutine)
	ctx     context.Context
}

// NewPublisher publishes as dedup process src (0..dedups-1) with client.
func NewPublisher(ctx context.Context, client pulsar.Client, cfg Config, src uint32, def feature.Definition) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Key-based batches: a batch entry is routed by one key, so batching
	// messages of several slots together would hand them all to the
	// owner of the first.
	prod, err := client.CreateProducer(pulsar.ProducerOptions{Topic: cfg.Topic, Name: fmt.Sprintf("demandpipe-dedup-%d", src),
		BatcherBuilderType: pulsar.KeyBasedBatchBuilder})
	if err != nil {
		return nil, fmt.Errorf("scaleout: producer on %s: %w", cfg.Topic, err)
	}
	return &Publisher{cfg: cfg, prod: prod, src: src, maxK: def.MaxRingValue(), slotsOf: map[uint64][]int{},
		per: make([][]pipeline.Counted, cfg.Slots), ctx: ctx}, nil
}

// Product implements pipeline.CountedWriter.
func (p *Publisher) Product(code byte, u encode.UUID) error {
	p.names[code], p.named[code] = u, true
	return nil
}

// Counted implements pipeline.CountedWriter.
func (p *Publisher) Counted(evs []pipeline.Counted) error {
	for s := range p.per {
		p.per[s] = p.per[s][:0]
	}
	for _, c := range evs {
		slots, ok := p.slotsOf[c.Cell]
		if !ok {
			if len(p.slotsOf) >= maxCachedCells {
				clear(p.slotsOf) // cells move: recomputing is cheaper than growing forever
			}
			var err error
			if slots, err = p.cfg.cellSlots(c.Cell, p.maxK, &p.regions, nil); err != nil {
				return err
			}
			p.slotsOf[c.Cell] = slots
		}
		for _, s := range slots {
			p.per[s] = append(p.per[s], c)
		}
	}
	for s, part := range p.per {
		if len(part) == 0 {
			continue
		}
		p.msg.Products = p.msg.Products[:0]
		var used [encode.MaxProducts]bool
		for _, c := range part {
			if !used[c.Product] {
				used[c.Product] = true
				p.msg.Products = append(p.msg.Products, pipeline.ProductName{Code: c.Product, UUID: p.names[c.Product]})
			}
		}
		p.msg.Events, p.msg.Watermark = part, pipeline.NoWatermark
		if err := p.send(s); err != nil {
			return err
		}
	}
	return p.err()
}

// err is the first asynchronous send failure, if any.
func (p *Publisher) err() error {
	if e := p.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// Watermark implements pipeline.CountedWriter: it goes to every slot, so
// that each aggregator hears it on each key it owns after the events
// before it.
func (p *Publisher) Watermark(through int64) error {
	p.msg.Products, p.msg.Events, p.msg.Watermark = p.msg.Products[:0], nil, through
	for s := range p.cfg.Slots {
		if err := p.send(s); err != nil {
			return err
		}
	}
	return p.err()
}

// Close says EndOfStream on every slot, waits for every message to be
// stored and closes the producer.
func (p *Publisher) Close() error {
	err := p.Watermark(EndOfStream)
	if ferr := p.prod.FlushWithCtx(p.ctx); err == nil && ferr != nil {
		err = fmt.Errorf("scaleout: flush: %w", ferr)
	}
	p.prod.Close()
	if err == nil {
		err = p.err()
	}
	return err
}

func (p *Publisher) send(slot int) error {
	p.msg.Source, p.msg.Seq = p.src, p.seq
	p.seq++
	p.buf = pipeline.AppendCountedMessage(p.buf[:0], &p.msg)
	payload := append([]byte(nil), p.buf...) // the client keeps it until sent
	p.prod.SendAsync(p.ctx, &pulsar.ProducerMessage{Payload: payload, Key: slotKey(slot)}, func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
		if err != nil {
			e := fmt.Errorf("scaleout: send to %s: %w", p.cfg.Topic, err)
			p.failed.CompareAndSwap(nil, &e)
		}
	})
	return p.err()
}
