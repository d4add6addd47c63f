package source

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

	plog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/demandpipe/demandpipe/internal/keyshared"
	"github.com/prometheus/client_golang/prometheus"
)

// Pulsar is a live source over a Pulsar subscription: one message is one
// NDJSON line. It acknowledges a message only when told that a checkpoint
// past it is durable (Ack, wired to the engine's Durable), names positions
// in message ids for checkpoints (Cursor) and continues after them on a
// restart (ResumeAt); source/RECOVERY.md is the argument that the rows of
// a restarted run equal an uninterrupted one's.
//
// Raw '\n' and '\r' bytes in a payload become spaces: they cannot occur
// inside a valid JSON text's strings, so a valid event is unchanged and an
// invalid one stays one (rejected) line.
type Pulsar struct {
	cfg    PulsarConfig
	client pulsar.Client
	cons   pulsar.Consumer
	msgs   <-chan pulsar.ConsumerMessage
	dl     *deadLetter // nil without dead-letter=
	// refused: credentials or TLS refused on a reconnection end the run
	// (Read returns the error) rather than leave it retrying unseen.
	refused *refusal

	// Read's goroutine only.
	buf       []byte // lines not yet handed out: buf[head:]
	head      int
	off       int64              // stream offset of the end of buf
	last      []pulsar.MessageID // per partition: the last message queued (or the resume cursor's)
	queues    []partQueue        // per partition: messages waiting for the merge
	queued    int                // messages in queues
	timer     *time.Timer        // the merge's wait
	endAt     []pulsar.MessageID // until=end: per partition the last id at start
	end       []pulsar.MessageID // until=end: the same, nil once reached
	remaining int                // until=end: partitions not yet reached
	started   bool
	resumed   bool

	handed atomic.Int64 // stream offset handed to the engine (Position)

	mu    sync.Mutex
	table boundaries
	acked []pulsar.MessageID // per partition: the last id acknowledged or resumed at
	noAck bool

	stop     chan struct{}
	stopOnce sync.Once
	failed   chan struct{}
	failOnce sync.Once
	failErr  error

	stats pulsarStats
}

// pulsarStats are the source's counters (RegisterMetrics exports them).
type pulsarStats struct {
	messages, bytes  atomic.Int64
	redelivered      atomic.Int64 // redelivery count > 0
	skipped          atomic.Int64 // dropped: already handed, or at or before the resume cursor
	acked, ackErrors atomic.Int64
	deadLettered     atomic.Int64
	publishNanos     atomic.Int64 // publish time of the last message handed
	unacked          atomic.Int64
	reconnects       atomic.Int64 // the client's consumer reconnections
	lastKey          atomic.Int64 // largest merge key (unix ms) of the messages handed
}

// OpenPulsar parses a pulsar:// spec and subscribes.
func OpenPulsar(spec string) (*Pulsar, error) {
	cfg, err := ParsePulsarURL(spec)
	if err != nil {
		return nil, err
	}
	return NewPulsar(cfg)
}

// NewPulsarClient connects a client with cfg's URL, timeouts and
// credentials. The client's own log lines at warn level and up go to
// stderr.
func NewPulsarClient(cfg PulsarConfig) (pulsar.Client, error) { return newPulsarClient(cfg, nil, nil) }

// newPulsarClient connects a client whose warnings go to refused too (nil:
// not watched).
func newPulsarClient(cfg PulsarConfig, reconnects *atomic.Int64, refused *refusal) (pulsar.Client, error) {
	if err := cfg.ValidateConnection(); err != nil {
		return nil, err
	}
	opts := pulsar.ClientOptions{
		URL:                        cfg.ServiceURL,
		ConnectionTimeout:          cfg.ConnectTimeout,
		OperationTimeout:           cfg.OperationTimeout,
		TLSTrustCertsFilePath:      cfg.TLSCAFile,
		TLSAllowInsecureConnection: cfg.TLSAllowInsecure,
		Logger:                     plog.NewLoggerWithSlog(slog.New(newClientLog(reconnects, refused))),
		MetricsRegisterer:          prometheus.NewRegistry(), // the client's own metrics stay private
	}
	switch {
	case cfg.Token != "":
		opts.Authentication = pulsar.NewAuthenticationToken(cfg.Token)
	case cfg.TokenFile != "":
		opts.Authentication = pulsar.NewAuthenticationTokenFromFile(cfg.TokenFile)
	}
	c, err := pulsar.NewClient(opts)
	if err != nil {
		if cfg.TokenFile != "" { // the client reads the token here first
			return nil, fmt.Errorf("pulsar %s: token-file=%s: %w", cfg.ServiceURL, cfg.TokenFile, err)
		}
		return nil, fmt.Errorf("pulsar %s: %w", cfg.ServiceURL, err)
	}
	return c, nil
}

