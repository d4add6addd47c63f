package scaleout

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
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
	epoch uint64 // this start of the process (its clock at NewPublisher)
	start int64  // where it resumed (Resumed); NoWatermark for a first start
	joins []uint32
	seq   uint64
	clock int64           // the last watermark's clock (EndOfStream carries it)
	state pulsar.Producer // the checkpoints, on StateTopic (Checkpoint)
	// keep is this process's consumer on StateSubscription, the durable
	// subscription that keeps the state topic and its checkpoints while no
	// dedup process runs; it acknowledges the checkpoints each new one
	// replaces (state.go). last is this start's latest checkpoint (nil
	// before the first).
	keep  pulsar.Consumer
	last  pulsar.MessageID
	maxK  int
	names [encode.MaxProducts]encode.UUID
	named [encode.MaxProducts]bool
	// slotsOf caches, per source cell, the slots its events go to (one
	// disk computation per cell, not per event).
	slotsOf map[uint64][]int
	regions []uint64
	per     [][]aggregate.Counted
	msg     aggregate.CountedMessage
	buf     []byte
	failed  atomic.Pointer[error] // first failed asynchronous send (set on the client's goroutine)
	ctx     context.Context
	client  pulsar.Client
	// Read by the metrics (Register) at scrape time.
	sent, sentBytes, checkpoints, checkpointed atomic.Int64
}

// closeFlushTimeout bounds Close's and Stop's wait for the messages sent
// to be stored (the client's own send timeout is 30 s).
const closeFlushTimeout = 30 * time.Second

// NewPublisher publishes as dedup process src (0..dedups-1) with client.
// ctx bounds every send: cancel it to abandon the process's output, not
// to stop it (Stop flushes what was sent; a message sent with a cancelled
// context fails, and so would Stop).
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
	// Before any checkpoint is stored, the subscription that keeps them
	// (state.go).
	keep, err := subscribeState(client, cfg, src)
	if err != nil {
		prod.Close()
		return nil, err
	}
	// The epoch tells aggregators that the process started again: the
	// dedup role does not resume yet (SCALEOUT.md), so its events of open
	// minutes would come twice, and they stop instead.
	return &Publisher{cfg: cfg, prod: prod, src: src, epoch: uint64(time.Now().UnixNano()), start: aggregate.NoWatermark, clock: aggregate.NoWatermark, keep: keep,
		maxK: def.MaxRingValue(), slotsOf: map[uint64][]int{}, per: make([][]aggregate.Counted, cfg.Slots), ctx: ctx, client: client}, nil
}

// Joined says that dedup processes ids took some of this process's riders
// from its checkpoint on (a join: this process resumed with narrower
// ranges, they from its checkpoint): every message of this start says so,
// so that aggregators wait for them from the start on. Call it before
// the first event.
func (p *Publisher) Joined(ids []uint32) { p.joins = ids }

// Resumed says that the process resumed from its checkpoint at minute w
// (pipeline.Engine.ResumeEmit): its messages say so, and aggregators take
// back what it sent of the minutes after w before it stopped. Call it
// before the first event.
func (p *Publisher) Resumed(w int64) { p.start = w }

// stateKey is the key of dedup process src's checkpoints on the state
// topic.
func stateKey(src uint32) string { return fmt.Sprintf("dedup-%d", src) }

// Checkpoint implements pipeline.CheckpointingWriter: every message sent
// so far is stored (a flush), then the checkpoint is, on the state topic
// (a send waited for); only then does the engine send the watermark. The
// checkpoints it replaces are then acknowledged on StateSubscription
// (state.go).
func (p *Publisher) Checkpoint(through int64, cp []byte) error {
	if err := p.prod.FlushWithCtx(p.ctx); err != nil {
		return fmt.Errorf("scaleout: flush before the checkpoint at minute %d: %w", through, err)
	}
	if err := p.err(); err != nil {
		return err
	}
	if p.state == nil {
		var err error
		// Each checkpoint is an entry of its own (a batch of one: a send
		// is waited for before the next), so that acknowledging one
		// acknowledges no other. Not DisableBatching: v0.21.0's unbatched
		// send reads the producer's encryptor and name while its
		// reconnection writes them (-race failed
		// TestAggregateConnectionDropsLoseNothing).
		//
		// No producer name: the broker names it. A name would only fence
		// a second process with the same id, which the producer on Topic
		// (named, NewPublisher) already refuses; and a named state
		// producer made a process resumed in the same client fail with
		// ProducerBusy about one start in 12 under -race
		// (TestDedupResumesAfterTheBrokerDeletedIdleTopics). The client's
		// log showed why: Stop's flush, cancelled, left a batch that the
		// client wrote after the producer's CLOSE_PRODUCER; the broker
		// closes a connection on a SEND for a producer it does not have
		// (ServerCnx.handleSend); the state producer, closed while it was
		// reconnecting, failed its close on the dead connection ("Failed
		// to close producer: connection closed"), and pulsar-client-go
		// v0.21.0's reconnect then registered it on the new connection
		// after all ("Connected producer", then "producer already been
		// closed"): a closed producer the broker keeps until the
		// connection ends.
		if p.state, err = p.client.CreateProducer(pulsar.ProducerOptions{Topic: p.cfg.StateTopic()}); err != nil {
			return fmt.Errorf("scaleout: producer on the state topic %s: %w", p.cfg.StateTopic(), err)
		}
	}
	id, err := p.state.Send(p.ctx, &pulsar.ProducerMessage{Payload: cp, Key: stateKey(p.src)})
	if err != nil {
		return fmt.Errorf("scaleout: checkpoint at minute %d to %s: %w", through, p.cfg.StateTopic(), err)
	}
	p.checkpoints.Add(1)
	p.checkpointed.Store(through)
	p.release(id)
	return nil
}

