package pulsartest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"time"
)

// conn is one client connection: a reader goroutine that decodes frames
// and applies them to the broker state under Server.mu, and a writer
// goroutine that drains an outbound queue. The queue is unbounded in
// principle but bounded in practice: MESSAGE frames are only queued against
// consumer permits, and every other frame answers a request.
type conn struct {
	s  *Server
	nc net.Conn

	// Guarded by s.mu.
	connected bool
	closed    bool
	producers map[uint64]*producer
	consumers map[uint64]*consumer

	wmu     sync.Mutex
	wcond   *sync.Cond
	queue   [][]byte
	last    bool // the queue ends with the connection's last frame (sendLast)
	wclosed bool
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		s:         s,
		nc:        nc,
		producers: make(map[uint64]*producer),
		consumers: make(map[uint64]*consumer),
	}
	c.wcond = sync.NewCond(&c.wmu)
	return c
}

// send queues a complete frame; it never blocks, so it is safe under s.mu.
func (c *conn) send(frame []byte) {
	c.wmu.Lock()
	if !c.wclosed {
		c.queue = append(c.queue, frame)
		c.wcond.Signal()
	}
	c.wmu.Unlock()
}

func (c *conn) sendCmd(cmd []byte) { c.send(appendFrame(nil, cmd, nil)) }

// sendLast queues cmd as the connection's last frame: the writer closes
// the connection once it is written, so the client reads it before the
// close (a broker refusing a CONNECT does the same).
func (c *conn) sendLast(cmd []byte) {
	c.wmu.Lock()
	if !c.wclosed {
		c.queue = append(c.queue, appendFrame(nil, cmd, nil))
		c.last = true
		c.wcond.Signal()
	}
	c.wmu.Unlock()
}

func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	for {
		c.wmu.Lock()
		for len(c.queue) == 0 && !c.wclosed {
			c.wcond.Wait()
		}
		if c.wclosed {
			c.wmu.Unlock()
			return
		}
		q := net.Buffers(c.queue)
		last := c.last
		c.queue = nil
		c.wmu.Unlock()
		if last {
			c.nc.SetWriteDeadline(time.Now().Add(handshakeTimeout))
		}
		if _, err := q.WriteTo(c.nc); err != nil || last {
			c.s.mu.Lock()
			c.shutdownLocked()
			c.s.mu.Unlock()
			return
		}
	}
}

// shutdownLocked closes the connection and detaches its producers and
// consumers; their unacknowledged messages go back for redelivery. Called
// with s.mu held; idempotent.
func (c *conn) shutdownLocked() {
	if c.closed {
		return
	}
	c.closed = true
	delete(c.s.conns, c)
	for id, p := range c.producers {
		delete(c.producers, id)
		p.t.removeProducer(p)
	}
	for id, cons := range c.consumers {
		delete(c.consumers, id)
		cons.sub.removeConsumer(cons)
	}
	c.wmu.Lock()
	c.wclosed = true
	c.queue = nil
	c.wcond.Signal()
	c.wmu.Unlock()
	c.nc.Close()
}

func (c *conn) readLoop() {
	defer c.s.wg.Done()
	if err := c.handshakeTLS(); err != nil {
		c.s.logf("connection %s: TLS handshake: %v", c.nc.RemoteAddr(), err)
		c.s.mu.Lock()
		if !c.closed { // not a Stop or a fault
			c.s.stats.TLSFailures++
		}
		c.shutdownLocked()
		c.s.mu.Unlock()
		return
	}
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var buf []byte
	for {
		var f frame
		var err error
		f, buf, err = readFrame(r, buf, c.s.maxFrame)
		if err == nil {
			err = c.handle(f)
		}
		if errors.Is(err, errRejected) {
			c.s.logf("connection %s: %v", c.nc.RemoteAddr(), err)
			return // the writer closes the connection after the ERROR
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.s.logf("connection %s: %v", c.nc.RemoteAddr(), err)
			}
			c.s.mu.Lock()
			c.shutdownLocked()
			c.s.mu.Unlock()
			return
		}
	}
}