// Holds reports whether this source receives the messages keyed key: true
// unless it owns sticky key ranges that do not hold it.
func (p *Pulsar) Holds(key []byte) bool {
	return len(p.cfg.KeyRanges) == 0 || keyshared.Holds(p.cfg.KeyRanges, key)
}

// NewPulsar subscribes with cfg. It fails within the operation timeout
// when the broker cannot be reached, and at once when the broker refuses
// the token or TLS fails (pulsar_auth.go).
func NewPulsar(cfg PulsarConfig) (*Pulsar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pulsar{cfg: cfg, stop: make(chan struct{}), failed: make(chan struct{})}
	refused := newRefusal(cfg)
	client, err := newPulsarClient(cfg, &p.stats.reconnects, refused)
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
	if len(cfg.KeyRanges) > 0 {
		if opts.KeySharedPolicy, err = pulsar.NewKeySharedPolicySticky(cfg.KeyRanges); err != nil {
			client.Close()
			return nil, fmt.Errorf("pulsar: key-ranges: %w", err)
		}
	}
	cons, owned, err := subscribe(client, opts, refused)
	if err != nil {
		if owned {
			client.Close()
		}
		if err == refused.refused() {
			return nil, err
		}
		hint := "is the broker up and the topic's namespace there?"
		if strings.Contains(err.Error(), "ConsumerBusy") {
			hint = "another consumer holds this exclusive subscription: a run still going, or one the broker has not yet noticed is gone (wait for its keepalive); type=failover lets a new consumer stand by instead"
		} else if w := refused.lastWarning(); w != "" {
			hint += " the client's last warning: " + w
		}
		return nil, fmt.Errorf("pulsar: subscribe %s to %s at %s: %w (%s)", cfg.Subscription, cfg.Topic, cfg.ServiceURL, err, hint)
	}
	p.client, p.cons, p.msgs, p.refused = client, cons, cons.Chan(), refused
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
func (p *Pulsar) Live() bool { return true }

// Position is the stream offset handed to the engine; the size is unknown.
func (p *Pulsar) Position() (int64, int64) { return p.handed.Load(), -1 }

// EventClock is the stream's own time for a replay (until=end): the
// largest event time (else publish time) of the messages handed (the last
// one may be a late event), so that a broker
// that stalls longer than -windows.idle-timeout does not move a replay's
// event time as a quiet live stream's must (minutes closed early, events
// late); the wall clock before the first message and on a live stream.
func (p *Pulsar) EventClock() time.Time {
	if p.cfg.UntilEnd {
		if k := p.stats.lastKey.Load(); k != 0 {
			return time.UnixMilli(k)
		}
	}
	return time.Now()
}

// Identity names topic and subscription for checkpoints.
func (p *Pulsar) Identity() string { return p.cfg.Identity() }

// Config returns the source's configuration.
func (p *Pulsar) Config() PulsarConfig { return p.cfg }

// Stop ends the stream after the lines already taken from the consumer:
// Read returns io.EOF. (A live run is stopped by cancelling the engine
// instead: see RECOVERY.md.)
func (p *Pulsar) Stop() { p.stopOnce.Do(func() { close(p.stop) }) }

// Close keeps the subscription: it flushes and closes the dead-letter
// producer, then closes the consumer and the client. Unacknowledged
// messages are redelivered to the subscription's next consumer.
//
// After the broker refused a reconnection (Read returned the refusal), the
// client is still retrying it, and its Close would wait for that until the
// operation timeout: then Close lets the closing finish in the background
// and returns at once (unacknowledged messages, dead letters not yet
// flushed included, are redelivered to the next run).
func (p *Pulsar) Close() error {
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
	if p.refused.refused() != nil {
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
func (p *Pulsar) NoAcks() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noAck = true
}

func (p *Pulsar) fail(err error) {
	p.failOnce.Do(func() {
		p.failErr = err
		close(p.failed)
	})
}

// Read hands out whole lines, in merge order (pulsar_merge.go): it waits
// for input that can be handed out, then takes whatever else can, up to
// len(b).
func (p *Pulsar) Read(b []byte) (int, error) {
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
		case <-p.refused.done:
			return 0, p.refused.err
		default:
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
		case <-p.refused.done:
			return 0, p.refused.err
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
func (p *Pulsar) drain() {
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
func (p *Pulsar) start() error {
	if !p.cfg.UntilEnd {
		return nil
	}
	ids, err := p.cons.GetLastMessageIDs()
	if err != nil {
		return fmt.Errorf("pulsar: last message ids of %s (until=end): %w (is the broker up? operation-timeout= waits longer)", p.cfg.Topic, err)
	}
	if !p.resumed {
		if err := p.cons.SeekByTime(time.Unix(0, 0)); err != nil {
			return fmt.Errorf("pulsar: rewinding %s to the topic's start for until=end: %w (is the broker up? a new subscription= name starts at the beginning too)", p.cfg.Subscription, err)
		}
	}
	ends := make([]pulsar.MessageID, len(ids))
	for i, t := range ids {
		ends[i] = t
	}
	if len(p.cfg.KeyRanges) > 0 {
		// Sticky key ranges: the last message of a partition may be
		// another consumer's, so this one ends at the last of its own.
		if ends, err = p.ownEnds(ids); err != nil {
			return err
		}
	}
	p.end = make([]pulsar.MessageID, len(ends))
	p.endAt = make([]pulsar.MessageID, len(ends))
	p.grow(len(ends) - 1)
	for i, t := range ends {
		p.endAt[i] = t
		if !reached(p.last[i], t) {
			p.end[i] = t
			p.remaining++
		}
	}
	return nil
}

// ownEnds returns, per partition, the last message up to ends[i] whose key
// this consumer's ranges hold (an empty id where none is), read with a
// reader from where the consumer starts: an until=end run with key-ranges
// reads the keys of its part of the topic twice.
func (p *Pulsar) ownEnds(ends []pulsar.TopicMessageID) ([]pulsar.MessageID, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.OperationTimeout)
	defer cancel()
	out := make([]pulsar.MessageID, len(ends))
	for i, end := range ends {
		out[i] = nil // none of its own: an empty partition for it
		if reached(p.last[i], end) {
			continue // nothing after where it starts
		}
		start := pulsar.EarliestMessageID()
		if p.last[i] != nil {
			start = p.last[i]
		}
		r, err := p.client.CreateReader(pulsar.ReaderOptions{Topic: end.Topic(), StartMessageID: start})
		if err != nil {
			return nil, fmt.Errorf("pulsar: reading the keys of %s (until=end with key-ranges): %w", end.Topic(), err)
		}
		for r.HasNext() {
			m, err := r.Next(ctx)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("pulsar: reading the keys of %s (until=end with key-ranges): %w", end.Topic(), err)
			}
			if past(m.ID(), end) {
				break
			}
			if p.Holds([]byte(m.Key())) {
				out[i] = m.ID()
			}
			if reached(m.ID(), end) {
				break
			}
		}
		r.Close()
	}
	return out, nil
}

// grow makes room for partition part in the per-partition tables.
func (p *Pulsar) grow(part int) {
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
	}
	p.mu.Unlock()
}

// ingest queues msg in its partition's queue for the merge, unless it was
// queued before (a redelivery after a reconnect), is at or before the
// resume cursor, or (until=end) is past the partition's end.
func (p *Pulsar) ingest(msg pulsar.Message) {
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
	if p.end != nil && part < len(p.end) && p.end[part] != nil && reached(id, p.end[part]) {
		p.end[part] = nil // read to its end (a copy says so too)
		p.remaining--
	}
	if cmpID(id, p.last[part]) <= 0 {
		p.stats.skipped.Add(1)
		p.mu.Lock()
		durable := cmpID(id, p.acked[part]) <= 0
		p.mu.Unlock()
		if durable {
			// In a committed checkpoint already (its ack was lost): safe
			// to acknowledge again. A copy of a message handed since is
			// acknowledged through its first copy, once durable.
			p.ackIDs([]pulsar.MessageID{id})
			p.stats.acked.Add(1)
		}
		return
	}
	if p.endAt != nil && part < len(p.endAt) && past(id, p.endAt[part]) {
		return // published after the start of an until=end run: the next run's
	}
	p.last[part] = id
	p.queues[part].push(queued{msg: msg, key: mergeKey(msg), arrived: time.Now()})
	p.queued++
}

// emit appends msg's line to buf and its boundary to the table.
func (p *Pulsar) emit(msg pulsar.Message) {
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
		p.table.push(boundary{end: p.off, part: int32(part), id: id})
		p.stats.unacked.Store(int64(p.table.size))
	}
	p.mu.Unlock()
}

