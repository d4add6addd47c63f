// Package pulsar is the Apache Pulsar source: one message of a durable
// subscription is one NDJSON line (Source), a partitioned topic's
// partitions merged in event-time order (merge.go). Specs are
// pulsar://HOST:PORT/TOPIC?subscription=NAME (SpecHelp); Openers adds the
// kinds pulsar and pulsar+ssl to source.Builtin(). The connection (URL,
// token, TLS, timeouts) is package pulsar/conn, shared with `demandpipe
// publish` and the scale-out roles.
//
// The source acknowledges messages only once a checkpoint past them is
// durable (source.Acknowledger) and resumes after a restart from the
// checkpoint's message ids (pipeline.Cursored; RECOVERY.md). Rejected
// lines can go to a dead-letter topic (dead-letter=; deadletter.go). Its
// metrics (Source.RegisterMetrics), namespace demandpipe, subsystem
// source: pulsar_messages_total, pulsar_received_bytes_total,
// pulsar_redeliveries_total, pulsar_acked_messages_total,
// pulsar_ack_errors_total, pulsar_reconnects_total,
// pulsar_dead_lettered_total, pulsar_unacked_messages,
// pulsar_partition_unacked_messages, pulsar_max_unacked_messages and
// pulsar_consumer_lag_seconds. On a shared or key_shared subscription it
// fails the run, saying so, before the broker's limit on unacknowledged
// messages would stall it (Config.MaxUnacked).
package pulsar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/demandpipe/demandpipe/internal/keyshared"
	"github.com/demandpipe/demandpipe/pulsar/conn"
	"github.com/demandpipe/demandpipe/source"
)

// Source is a live source over a Pulsar subscription: one message is one
// NDJSON line. It acknowledges a message only when told that a checkpoint
// past it is durable (Ack, wired to the engine's Durable), names positions
// in message ids for checkpoints (Cursor) and continues after them on a
// restart (ResumeAt); RECOVERY.md is the argument that the rows of a
// restarted run equal an uninterrupted one's.
//
// Raw '\n' and '\r' bytes in a payload become spaces: they cannot occur
// inside a valid JSON text's strings, so a valid event is unchanged and an
// invalid one stays one (rejected) line.
type Source struct {
	cfg Config
	// client: credentials or TLS refused on a reconnection end the run
	// (Read returns client.Refusal) rather than leave it retrying unseen.
	client *conn.Client
	cons   pulsar.Consumer
	msgs   <-chan pulsar.ConsumerMessage
	dl     *deadLetter // nil without dead-letter=

	// Read's goroutine only.
	buf    []byte // lines not yet handed out: buf[head:]
	head   int
	off    int64              // stream offset of the end of buf
	last   []pulsar.MessageID // per partition: the last message queued (or the resume cursor's); key_shared: the largest
	queues []partQueue        // per partition: messages waiting for the merge
	queued int                // messages in queues
	timer  *time.Timer        // the merge's wait
	endAt  []pulsar.MessageID // until=end: per partition the last id at start
	// slotEnd (key_shared, until=end): per partition, each slot's last
	// message up to the end not yet taken (keySharedEnds, reachSlot).
	slotEnd   []map[int32]slotID
	end       []pulsar.MessageID // until=end: the same, nil once reached
	remaining int                // until=end: partitions not yet reached
	started   bool
	resumed   bool
	limit     int64 // the broker's unacked limit per partition (Config.unackedLimit), 0: none
	warned    bool  // the 80% warning was given
	maxBatch  int64 // the most messages of one batch entry seen
	log       *slog.Logger
	copies    []pulsar.MessageID // limit > 0: copies of checkpointed messages, to acknowledge again

	handed atomic.Int64 // stream offset handed to the engine (Position)

	mu    sync.Mutex
	table boundaries
	acked []pulsar.MessageID // per partition: the last id acknowledged or resumed at (key_shared: the largest)
	// order: key_shared only, per partition, the last message taken and
	// acknowledged of each sticky-key slot (keyorder.go); the slice and the
	// chunks' pointers change under mu, the taken ids on Read's goroutine.
	order []*keyOrder
	noAck bool
	// held: per partition, the messages taken from the client (waiting
	// for the merge or handed to the engine) whose acknowledgement the
	// broker has not confirmed, counted as the broker counts them against
	// its unacked limit: a batch entry's messages until the entry is
	// acknowledged whole. pend: per partition, the messages acknowledged
	// of an entry that is not yet whole. Both only when there is a limit
	// (limit > 0).
	held, pend []int64

	stop     chan struct{}
	stopOnce sync.Once
	failed   chan struct{}
	failOnce sync.Once
	failErr  error

	stats counters
}