// LoadCheckpoint returns dedup process src's last checkpoint on the state
// topic, or nil when it has none (a first start).
func LoadCheckpoint(ctx context.Context, client pulsar.Client, cfg Config, src uint32) ([]byte, error) {
	r, err := client.CreateReader(pulsar.ReaderOptions{Topic: cfg.StateTopic(), StartMessageID: pulsar.EarliestMessageID()})
	if err != nil {
		return nil, fmt.Errorf("scaleout: read the state topic %s: %w", cfg.StateTopic(), err)
	}
	defer r.Close()
	var last []byte
	key := stateKey(src)
	for r.HasNext() {
		m, err := r.Next(ctx)
		if err != nil {
			return nil, fmt.Errorf("scaleout: read the state topic %s: %w", cfg.StateTopic(), err)
		}
		if m.Key() == key {
			last = m.Payload()
		}
	}
	return last, nil
}

// Product implements pipeline.CountedWriter.
func (p *Publisher) Product(code byte, u encode.UUID) error {
	p.names[code], p.named[code] = u, true
	return nil
}

// Counted implements pipeline.CountedWriter.
func (p *Publisher) Counted(evs []aggregate.Counted) error {
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
				p.msg.Products = append(p.msg.Products, aggregate.ProductName{Code: c.Product, UUID: p.names[c.Product]})
			}
		}
		p.msg.Events, p.msg.Watermark, p.msg.Clock = part, aggregate.NoWatermark, aggregate.NoWatermark
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
// before it, with its clock (the minutes it closes by event time).
func (p *Publisher) Watermark(through, clock int64) error {
	p.msg.Products, p.msg.Events, p.msg.Watermark, p.msg.Clock = p.msg.Products[:0], nil, through, clock
	p.clock = clock
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
	return p.close(p.Watermark(EndOfStream, p.clock))
}

// Stop waits for every message sent to be stored and closes the producer
// without saying EndOfStream: the input did not end, and the aggregators
// go on waiting for this process's watermark.
func (p *Publisher) Stop() error { return p.close(nil) }

func (p *Publisher) close(err error) error {
	// Flush what was sent, within bounds: a broker that went away fails
	// the close in seconds instead of holding the process.
	ctx, cancel := context.WithTimeout(p.ctx, closeFlushTimeout)
	defer cancel()
	if ferr := p.prod.FlushWithCtx(ctx); err == nil && ferr != nil {
		err = fmt.Errorf("scaleout: flush: %w", ferr)
	}
	p.prod.Close()
	if p.state != nil {
		p.state.Close()
	}
	p.keep.Close() // sends the acknowledgements still grouped; the subscription stays
	if err == nil {
		err = p.err()
	}
	return err
}

func (p *Publisher) send(slot int) error {
	p.msg.Source, p.msg.Epoch, p.msg.Start, p.msg.Joins, p.msg.Seq = p.src, p.epoch, p.start, p.joins, p.seq
	p.seq++
	p.buf = aggregate.AppendCountedMessage(p.buf[:0], &p.msg)
	payload := append([]byte(nil), p.buf...) // the client keeps it until sent
	p.sent.Add(1)
	p.sentBytes.Add(int64(len(payload)))
	p.prod.SendAsync(p.ctx, &pulsar.ProducerMessage{Payload: payload, Key: slotKey(slot)}, func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
		if err != nil {
			e := fmt.Errorf("scaleout: send to %s: %w", p.cfg.Topic, err)
			p.failed.CompareAndSwap(nil, &e)
		}
	})
	return p.err()
}