// Cursor names stream position pos (a line boundary at or after the last
// position acknowledged) as the last message id of each partition before
// it; the engine keeps it in its checkpoint.
func (p *Pulsar) Cursor(pos int64) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := append([]pulsar.MessageID(nil), p.acked...)
	for i := range p.table.size {
		x := p.table.at(i)
		if x.end > pos {
			break
		}
		for len(ids) <= int(x.part) {
			ids = append(ids, nil)
		}
		ids[x.part] = x.id
	}
	return encodeCursor(ids), nil
}

// ResumeAt continues the stream at pos (offsets count from there) after
// the messages cursor names: a message at or before the cursor's id of its
// partition was read by the run that wrote the checkpoint, and is dropped
// (counted as a redelivery) when the broker sends it again.
func (p *Pulsar) ResumeAt(pos int64, cursor []byte) error {
	if p.started {
		return errors.New("pulsar: ResumeAt after the first Read (a bug in the caller: resume before running)")
	}
	ids, err := decodeCursor(cursor)
	if err != nil {
		return err
	}
	p.off = pos
	p.handed.Store(pos)
	p.grow(len(ids) - 1)
	copy(p.last, ids)
	p.mu.Lock()
	copy(p.acked, ids)
	p.mu.Unlock()
	p.resumed = true
	return nil
}