// counters are the source's counters (RegisterMetrics exports them; the
// client counts its reconnections).
type counters struct {
	messages, bytes  atomic.Int64
	redelivered      atomic.Int64 // redelivery count > 0
	skipped          atomic.Int64 // dropped: already handed, or at or before the resume cursor
	acked, ackErrors atomic.Int64
	deadLettered     atomic.Int64
	publishNanos     atomic.Int64 // publish time of the last message handed
	unacked          atomic.Int64
	lastKey          atomic.Int64 // largest merge key (unix ms) of the messages handed
	trimmed          atomic.Int64 // until=end: messages the broker had deleted before the start (checkStart)
}

// Openers returns the kinds this package opens, pulsar and pulsar+ssl,
// for a command to add to source.Builtin() (this package imports source,
// so source cannot name it):
//
//	openers := source.Builtin()
//	maps.Copy(openers, pulsar.Openers())
func Openers() source.Openers {
	kind := func(scheme string) source.Opener {
		return func(arg string) (source.Source, error) {
			s, err := Open(scheme + ":" + arg)
			if err != nil {
				return nil, err // a nil Source, not one holding a nil *Source
			}
			return s, nil
		}
	}
	return source.Openers{"pulsar": kind("pulsar"), "pulsar+ssl": kind("pulsar+ssl")}
}

// Open parses a pulsar:// spec and subscribes.
func Open(spec string) (*Source, error) {
	cfg, err := ParseURL(spec)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// Holds reports whether this source receives the messages keyed key: true
// unless it owns sticky key ranges that do not hold it.
func (p *Source) Holds(key []byte) bool {
	return len(p.cfg.KeyRanges) == 0 || keyshared.Holds(p.cfg.KeyRanges, key)
}

// New subscribes with cfg. It fails within the operation timeout when the
// broker cannot be reached, and at once when the broker refuses the token
// or TLS fails (conn.Client).
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Source{cfg: cfg, stop: make(chan struct{}), failed: make(chan struct{}), limit: cfg.unackedLimit(), log: slog.Default()}
	client, err := conn.Dial(cfg.Config)
	if err != nil {
		return nil, err
	}
	types := map[string]pulsar.SubscriptionType{"exclusive": pulsar.Exclusive, "failover": pulsar.Failover, "shared": pulsar.Shared, "key_shared": pulsar.KeyShared}
	initial := pulsar.SubscriptionPositionEarliest
	if cfg.Initial == "latest" {
		initial = pulsar.SubscriptionPositionLatest
	}
	opts := pulsar.ConsumerOptions{
		Topic:                       cfg.Topic,
		SubscriptionName:            cfg.Subscription,
		Type:                        types[cfg.Type],
		SubscriptionInitialPosition: initial,
		ReceiverQueueSize:           cfg.ReceiverQueue,
		AckGroupingOptions:          &pulsar.AckGroupingOptions{MaxSize: uint32(cfg.AckGroupSize), MaxTime: cfg.AckGroupTime},
		Name:                        cfg.Name,
	}
	if p.limit > 0 {
		// Acknowledgements the broker confirms: the count held against
		// its unacked limit drops only once the broker's has (ackConfirmed).
		opts.AckWithResponse = true
	}
	if len(cfg.KeyRanges) > 0 {
		if opts.KeySharedPolicy, err = pulsar.NewKeySharedPolicySticky(cfg.KeyRanges); err != nil {
			client.Close()
			return nil, fmt.Errorf("pulsar: key-ranges: %w", err)
		}
	}
	cons, err := client.Consumer(opts)
	if err != nil {
		client.Close()
		if err == client.Refusal() {
			return nil, err
		}
		hint := "is the broker up and the topic's namespace there?"
		if strings.Contains(err.Error(), "ConsumerBusy") {
			hint = "another consumer holds this exclusive subscription: a run still going, or one the broker has not yet noticed is gone (wait for its keepalive); type=failover lets a new consumer stand by instead"
		} else if w := client.LastWarning(); w != "" {
			hint += " the client's last warning: " + w
		}
		return nil, fmt.Errorf("pulsar: subscribe %s to %s at %s: %w (%s)", cfg.Subscription, cfg.Topic, cfg.ServiceURL, err, hint)
	}
	p.client, p.cons, p.msgs = client, cons, cons.Chan()
	parts, err := client.TopicPartitions(cfg.Topic)
	if err != nil {
		cons.Close()
		client.Close()
		return nil, fmt.Errorf("pulsar: partitions of %s: %w (is the broker up and the topic's namespace there?)", cfg.Topic, err)
	}
	p.grow(len(parts) - 1) // the merge waits for every partition
	if cfg.DeadLetter != "" {
		if p.dl, err = newDeadLetter(client, cfg, &p.stats); err != nil {
			cons.Close()
			client.Close()
			return nil, err
		}
	}
	return p, nil
}

// Live: messages arrive over time.
func (p *Source) Live() bool { return true }

// Position is the stream offset handed to the engine; the size is unknown.
func (p *Source) Position() (int64, int64) { return p.handed.Load(), -1 }

