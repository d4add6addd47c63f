package cqltest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/datastax/go-cassandra-native-protocol/frame"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// A conn serves one client connection with three kinds of goroutine: the reader
// (serve) decodes frames and answers the handshake inline; every QUERY,
// EXECUTE, BATCH and PREPARE runs in its own goroutine, so pipelined requests
// are served concurrently and a service time is slept in parallel; the writer
// encodes responses in completion order, each with its request's stream id,
// and flushes when it has nothing more queued.
//
// Shutdown: close() closes done and the socket; the reader then fails, waits for
// its request goroutines (which give up their sleeps and sends on done) and for
// the writer, and only then tells the server it is gone.
type conn struct {
	s    *Server
	node *node // the node whose listener accepted it
	nc   net.Conn

	out  chan outFrame
	done chan struct{}
	once sync.Once
	reqs sync.WaitGroup

	// Set by the reader before the first request goroutine starts, read-only after.
	version primitive.ProtocolVersion
	plain   frame.RawCodec
	zcodec  frame.RawCodec // nil until STARTUP negotiated compression (v3, v4)
	zbody   bodyCodec      // zcodec's body codec (the BATCH fast path's)
	seg     segmentCodec   // v5: the segments' codec (segment.go)
	started bool

	keyspace atomic.Pointer[string] // USE
	// schemaEvents: the client REGISTERed for SCHEMA_CHANGE (pushEvent).
	schemaEvents atomic.Bool
}

type outFrame struct {
	f      *frame.Frame
	raw    []byte // pre-encoded frame (version rejections)
	close  bool   // close the connection after writing this frame
	modern bool   // v5 after STARTUP: sent in segments (segment.go)
}

// modern reports whether the connection frames in v5 segments: v5, once
// STARTUP has been answered. Read on the reader goroutine, or by request
// goroutines (started after it is final).
func (c *conn) modern() bool { return c.started && c.version >= primitive.ProtocolVersion5 }