// Ack acknowledges every message whose line ends at or before pos, once a
// checkpoint past them is durable (wired to the engine's Durable), and
// forgets them. The dead-letter producer is flushed first, so that no
// message is acknowledged before its dead-letter copy is stored; if that
// fails, nothing is acknowledged and the run fails (Read returns the error).
func (p *Pulsar) Ack(pos int64) {
	if p.dl != nil {
		if err := p.dl.flush(); err != nil {
			p.fail(err)
			return
		}
	}
	var ids []pulsar.MessageID
	p.mu.Lock()
	cumulative := p.cfg.cumulative()
	var lastOf []pulsar.MessageID
	popped := 0
	p.table.popThrough(pos, func(x boundary) {
		popped++
		p.acked[x.part] = x.id
		if !cumulative {
			ids = append(ids, x.id)
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
	p.ackIDs(ids)
	p.stats.acked.Add(int64(popped))
}

// ackIDs acknowledges ids: cumulatively where the subscription type
// allows (each id then stands for its partition up to it), else each.
func (p *Pulsar) ackIDs(ids []pulsar.MessageID) {
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
func (p *Pulsar) RejectsWriter(tee io.Writer) io.Writer {
	if p.dl == nil {
		return nil
	}
	p.dl.tee = tee
	return p.dl
}