// EventClock is the stream's own time for a replay (until=end): the
// largest event time (else publish time) of the messages handed (the last
// one may be a late event), so that a broker
// that stalls longer than -windows.idle-timeout does not move a replay's
// event time as a quiet live stream's must (minutes closed early, events
// late); the wall clock before the first message and on a live stream.
func (p *Source) EventClock() time.Time {
	if p.cfg.UntilEnd {
		if k := p.stats.lastKey.Load(); k != 0 {
			return time.UnixMilli(k)
		}
	}
	return time.Now()
}

// Identity names topic and subscription for checkpoints.
func (p *Source) Identity() string { return p.cfg.Identity() }

// Config returns the source's configuration.
func (p *Source) Config() Config { return p.cfg }

// Stop ends the stream after the lines already taken from the consumer:
// Read returns io.EOF. (A live run is stopped by cancelling the engine
// instead: see RECOVERY.md.)
func (p *Source) Stop() { p.stopOnce.Do(func() { close(p.stop) }) }

// backgroundCloses counts the closings a refusal left running (Close), for
// tests to wait for; each ends within the operation timeout.
var backgroundCloses sync.WaitGroup

// Close keeps the subscription: it flushes and closes the dead-letter
// producer, then closes the consumer and the client. Unacknowledged
// messages are redelivered to the subscription's next consumer.
//
// After the broker refused a reconnection (Read returned the refusal), the
// client is still retrying it, and its Close would wait for that until the
// operation timeout: then Close lets the closing finish in the background
// and returns at once (unacknowledged messages, dead letters not yet
// flushed included, are redelivered to the next run).
func (p *Source) Close() error {
	p.Stop()
	closeAll := func() error {
		var err error
		if p.dl != nil {
			err = p.dl.close()
		}
		p.cons.Close()
		p.client.Close()
		return err
	}
	if p.client.Refusal() != nil {
		backgroundCloses.Add(1)
		go func() {
			defer backgroundCloses.Done()
			closeAll()
		}()
		return nil
	}
	return closeAll()
}

// NoAcks says no acknowledgement will come (the sink keeps no checkpoint):
// the source keeps no table of boundaries, and nothing is ever
// acknowledged, so the subscription's backlog stays for a run that keeps
// its state.
func (p *Source) NoAcks() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noAck = true
}

func (p *Source) fail(err error) {
	p.failOnce.Do(func() {
		p.failErr = err
		close(p.failed)
	})
}

// Read hands out whole lines, in merge order (merge.go): it waits
// for input that can be handed out, then takes whatever else can, up to
// len(b).
func (p *Source) Read(b []byte) (int, error) {
	if !p.started {
		p.started = true
		if err := p.start(); err != nil {
			return 0, err
		}
	}
	for p.head == len(p.buf) {
		select {
		case <-p.failed:
			return 0, p.failErr
		case <-p.client.Refused():
			return 0, p.client.Refusal()
		default:
		}
		if len(p.copies) > 0 {
			p.ackConfirmed(p.copies, nil)
			p.copies = p.copies[:0]
		}
		p.buf, p.head = p.buf[:0], 0
		p.drain()
		var wait time.Duration
		for now := time.Now(); len(p.buf) < len(b); {
			part, w := p.pick(now)
			if part < 0 {
				wait = w
				break
			}
			p.emit(p.queues[part].pop())
		}
		if len(p.buf) > 0 {
			break
		}
		if p.cfg.UntilEnd && p.remaining == 0 && p.queued == 0 {
			return 0, io.EOF
		}
		var timeout <-chan time.Time
		if wait > 0 {
			if p.timer == nil {
				p.timer = time.NewTimer(wait)
			} else {
				p.timer.Reset(wait)
			}
			timeout = p.timer.C
		}
		select {
		case cm, ok := <-p.msgs:
			if !ok {
				return 0, errors.New("pulsar: the consumer was closed under the run: run it again (it resumes from the last checkpoint)")
			}
			p.ingest(cm.Message)
		case <-timeout:
		case <-p.stop:
			return 0, io.EOF
		case <-p.failed:
			return 0, p.failErr
		case <-p.client.Refused():
			return 0, p.client.Refusal()
		}
		if p.timer != nil && !p.timer.Stop() {
			select {
			case <-p.timer.C:
			default:
			}
		}
	}
	n := copy(b, p.buf[p.head:])
	p.head += n
	p.handed.Add(int64(n))
	return n, nil
}

// drain takes the messages that have arrived, without waiting.
func (p *Source) drain() {
	for range 4096 {
		select {
		case cm, ok := <-p.msgs:
			if !ok {
				return
			}
			p.ingest(cm.Message)
		default:
			return
		}
	}
}