// handle applies one frame. An error closes the connection, as a broker
// does on a protocol violation.
func (c *conn) handle(f frame) error {
	t, body, err := decodeBase(f.cmd)
	if err != nil {
		return err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	if !c.connected && t != cmdConnect {
		return fmt.Errorf("command %d before CONNECT", t)
	}
	switch t {
	case cmdConnect:
		cmd, err := decodeConnect(body)
		if err != nil {
			return err
		}
		if !s.authenticatedLocked(cmd) {
			s.stats.Rejected++
			c.sendLast(encError(math.MaxUint64, errAuthentication, "Failed to authenticate"))
			return errRejected
		}
		v := min(cmd.protocolVersion, s.cfg.MaxProtocolVersion)
		c.connected = true
		c.sendCmd(encConnected(s.cfg.ServerVersion, v, int32(s.cfg.MaxMessageSize)))
	case cmdPing:
		c.sendCmd(encPong())
	case cmdPong, cmdAuthResponse:
	case cmdLookup:
		req, err := decodeTopicReq(body)
		if err != nil {
			return err
		}
		if _, err := normalizeTopic(req.topic); err != nil {
			c.sendCmd(encLookupError(req.requestID, errInvalidTopicName, err.Error()))
			return nil
		}
		c.sendCmd(encLookupResponse(req.requestID, s.urlLocked()))
	case cmdPartitionedMetadata:
		req, err := decodeTopicReq(body)
		if err != nil {
			return err
		}
		name, err := normalizeTopic(req.topic)
		if err != nil {
			c.sendCmd(encError(req.requestID, errInvalidTopicName, err.Error()))
			return nil
		}
		c.sendCmd(encPartitionedMetadataResponse(req.requestID, uint32(s.partitioned[name])))
	case cmdProducer:
		return c.handleProducer(body)
	case cmdSend:
		return c.handleSend(body, f)
	case cmdCloseProducer:
		req, err := decodeConsumerReq(body)
		if err != nil {
			return err
		}
		if p := c.producers[req.id]; p != nil {
			delete(c.producers, req.id)
			p.t.removeProducer(p)
			s.logf("connection %s: producer %d %q closed", c.nc.RemoteAddr(), req.id, p.name)
		}
		c.sendCmd(encSuccess(req.requestID))
	case cmdSubscribe:
		return c.handleSubscribe(body)
	case cmdFlow:
		cmd, err := decodeFlow(body)
		if err != nil {
			return err
		}
		if cons := c.consumers[cmd.consumerID]; cons != nil {
			cons.sub.flow(cons, cmd.permits)
		}
	case cmdAck:
		cmd, err := decodeAck(body)
		if err != nil {
			return err
		}
		cons := c.consumers[cmd.consumerID]
		if cons != nil {
			cons.sub.ack(cmd)
		}
		if cmd.haveRequestID {
			c.sendCmd(encAckResponse(cmd.consumerID, cmd.requestID))
		}
	case cmdRedeliverUnacked:
		cmd, err := decodeRedeliver(body)
		if err != nil {
			return err
		}
		if cons := c.consumers[cmd.consumerID]; cons != nil {
			cons.sub.redeliver(cons, cmd.ids)
		}
	case cmdSeek:
		return c.handleSeek(body)
	case cmdCloseConsumer:
		req, err := decodeConsumerReq(body)
		if err != nil {
			return err
		}
		if cons := c.consumers[req.id]; cons != nil {
			delete(c.consumers, req.id)
			cons.sub.removeConsumer(cons)
		}
		c.sendCmd(encSuccess(req.requestID))
	case cmdUnsubscribe:
		req, err := decodeConsumerReq(body)
		if err != nil {
			return err
		}
		cons := c.consumers[req.id]
		if cons == nil {
			c.sendCmd(encError(req.requestID, errConsumerNotFound, "consumer not found"))
			return nil
		}
		if len(cons.sub.consumers) > 1 {
			c.sendCmd(encError(req.requestID, errUnknown, "subscription has other connected consumers"))
			return nil
		}
		delete(c.consumers, req.id)
		cons.sub.removeConsumer(cons)
		delete(cons.sub.t.subs, cons.sub.name)
		cons.sub.t.lastActive = time.Now() // as PersistentTopic.unsubscribe does
		c.sendCmd(encSuccess(req.requestID))
	case cmdGetLastMessageID:
		req, err := decodeConsumerReq(body)
		if err != nil {
			return err
		}
		cons := c.consumers[req.id]
		if cons == nil {
			c.sendCmd(encError(req.requestID, errConsumerNotFound, "consumer not found"))
			return nil
		}
		t := cons.sub.t
		entry, batchIndex := int64(len(t.entries))-1, int32(-1)
		if entry >= 0 && t.entries[entry].batched {
			batchIndex = t.entries[entry].numMessages - 1
		}
		c.sendCmd(encGetLastMessageIDResponse(req.requestID, t.ledger, entry, batchIndex, t.ledger, cons.sub.markDelete))
	case cmdGetTopicsOfNamespace:
		req, err := decodeNamespaceReq(body)
		if err != nil {
			return err
		}
		c.sendCmd(encTopicsOfNamespace(req.requestID, s.topicsInNamespaceLocked(req.namespace)))
	case cmdConsumerStats, cmdGetSchema, cmdGetOrCreateSchema:
		id, err := decodeRequestID(body)
		if err != nil {
			return err
		}
		c.sendCmd(encError(id, errNotAllowed, fmt.Sprintf("pulsartest: command %d not supported", t)))
	default:
		s.logf("connection %s: ignoring command type %d", c.nc.RemoteAddr(), t)
	}
	return nil
}

func (c *conn) handleProducer(body []byte) error {
	s := c.s
	cmd, err := decodeProducer(body)
	if err != nil {
		return err
	}
	name, ok := c.partitionTopic(cmd.requestID, cmd.topic, "produce")
	if !ok {
		return nil
	}
	if old := c.producers[cmd.producerID]; old != nil {
		// The same producer id again on this connection (a client retrying
		// a CommandProducer whose answer it missed): the broker's
		// ServerCnx.handleProducer answers success for the producer it
		// already has ("Producer with id is already present on the
		// connection") and changes nothing.
		c.sendCmd(encProducerSuccess(cmd.requestID, old.name))
		return nil
	}
	pname := cmd.producerName
	if pname == "" {
		s.nextName++
		pname = fmt.Sprintf("pulsartest-%d", s.nextName)
	}
	t := s.topicLocked(name)
	if t.names[pname] != nil {
		// Producer names are unique per topic while connected: the broker
		// refuses a second one (AbstractTopic#internalAddProducer /
		// tryOverwriteOldProducer, ProducerBusyException, answered as
		// ServerError ProducerBusy). The name is free again once the first
		// producer closes or its connection drops.
		s.logf("connection %s: producer %d %q on %s refused: ProducerBusy", c.nc.RemoteAddr(), cmd.producerID, pname, name)
		c.sendCmd(encError(cmd.requestID, errProducerBusy,
			fmt.Sprintf("Producer with name '%s' is already connected to topic", pname)))
		return nil
	}
	p := &producer{id: cmd.producerID, name: pname, t: t}
	t.addProducer(p)
	c.producers[cmd.producerID] = p
	s.logf("connection %s: producer %d %q on %s", c.nc.RemoteAddr(), cmd.producerID, pname, name)
	c.sendCmd(encProducerSuccess(cmd.requestID, pname))
	return nil
}

func (c *conn) handleSend(body []byte, f frame) error {
	cmd, err := decodeSend(body)
	if err != nil {
		return err
	}
	p := c.producers[cmd.producerID]
	switch {
	case p == nil:
		// A SEND for a producer the connection does not have (never
		// created, or closed by the client: a batch the client flushed
		// after its CLOSE_PRODUCER) closes the connection, as the broker
		// does (ServerCnx.handleSend: "Received message, but the producer
		// is not ready : {id}. Closing the connection."; only producers
		// the broker itself closed are ignored for a keepalive interval,
		// recentlyClosedProducers). It was a SEND_ERROR here, which
		// pulsar-client-go also answers by closing the connection.
		return fmt.Errorf("received message, but the producer is not ready : %d. Closing the connection", cmd.producerID)
	case !f.hasPayload:
		return errors.New("SEND without payload")
	case f.badChecksum:
		c.sendCmd(encSendError(cmd.producerID, cmd.sequenceID, errChecksum, "checksum mismatch"))
		return nil
	}
	meta, err := decodeMsgMeta(f.meta)
	if err != nil {
		c.sendCmd(encSendError(cmd.producerID, cmd.sequenceID, errUnknown, "bad message metadata"))
		return nil
	}
	entryID := p.t.append(meta, cmd.numMessages, f.stored)
	c.s.stats.MessagesIn[p.t.name] += int64(p.t.entries[entryID].numMessages)
	c.s.stats.EntriesIn++
	c.sendCmd(encSendReceipt(cmd.producerID, cmd.sequenceID, cmd.highestSequenceID, p.t.ledger, entryID))
	for _, sub := range p.t.subs {
		sub.dispatch()
	}
	return nil
}

func (c *conn) handleSubscribe(body []byte) error {
	s := c.s
	cmd, err := decodeSubscribe(body)
	if err != nil {
		return err
	}
	name, ok := c.partitionTopic(cmd.requestID, cmd.topic, "subscribe")
	if !ok {
		return nil
	}
	if old := c.consumers[cmd.consumerID]; old != nil {
		// A re-subscribe on the same connection (after CLOSE_CONSUMER from
		// the broker) replaces the old registration.
		delete(c.consumers, cmd.consumerID)
		old.sub.removeConsumer(old)
	}
	t := s.topicLocked(name)
	sub := t.subs[cmd.subscription]
	if sub == nil {
		sub = newSubscription(t, cmd.subscription, cmd.subType, cmd.durable)
		switch {
		case !cmd.durable && cmd.startMessageID != nil:
			sub.resetTo(t.positionOf(*cmd.startMessageID))
		case cmd.initialEarliest:
			sub.resetTo(0)
		default:
			sub.resetTo(int64(len(t.entries)))
		}
		t.subs[cmd.subscription] = sub
	}
	cons := &consumer{id: cmd.consumerID, name: cmd.consumerName, c: c, sub: sub, pending: make(map[int64]struct{})}
	if err := sub.addConsumer(cons, cmd); err != nil {
		if len(sub.consumers) == 0 && !sub.durable {
			delete(t.subs, sub.name)
		}
		code := errConsumerBusy
		if errors.Is(err, errAssign) {
			code = errConsumerAssign
		}
		c.sendCmd(encError(cmd.requestID, code, err.Error()))
		return nil
	}
	c.consumers[cmd.consumerID] = cons
	c.sendCmd(encSuccess(cmd.requestID))
	sub.activeChanged()
	sub.dispatch()
	return nil
}

func (c *conn) handleSeek(body []byte) error {
	cmd, err := decodeSeek(body)
	if err != nil {
		return err
	}
	cons := c.consumers[cmd.consumerID]
	if cons == nil {
		c.sendCmd(encError(cmd.requestID, errConsumerNotFound, "consumer not found"))
		return nil
	}
	sub := cons.sub
	var pos int64
	switch {
	case cmd.id != nil:
		pos = sub.t.positionOf(*cmd.id)
	case cmd.haveTime:
		pos = sub.t.positionAtTime(cmd.publishTime)
	default:
		c.sendCmd(encError(cmd.requestID, errNotAllowed, "seek without message id or time"))
		return nil
	}
	// As the real broker does: reset the cursor, answer, then disconnect
	// every consumer of the subscription so that each reconnects (and
	// re-sends FLOW) from the new position with an empty receiver queue.
	consumers := append([]*consumer(nil), sub.consumers...)
	for _, cc := range consumers {
		sub.removeConsumer(cc)
	}
	sub.resetTo(pos)
	c.sendCmd(encSuccess(cmd.requestID))
	for _, cc := range consumers {
		delete(cc.c.consumers, cc.id)
		cc.c.sendCmd(encCloseConsumer(cc.id, 0))
	}
	return nil
}

// topicsInNamespaceLocked lists the persistent topics of "tenant/ns",
// partitioned topics by their partition names, as the broker does.
func (s *Server) topicsInNamespaceLocked(ns string) []string {
	prefix := "persistent://" + ns + "/"
	var out []string
	for name := range s.topics {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out
}

// partitionTopic normalises the topic of a PRODUCER or SUBSCRIBE; an invalid
// name, or a partitioned topic (clients address its partitions), is
// answered with an error and ok false.
func (c *conn) partitionTopic(requestID uint64, topic, verb string) (string, bool) {
	name, err := normalizeTopic(topic)
	if err != nil {
		c.sendCmd(encError(requestID, errInvalidTopicName, err.Error()))
		return "", false
	}
	if n := c.s.partitioned[name]; n > 0 {
		c.sendCmd(encError(requestID, errNotAllowed, "topic is partitioned: "+verb+" to its partitions"))
		return "", false
	}
	return name, true
}