func newConn(s *Server, n *node, nc net.Conn) *conn {
	return &conn{s: s, node: n, nc: nc, out: make(chan outFrame, 256), done: make(chan struct{}), plain: frame.NewRawCodec()}
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

func (c *conn) currentKeyspace() string {
	if p := c.keyspace.Load(); p != nil {
		return *p
	}
	return ""
}

func (c *conn) setKeyspace(ks string) { c.keyspace.Store(&ks) }

// send queues a response; it gives up when the connection is closing.
func (c *conn) send(o outFrame) {
	select {
	case c.out <- o:
	case <-c.done:
	}
}

func (c *conn) serve() {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop()
	if err != nil && err != io.EOF {
		c.s.logf("cqltest: connection %s: %v", c.nc.RemoteAddr(), err)
	}
	c.close()
	c.reqs.Wait()
	<-writerDone
	c.s.forget(c)
	c.s.wg.Done()
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (cw countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n.Add(int64(n))
	return n, err
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (cr countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.n.Add(int64(n))
	return n, err
}

func (c *conn) writeLoop() {
	bw := bufio.NewWriterSize(countingWriter{c.nc, &c.s.stats.bytesOut}, 64<<10)
	// v5: envelopes gather in payload until it would pass a segment's
	// size, or nothing more is queued, then go out as one self-contained
	// segment; an envelope larger than a segment goes alone, in a run of
	// segments (Cassandra's Flusher packs its responses the same way).
	var (
		env     bytes.Buffer
		payload []byte
		segs    []byte
	)
	flushSegment := func() error {
		if len(payload) == 0 {
			return nil
		}
		segs = c.seg.appendSegment(segs[:0], payload, true)
		payload = payload[:0]
		c.s.stats.segmentsOut.Add(1)
		_, err := bw.Write(segs)
		return err
	}
	for {
		var o outFrame
		select {
		case o = <-c.out:
		case <-c.done:
			return
		}
		var err error
		switch {
		case o.modern:
			env.Reset()
			if err = c.plain.EncodeFrame(o.f, &env); err != nil {
				break
			}
			if len(payload)+env.Len() > maxSegmentPayload {
				err = flushSegment()
			}
			if err == nil && env.Len() > maxSegmentPayload {
				segs = c.seg.appendFrameSegments(segs[:0], env.Bytes())
				c.s.stats.segmentsOut.Add(int64((env.Len() + maxSegmentPayload - 1) / maxSegmentPayload))
				_, err = bw.Write(segs)
				// Keep no large result's buffers for the connection's life.
				segs, env = nil, bytes.Buffer{}
			} else if err == nil {
				payload = append(payload, env.Bytes()...)
			}
		case o.raw != nil:
			if err = flushSegment(); err == nil {
				_, err = bw.Write(o.raw)
			}
		case o.f.Header.Flags.Contains(primitive.HeaderFlagCompressed):
			if err = flushSegment(); err == nil {
				err = c.zcodec.EncodeFrame(o.f, bw)
			}
		default:
			if err = flushSegment(); err == nil {
				err = c.plain.EncodeFrame(o.f, bw)
			}
		}
		if err == nil && (len(c.out) == 0 || o.close) {
			if err = flushSegment(); err == nil {
				err = bw.Flush()
			}
		}
		if err != nil || o.close {
			if err != nil {
				c.s.logf("cqltest: write to %s: %v", c.nc.RemoteAddr(), err)
			}
			c.close()
			return
		}
	}
}

// Supported protocol versions: v3, v4 and v5, as Cassandra 4.0 and 5.0
// (transport/ProtocolVersion.java: SUPPORTED_VERSIONS V3, V4, V5 and the
// beta V6, which the double does not speak: a v6 request gets the
// PROTOCOL_ERROR that makes drivers retry with v5).
const (
	minVersion = primitive.ProtocolVersion3
	maxVersion = primitive.ProtocolVersion5
)

func (c *conn) readLoop() error {
	br := bufio.NewReaderSize(countingReader{c.nc, &c.s.stats.bytesIn}, 64<<10)
	var hdr [9]byte
	// Envelopes, until a v5 STARTUP is answered (dispatched on this
	// goroutine: the next iteration sees it); then segments.
	for !c.modern() {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return err
		}
		h, ok := c.header(hdr[:])
		if !ok {
			<-c.done // the writer closes after sending the answer
			return nil
		}
		body := make([]byte, h.BodyLength)
		if _, err := io.ReadFull(br, body); err != nil {
			return err
		}
		if !c.request(h, body) {
			return nil
		}
	}
	return c.readSegments(br)
}

// header validates a request envelope's 9-byte header. ok=false: an error
// is on its way and the connection closes after it.
func (c *conn) header(hdr []byte) (h *frame.Header, ok bool) {
	version := primitive.ProtocolVersion(hdr[0] & 0x7f)
	stream := int16(binary.BigEndian.Uint16(hdr[2:]))
	if !c.modern() && (version < minVersion || version > maxVersion || hdr[0]&0x80 != 0) {
		c.rejectVersion(version, hdr)
		return nil, false
	}
	if c.version != 0 && (version != c.version || hdr[0]&0x80 != 0) {
		c.protocolError(stream, "Invalid message version. Got "+version.String()+" but previous messages on this connection had version "+c.version.String(), true)
		return nil, false
	}
	length := int32(binary.BigEndian.Uint32(hdr[5:]))
	if length < 0 || int(length) > c.s.cfg.MaxFrameBytes {
		c.protocolError(stream, "Request is too big: length "+itoa(int(length))+" exceeds maximum allowed length "+itoa(c.s.cfg.MaxFrameBytes), true)
		return nil, false
	}
	if c.version == 0 {
		c.version = version
		c.s.stats.update(func(s *Stats) { s.ProtocolVersions[int(version)]++ })
	}
	h = &frame.Header{Version: version, Flags: primitive.HeaderFlag(hdr[1]), StreamId: stream, OpCode: primitive.OpCode(hdr[4]), BodyLength: length}
	if c.modern() {
		// v5 envelopes are never compressed themselves: the segment is
		// (Cassandra's v5 pipeline has no envelope decompressor).
		h.Flags &^= primitive.HeaderFlagCompressed
	}
	return h, true
}

// request decodes one request envelope's body (owned by the request from
// here on) and dispatches it; false: the connection is closing.
func (c *conn) request(h *frame.Header, body []byte) bool {
	if m := c.fastBatch(h, body); m != nil {
		c.dispatch(h, m)
		return true
	}
	codec := c.plain
	if h.Flags.Contains(primitive.HeaderFlagCompressed) {
		if c.zcodec == nil {
			c.protocolError(h.StreamId, "Received a compressed frame but no compression was negotiated", true)
			return false
		}
		codec = c.zcodec
	}
	b, err := codec.DecodeBody(h, bytes.NewReader(body))
	if err != nil {
		c.protocolError(h.StreamId, "cannot decode request: "+err.Error(), false)
		return true
	}
	c.dispatch(h, b.Message)
	return true
}

// readSegments serves a v5 connection after STARTUP: segments of whole
// envelopes, or runs of segments carrying one large envelope.
func (c *conn) readSegments(br *bufio.Reader) error {
	var (
		large []byte // a large envelope being assembled
		want  int    // its length, header included
	)
	fail := func(msg string) error {
		c.protocolError(0, msg, true)
		<-c.done
		return nil
	}
	for {
		p, self, err := c.seg.read(br)
		var cs *corruptSegment
		var bs *badSegment
		switch {
		case errors.As(err, &cs):
			return fail(c.nc.RemoteAddr().String() + " " + cs.Error())
		case errors.As(err, &bs):
			return fail(bs.msg)
		case err != nil:
			return err
		}
		c.s.stats.segmentsIn.Add(1)
		if large != nil {
			if self {
				return fail("Received a self-contained segment while " + itoa(want-len(large)) + " bytes of a large envelope are missing")
			}
			if len(large)+len(p) > want {
				return fail("A large envelope's segments hold " + itoa(len(large)+len(p)) + " bytes, its header says " + itoa(want))
			}
			large = append(large, p...)
			if len(large) < want {
				continue
			}
			c.s.stats.update(func(s *Stats) { s.LargeEnvelopes++ })
			h, ok := c.header(large[:9])
			if !ok {
				<-c.done
				return nil
			}
			body := large[9:want:want]
			large = nil
			if !c.request(h, body) {
				return nil
			}
			continue
		}
		if !self {
			// The first segment of a large envelope holds its header.
			if len(p) < 9 {
				return fail("The first segment of a large envelope holds " + itoa(len(p)) + " bytes, less than an envelope header")
			}
			h, ok := c.header(p[:9])
			if !ok {
				<-c.done
				return nil
			}
			want = 9 + int(h.BodyLength)
			if len(p) >= want {
				return fail("A segment that is not self-contained holds a whole envelope")
			}
			large = append(make([]byte, 0, min(want, 4<<20)), p...)
			continue
		}
		for len(p) > 0 {
			if len(p) < 9 {
				return fail("A self-contained segment ends with " + itoa(len(p)) + " bytes, less than an envelope header")
			}
			h, ok := c.header(p[:9])
			if !ok {
				<-c.done
				return nil
			}
			n := 9 + int(h.BodyLength)
			if n > len(p) {
				return fail("A self-contained segment holds " + itoa(len(p)) + " bytes of an envelope of " + itoa(n))
			}
			if !c.request(h, p[9:n:n]) {
				return nil
			}
			p = p[n:]
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// rejectVersion answers a frame of an unsupported protocol version with the
// PROTOCOL_ERROR Cassandra sends, so drivers negotiate down, then closes.
func (c *conn) rejectVersion(v primitive.ProtocolVersion, hdr []byte) {
	c.s.stats.update(func(s *Stats) {
		s.RejectedVersions[int(v)]++
		s.Errors["ProtocolError"]++
	})
	msg := "Invalid or unsupported protocol version (" + itoa(int(v)) + "); supported versions are (3/v3, 4/v4, 5/v5)"
	body := binary.BigEndian.AppendUint32(nil, uint32(primitive.ErrorCodeProtocolError))
	body = binary.BigEndian.AppendUint16(body, uint16(len(msg)))
	body = append(body, msg...)
	var raw []byte
	if v < minVersion {
		// v1/v2 header: version, flags, 1-byte stream, opcode, length.
		raw = append(raw, 0x80|byte(v), 0, hdr[2], byte(primitive.OpCodeError))
	} else {
		// Answer in the client's version when it has the v3+ header (v5 frames
		// are unsegmented before STARTUP): gocql matches the version of a
		// response to its request before it looks for the PROTOCOL_ERROR.
		rv := byte(v)
		if v > primitive.ProtocolVersion5 {
			rv = byte(maxVersion)
		}
		raw = append(raw, 0x80|rv, 0, hdr[2], hdr[3], byte(primitive.OpCodeError))
	}
	raw = binary.BigEndian.AppendUint32(raw, uint32(len(body)))
	raw = append(raw, body...)
	c.send(outFrame{raw: raw, close: true})
}

func (c *conn) protocolError(stream int16, msg string, closeAfter bool) {
	c.s.stats.update(func(s *Stats) { s.Errors["ProtocolError"]++ })
	v := c.version
	if v == 0 {
		v = maxVersion
	}
	c.send(outFrame{f: frame.NewFrame(v, stream, &message.ProtocolError{ErrorMessage: msg}), close: closeAfter, modern: c.modern()})
}

// respond queues a response on the request's stream, compressed when
// negotiated (STARTUP's own READY never is): in v3 and v4 the envelope's
// body, in v5 the segments that carry it.
func (c *conn) respond(stream int16, m message.Message) { c.respondWarn(stream, m, nil) }

// respondWarn is respond with warnings for the client (v4 on; v3 has no
// room for them).
func (c *conn) respondWarn(stream int16, m message.Message, warnings []string) {
	if e, ok := m.(message.Error); ok {
		name := errorName(e)
		c.s.stats.update(func(s *Stats) { s.Errors[name]++ })
	}
	f := frame.NewFrame(c.version, stream, m)
	if len(warnings) > 0 && c.version >= primitive.ProtocolVersion4 {
		f.SetWarnings(warnings)
	}
	modern := c.modern()
	f.SetCompress(c.zcodec != nil && c.started && !modern)
	c.send(outFrame{f: f, modern: modern})
}

func (c *conn) dispatch(h *frame.Header, m message.Message) {
	op := opName(h.OpCode)
	c.s.stats.update(func(s *Stats) { s.Requests[op]++ })
	switch msg := m.(type) {
	case *message.Options:
		c.respond(h.StreamId, c.s.supported())
	case *message.Startup:
		c.startup(h.StreamId, msg)
	case *message.Register:
		if !c.started {
			c.protocolError(h.StreamId, "Unexpected message REGISTER, expecting STARTUP or OPTIONS", false)
			return
		}
		for _, e := range msg.EventTypes {
			if e == primitive.EventTypeSchemaChange {
				c.schemaEvents.Store(true)
			}
		}
		c.respond(h.StreamId, &message.Ready{})
	case *message.Query, *message.Execute, *message.Batch, *message.Prepare:
		if !c.started {
			c.protocolError(h.StreamId, "Unexpected message "+op+", expecting STARTUP or OPTIONS", false)
			return
		}
		c.node.requests.Add(1)
		c.reqs.Add(1)
		go func() {
			defer c.reqs.Done()
			c.s.stats.begin()
			resp, warnings, drop := c.s.handle(c, m)
			// Out of flight before the answer leaves: a client that sends
			// its next request on the answer must not be counted twice.
			c.s.stats.end()
			if drop {
				c.s.stats.inj.Add(1)
				c.close()
				return
			}
			c.respondWarn(h.StreamId, resp, warnings)
		}()
	default:
		c.protocolError(h.StreamId, "Unexpected message "+op, false)
	}
}

func opName(op primitive.OpCode) string {
	switch op {
	case primitive.OpCodeStartup:
		return "STARTUP"
	case primitive.OpCodeOptions:
		return "OPTIONS"
	case primitive.OpCodeQuery:
		return "QUERY"
	case primitive.OpCodePrepare:
		return "PREPARE"
	case primitive.OpCodeExecute:
		return "EXECUTE"
	case primitive.OpCodeRegister:
		return "REGISTER"
	case primitive.OpCodeBatch:
		return "BATCH"
	case primitive.OpCodeAuthResponse:
		return "AUTH_RESPONSE"
	}
	return "opcode " + itoa(int(op))
}

func errorName(e message.Error) string {
	switch e.(type) {
	case *message.Overloaded:
		return "Overloaded"
	case *message.WriteTimeout:
		return "WriteTimeout"
	case *message.ReadTimeout:
		return "ReadTimeout"
	case *message.ReadFailure:
		return "ReadFailure"
	case *message.Unavailable:
		return "Unavailable"
	case *message.ServerError:
		return "ServerError"
	case *message.Invalid:
		return "Invalid"
	case *message.SyntaxError:
		return "SyntaxError"
	case *message.ProtocolError:
		return "ProtocolError"
	case *message.Unprepared:
		return "Unprepared"
	case *message.AlreadyExists:
		return "AlreadyExists"
	case *message.ConfigError:
		return "ConfigError"
	}
	return "Other"
}

// pushSchemaEvent sends a SCHEMA_CHANGE event (stream -1) to every
// connection, on any node, that registered for it, as each Cassandra node
// pushes schema changes to its registered clients: drivers then refresh
// their schema metadata, and the token-aware ones learn a new keyspace's
// replication (gocql's TokenAwareHostPolicy routes to its replicas only
// after that).
func (s *Server) pushSchemaEvent(res *message.SchemaChangeResult) {
	ev := &message.SchemaChangeEvent{ChangeType: res.ChangeType, Target: res.Target, Keyspace: res.Keyspace, Object: res.Object}
	s.mu.Lock()
	var to []*conn
	for c := range s.conns {
		if c.schemaEvents.Load() {
			to = append(to, c)
		}
	}
	s.mu.Unlock()
	for _, c := range to {
		c.respond(-1, ev)
	}
}