// start runs before the first message is taken: with until=end, a run that
// does not resume rewinds the subscription to the topic's first message
// (a replay reads the whole topic, like a file from byte 0), then the last
// message id of each partition is what ends the stream.
func (p *Source) start() error {
	if !p.cfg.UntilEnd {
		return nil
	}
	ids, err := p.cons.GetLastMessageIDs()
	if err != nil {
		return fmt.Errorf("pulsar: last message ids of %s (until=end): %w (is the broker up? operation-timeout= waits longer)", p.cfg.Topic, err)
	}
	if !p.resumed {
		if err := p.checkStart(ids); err != nil {
			return err
		}
		if err := p.cons.SeekByTime(time.Unix(0, 0)); err != nil {
			return fmt.Errorf("pulsar: rewinding %s to the topic's start for until=end: %w (is the broker up? a new subscription= name starts at the beginning too)", p.cfg.Subscription, err)
		}
	}
	ends := make([]pulsar.MessageID, len(ids))
	for i, t := range ids {
		ends[i] = t
	}
	p.grow(len(ends) - 1)
	if p.order != nil {
		// key_shared: a partition ends once each slot's last message up
		// to the end is taken (keySharedEnds).
		if ends, err = p.keySharedEnds(ids); err != nil {
			return err
		}
	}
	p.end = make([]pulsar.MessageID, len(ends))
	p.endAt = make([]pulsar.MessageID, len(ends))
	for i, t := range ends {
		p.endAt[i] = t
		pending := !reached(p.last[i], t)
		if p.slotEnd != nil {
			pending = len(p.slotEnd[i]) > 0
		}
		if pending {
			p.end[i] = t
			p.remaining++
		}
	}
	return nil
}

// checkStart tells whether the broker still has the start of each
// partition, for an until=end run that reads the topic from its start
// (issue 22 P4). A broker with the default retention (0) deletes the
// messages every durable subscription has acknowledged once their ledger
// rolls over (and every message of a topic without one), so a rewind to
// "earliest" may reach only a tail, and a replay would compute its
// minutes from part of their events, silently. The first message each
// partition still has says so when the broker exposes entry indexes
// (Message.Index, the count of messages before it over the topic's life:
// AppendIndexMetadataInterceptor with
// exposingBrokerEntryMetadataToClientEnabled=true): a partition starting
// past index 0 fails the run, naming what is gone, unless
// allow-trimmed=true (then a warning). Without indexes nothing on the wire
// tells a trimmed start from a whole one: the run warns, naming the first
// publish time it will read, and goes on.
func (p *Source) checkStart(ends []pulsar.TopicMessageID) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.OperationTimeout)
	defer cancel()
	var unverified []string
	for _, end := range ends {
		m, err := p.firstMessage(ctx, end.Topic())
		if err != nil {
			return fmt.Errorf("pulsar: reading the first message of %s (until=end): %w", end.Topic(), err)
		}
		if m == nil {
			continue // empty
		}
		idx := m.Index()
		if idx == nil {
			unverified = append(unverified, fmt.Sprintf("%s from %s", end.Topic(), m.PublishTime().UTC().Format(time.RFC3339)))
			continue
		}
		if *idx == 0 {
			continue
		}
		p.stats.trimmed.Add(int64(*idx))
		msg := fmt.Sprintf("until=end: %s starts at message index %d, published %s: the broker no longer has its first %d messages (its retention, 0 by default, deletes acknowledged messages once their ledger rolls over, and every message of a topic without a durable subscription), so the replay reads only a tail and its minutes would be understated",
			end.Topic(), *idx, m.PublishTime().UTC().Format(time.RFC3339), *idx)
		if !p.cfg.AllowTrimmed {
			return fmt.Errorf("pulsar: %s. Keep topics to be replayed (pulsar-admin namespaces set-retention NS --time -1 --size -1, before publishing), or add allow-trimmed=true to read what is left", msg)
		}
		p.log.Warn(msg + " (allow-trimmed=true: reading what is left)")
	}
	if len(unverified) > 0 {
		p.log.Warn("until=end: the broker exposes no entry indexes, so whether its retention trimmed the start of the topic cannot be checked; the replay reads what the broker has (a broker with brokerEntryMetadataInterceptors=org.apache.pulsar.common.intercept.AppendIndexMetadataInterceptor and exposingBrokerEntryMetadataToClientEnabled=true lets the run check)",
			"from", strings.Join(unverified, ", "))
	}
	return nil
}

// firstMessage reads the first message a partition (or topic) still has,
// nil if it has none.
func (p *Source) firstMessage(ctx context.Context, topic string) (pulsar.Message, error) {
	r, err := p.client.CreateReader(pulsar.ReaderOptions{Topic: topic, StartMessageID: pulsar.EarliestMessageID()})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if !r.HasNext() {
		return nil, nil
	}
	return r.Next(ctx)
}

// keySharedEnds is the end of an until=end run on key_shared. Key_Shared
// keeps each sticky-key slot's order only, so after a reconnect a
// partition's last message may come before the replay of older messages
// of other slots (apache/pulsar#10762; keyorder.go): ending once it is
// taken lost them for the run. So the keys of the messages up to each
// partition's end are read with a reader from where the consumer starts
// (the resume floor, else the first message), and the partition ends once
// every slot's last such message is taken (reachSlot); with key-ranges=
// only its own slots, and the partition's end is then the last of its own
// messages (the last message may be another consumer's). A replay on
// key_shared reads the keys of its part of the topic twice.
func (p *Source) keySharedEnds(ends []pulsar.TopicMessageID) ([]pulsar.MessageID, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.OperationTimeout)
	defer cancel()
	out := make([]pulsar.MessageID, len(ends))
	p.slotEnd = make([]map[int32]slotID, len(ends))
	for i, end := range ends {
		out[i] = nil // none of its own: an empty partition for it
		p.slotEnd[i] = map[int32]slotID{}
		o := p.order[i]
		start := pulsar.EarliestMessageID()
		if o.floor != nil {
			start = o.floor
		}
		if reached(o.floor, end) {
			continue // nothing after where it starts
		}
		r, err := p.client.CreateReader(pulsar.ReaderOptions{Topic: end.Topic(), StartMessageID: start})
		if err != nil {
			return nil, fmt.Errorf("pulsar: reading the keys of %s (until=end on key_shared): %w", end.Topic(), err)
		}
		slots := keyOrder{entryLedger: -1} // the reader's own batch state
		for r.HasNext() {
			m, err := r.Next(ctx)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("pulsar: reading the keys of %s (until=end on key_shared): %w", end.Topic(), err)
			}
			id := m.ID()
			if past(id, end) {
				break
			}
			if len(p.cfg.KeyRanges) == 0 || p.Holds([]byte(m.Key())) {
				out[i] = id
				slot := slots.slotOf(m, id)
				if st := o.state(slot); st == nil || !st.taken.covers(id) {
					p.slotEnd[i][slot] = toSlotID(id)
				}
			}
			if reached(id, end) {
				break
			}
		}
		r.Close()
	}
	return out, nil
}

// reachSlot notes that taken is now the last message taken of partition
// part's slot: the partition has been read to its end once every slot's
// last message up to the end is taken (keySharedEnds).
func (p *Source) reachSlot(part int, slot int32, taken slotID) {
	ends := p.slotEnd[part]
	e, ok := ends[slot]
	if !ok || taken.before(e) {
		return
	}
	delete(ends, slot)
	if len(ends) == 0 && p.end[part] != nil {
		p.end[part] = nil
		p.remaining--
	}
}

// grow makes room for partition part in the per-partition tables.
func (p *Source) grow(part int) {
	if part < len(p.last) {
		return // p.acked is as long
	}
	for len(p.last) <= part {
		p.last = append(p.last, nil)
		p.queues = append(p.queues, partQueue{})
	}
	p.mu.Lock()
	for len(p.acked) <= part {
		p.acked = append(p.acked, nil)
		p.held = append(p.held, 0)
		p.pend = append(p.pend, 0)
		if p.cfg.Type == "key_shared" {
			p.order = append(p.order, &keyOrder{entryLedger: -1})
		}
	}
	p.mu.Unlock()
}

// ingest queues msg in its partition's queue for the merge, unless it was
// queued before (a redelivery after a reconnect), is at or before the
// resume cursor, or (until=end) is past the partition's end. Taken before
// means at or before the last id taken of its partition, on key_shared of
// its sticky-key slot (keyorder.go).
func (p *Source) ingest(msg pulsar.Message) {
	id := msg.ID()
	part := max(int(id.PartitionIdx()), 0)
	p.grow(part)
	p.stats.messages.Add(1)
	p.stats.bytes.Add(int64(len(msg.Payload())))
	if msg.RedeliveryCount() > 0 {
		p.stats.redelivered.Add(1)
	}
	if len(p.cfg.KeyRanges) > 0 && !p.Holds([]byte(msg.Key())) {
		// Key_Shared routes a batch entry by one key: an entry holding
		// messages of several keys reaches one consumer whole, and a
		// rider's events would be split between dedup processes.
		p.fail(fmt.Errorf("pulsar: message %v is keyed %q, which key-ranges= do not hold: its producer batched messages of several keys into one entry (Key_Shared routes an entry by one key); publish with key-based batching (demandpipe publish -batch-by-key) or without batching", id, msg.Key()))
		return
	}
	if p.slotEnd == nil && p.end != nil && part < len(p.end) && p.end[part] != nil && reached(id, p.end[part]) {
		p.end[part] = nil // read to its end (a copy says so too)
		p.remaining--
	}
	var st *slotState // key_shared: the state of id's slot
	slot := int32(-1)
	copied := cmpID(id, p.last[part]) <= 0
	if p.order != nil {
		o := p.order[part]
		slot = o.slotOf(msg, id)
		if st = o.state(slot); st == nil {
			p.mu.Lock()
			o.chunks[slot/slotsPerChunk] = new(slotChunk)
			p.mu.Unlock()
			st = o.state(slot)
		}
		copied = st.taken.covers(id) || (o.floor != nil && cmpID(id, o.floor) <= 0)
	}
	if copied {
		p.stats.skipped.Add(1)
		p.mu.Lock()
		durable := cmpID(id, p.acked[part]) <= 0
		if st != nil {
			o := p.order[part]
			durable = st.acked.covers(id) || (o.floor != nil && cmpID(id, o.floor) <= 0)
		}
		p.mu.Unlock()
		if durable {
			// In a committed checkpoint already (its ack was lost): safe
			// to acknowledge again. A copy of a message handed since is
			// acknowledged through its first copy, once durable.
			if p.limit > 0 {
				p.copies = append(p.copies, id) // in one confirmed list, by Read
			} else {
				p.ackIDs([]pulsar.MessageID{id})
			}
			p.stats.acked.Add(1)
		}
		return
	}
	if p.endAt != nil && part < len(p.endAt) && past(id, p.endAt[part]) {
		return // published after the start of an until=end run: the next run's
	}
	if st != nil {
		st.taken = toSlotID(id)
		if p.slotEnd != nil {
			p.reachSlot(part, slot, st.taken)
		}
	}
	if cmpID(id, p.last[part]) > 0 {
		p.last[part] = id
	}
	p.queues[part].push(queued{msg: msg, key: mergeKey(msg), arrived: time.Now(), slot: slot})
	p.queued++
	if p.limit > 0 {
		p.maxBatch = max(p.maxBatch, int64(id.BatchSize()))
		p.hold(part)
	}
}

// hold counts a message of partition part taken and not acknowledged.
// At the broker's limit the broker delivers nothing more to this
// consumer until acknowledgements bring its count to half, which the
// checkpoints will not do: the run fails instead of stalling, saying why
// and what to do. The broker's count is the messages held here plus those
// it has sent that the client has not handed over yet: up to
// receiver-queue, the client's channel (10) and one batch entry past its
// permits. The source cannot see those, so it fails once held is within
// that margin of the limit (failAt): the broker may be blocked from there
// on, and if acknowledgements then bring its count down but not to half,
// it stays blocked with the count here short of the limit. At 80% of
// failAt it warns, once.
func (p *Source) hold(part int) {
	p.mu.Lock()
	p.held[part]++
	n, noAck := p.held[part], p.noAck
	p.mu.Unlock()
	at := p.failAt()
	switch {
	case n >= at:
		p.fail(p.unackedError(part, n, noAck))
	case !p.warned && n >= at*4/5:
		p.warned = true
		p.log.Warn("pulsar: messages not acknowledged near the broker's limit (max-unacked=): the run fails at fail_at, where the broker may stop delivering",
			"topic", p.partitionName(part), "subscription", p.cfg.Subscription, "unacked", n, "fail_at", at, "max_unacked", p.limit)
	}
}

// inClient is the most messages the broker may have sent to this
// consumer, per partition, that the client has not handed to the source
// yet: its receiver queue, its channel of 10, and the part of a batch
// entry past the permits (the broker sends an entry whole).
func (p *Source) inClient() int64 {
	return int64(p.cfg.ReceiverQueue) + 10 + max(p.maxBatch-1, 0)
}

// failAt is the count of messages held on one partition at which the run
// fails: max-unacked less what may still be in the client (at least 1).
func (p *Source) failAt() int64 { return max(p.limit-p.inClient(), 1) }

// partitionName names partition part of the topic (the topic itself if
// it has one partition).
func (p *Source) partitionName(part int) string {
	if len(p.last) > 1 {
		return fmt.Sprintf("%s-partition-%d", p.cfg.Topic, part)
	}
	return p.cfg.Topic
}

// unackedError is the failure at the broker's unacked limit.
func (p *Source) unackedError(part int, n int64, noAck bool) error {
	why := "and this source acknowledges a message only once a checkpoint past it is durable: the lateness plus about a minute of input stay unacknowledged (~150,000-200,000 messages at 100,000 events a minute)"
	fix := "raise the broker's maxUnackedMessagesPerConsumer above that for the namespace (pulsar-admin namespaces set-max-unacked-messages-per-consumer TENANT/NS -c N; and set-max-unacked-messages-per-subscription to N times the consumers) and set max-unacked=N to match; or spread the topic over more partitions (the limit counts each partition's consumer: 4 partitions hold 100,000 events a minute at the default 50,000); or consume with type=failover (no such limit; consumers share a partitioned topic by partition)"
	if noAck {
		why = "and this sink keeps no checkpoint, so no message is ever acknowledged"
		fix = "consume with type=failover (the default; no such limit), or into a sink that checkpoints (store:, cassandra://) with the broker's limit raised and max-unacked= set to match"
	}
	return fmt.Errorf("pulsar: %d messages of %s delivered and not acknowledged on the %s subscription %q, and up to %d more in the client (receiver-queue=%d): within reach of max-unacked=%d, where a broker stops delivering to a %s consumer (its maxUnackedMessagesPerConsumer, default 50,000) until acknowledgements bring the count down to half, %s; the run would stall there (a replay for ever, a live run closing its minutes early on the idle timeout). To run: %s",
		n, p.partitionName(part), p.cfg.Type, p.cfg.Subscription, p.inClient(), p.cfg.ReceiverQueue, p.limit, p.cfg.Type, why, fix)
}

// SetLogger sets where the source's warnings go (default slog.Default()).
func (p *Source) SetLogger(l *slog.Logger) { p.log = l }

// emit appends msg's line to buf and its boundary to the table.
func (p *Source) emit(q queued) {
	msg := q.msg
	p.queued--
	id := msg.ID()
	part := max(int(id.PartitionIdx()), 0)
	start := len(p.buf)
	p.buf = append(p.buf, msg.Payload()...)
	for i := start; i < len(p.buf); i++ {
		if c := p.buf[i]; c == '\n' || c == '\r' {
			p.buf[i] = ' '
		}
	}
	p.buf = append(p.buf, '\n')
	p.off += int64(len(p.buf) - start)
	p.stats.publishNanos.Store(msg.PublishTime().UnixNano())
	if k := mergeKey(msg); k > p.stats.lastKey.Load() {
		p.stats.lastKey.Store(k) // only Read's goroutine writes it
	}
	p.mu.Lock()
	if !p.noAck {
		p.table.push(boundary{end: p.off, part: int32(part), slot: q.slot, id: id})
		p.stats.unacked.Store(int64(p.table.size))
	}
	p.mu.Unlock()
}

// Cursor names stream position pos (a line boundary at or after the last
// position acknowledged) as the last message id of each partition before
// it, and on key_shared the last of each sticky-key slot (keyorder.go);
// the engine keeps it in its checkpoint.
func (p *Source) Cursor(pos int64) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	parts := make([]cursorPart, len(p.acked))
	for i, id := range p.acked {
		parts[i] = cursorPart{last: id, floor: id}
		if p.order != nil {
			parts[i].floor = p.order[i].floor
		}
	}
	var bySlot []map[int32]slotID // key_shared: the table's ids up to pos
	if p.order != nil {
		bySlot = make([]map[int32]slotID, len(parts))
	}
	for i := range p.table.size {
		x := p.table.at(i)
		if x.end > pos {
			break
		}
		c := &parts[x.part]
		if cmpID(x.id, c.last) > 0 {
			c.last = x.id
		}
		if p.order == nil {
			c.floor = c.last // in order: everything up to it handed
			continue
		}
		if bySlot[x.part] == nil {
			bySlot[x.part] = make(map[int32]slotID)
		}
		bySlot[x.part][x.slot] = toSlotID(x.id) // a slot's messages are in id order
	}
	for i, o := range p.order {
		for c, chunk := range o.chunks {
			if chunk == nil {
				continue
			}
			for j := range chunk {
				slot := int32(c*slotsPerChunk + j)
				id, ok := bySlot[i][slot]
				if !ok {
					id = chunk[j].acked
				}
				if !id.none() {
					parts[i].slots = append(parts[i].slots, cursorSlot{slot: slot, id: id})
				}
			}
		}
	}
	return encodeCursor(parts), nil
}

// ResumeAt continues the stream at pos (offsets count from there) after
// the messages cursor names: a message at or before the cursor's id of its
// partition (on key_shared: of its sticky-key slot, or the partition's
// floor; keyorder.go) was read by the run that wrote the checkpoint, and
// is dropped (counted as a redelivery) when the broker sends it again.
func (p *Source) ResumeAt(pos int64, cursor []byte) error {
	if p.started {
		return errors.New("pulsar: ResumeAt after the first Read (a bug in the caller: resume before running)")
	}
	parts, err := decodeCursor(cursor)
	if err != nil {
		return err
	}
	p.off = pos
	p.handed.Store(pos)
	p.grow(len(parts) - 1)
	p.mu.Lock()
	for i, c := range parts {
		p.last[i], p.acked[i] = c.last, c.last
		if p.order == nil {
			continue
		}
		o := p.order[i]
		o.floor = c.floor
		for _, sl := range c.slots {
			if o.chunks[sl.slot/slotsPerChunk] == nil {
				o.chunks[sl.slot/slotsPerChunk] = new(slotChunk)
			}
			st := o.state(sl.slot)
			st.taken, st.acked = sl.id, sl.id
		}
	}
	p.mu.Unlock()
	p.resumed = true
	return nil
}

// Ack acknowledges every message whose line ends at or before pos, once a
// checkpoint past them is durable (wired to the engine's Durable), and
// forgets them. The dead-letter producer is flushed first, so that no
// message is acknowledged before its dead-letter copy is stored; if that
// fails, nothing is acknowledged and the run fails (Read returns the error).
func (p *Source) Ack(pos int64) {
	if p.dl != nil {
		if err := p.dl.flush(); err != nil {
			p.fail(err)
			return
		}
	}
	var ids []pulsar.MessageID
	var release []int64 // limit > 0: per id, the held messages its confirmed ack releases
	p.mu.Lock()
	cumulative := p.cfg.cumulative()
	var lastOf []pulsar.MessageID
	popped := 0
	p.table.popThrough(pos, func(x boundary) {
		popped++
		if cmpID(x.id, p.acked[x.part]) > 0 {
			p.acked[x.part] = x.id
		}
		if p.order != nil {
			if st := p.order[x.part].state(x.slot); st != nil {
				st.acked = toSlotID(x.id) // a slot's messages are handed in id order
			}
		}
		if !cumulative {
			ids = append(ids, x.id)
			if p.limit > 0 {
				release = append(release, p.releases(x))
			}
			return
		}
		for len(lastOf) <= int(x.part) {
			lastOf = append(lastOf, nil)
		}
		lastOf[x.part] = x.id
	})
	p.stats.unacked.Store(int64(p.table.size))
	p.mu.Unlock()
	for _, id := range lastOf {
		if id != nil {
			ids = append(ids, id)
		}
	}
	if p.limit > 0 {
		p.ackConfirmed(ids, release)
	} else {
		p.ackIDs(ids)
	}
	p.stats.acked.Add(int64(popped))
}

// releases returns how many held messages of x's partition the broker
// stops counting once x's acknowledgement is confirmed: none while x's
// batch entry has messages not yet acknowledged (the broker counts an
// entry until it is acknowledged whole: Consumer.individualAckNormal
// counts a partial batch ack as nothing without batch-index
// acknowledgement), else every message of its entry popped so far.
// Called with p.mu held.
func (p *Source) releases(x boundary) int64 {
	p.pend[x.part]++
	if bi, bs := x.id.BatchIdx(), x.id.BatchSize(); bi >= 0 && bs > 1 && bi < bs-1 {
		return 0
	}
	n := p.pend[x.part]
	p.pend[x.part] = 0
	return n
}

// ackConfirmed acknowledges ids one by one (shared and key_shared under
// an unacked limit), in lists the broker answers (AckWithResponse), and
// only then stops counting the messages they release (release[i] for
// ids[i]; nil: none) against the limit. Acknowledgements grouped in the
// client or in flight would otherwise let the count run behind the
// broker's, and the broker could stop delivering with the count short of
// the limit: a stall this source exists to turn into an error.
func (p *Source) ackConfirmed(ids []pulsar.MessageID, release []int64) {
	const chunk = 10000 // ~150 KB of message ids in one ACK, far below a frame's 5 MB
	for len(ids) > 0 {
		n := min(len(ids), chunk)
		err := p.cons.AckIDList(ids[:n])
		var failed pulsar.AckError
		if err != nil && !errors.As(err, &failed) {
			failed = nil // every one failed
		}
		p.mu.Lock()
		for i, id := range ids[:n] {
			if err != nil && (failed == nil || failed[id] != nil) {
				// Not a loss: the broker redelivers the message, and a
				// resumed run drops it as at or before its cursor; the
				// broker still counts it, and so does held.
				p.stats.ackErrors.Add(1)
				continue
			}
			if release != nil {
				p.held[max(int(id.PartitionIdx()), 0)] -= release[i]
			}
		}
		p.mu.Unlock()
		ids = ids[n:]
		if release != nil {
			release = release[n:]
		}
	}
}

// ackIDs acknowledges ids: cumulatively where the subscription type
// allows (each id then stands for its partition up to it), else each.
func (p *Source) ackIDs(ids []pulsar.MessageID) {
	for _, id := range ids {
		var err error
		if p.cfg.cumulative() {
			err = p.cons.AckIDCumulative(id)
		} else {
			err = p.cons.AckID(id)
		}
		if err != nil {
			// Not a loss: the broker redelivers the message, and a resumed
			// run drops it as at or before its cursor.
			p.stats.ackErrors.Add(1)
		}
	}
}

// RejectsWriter returns the writer for the engine's rejects when
// dead-letter= is set (nil otherwise): each rejected line is published to
// the dead-letter topic, and written to tee too if tee is not nil.
func (p *Source) RejectsWriter(tee io.Writer) io.Writer {
	if p.dl == nil {
		return nil
	}
	p.dl.tee = tee
	return p.dl
}
