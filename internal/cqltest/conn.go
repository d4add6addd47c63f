package cqltest

import (
	"bufio"
	"bytes"
	"encoding/binary"
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
	s  *Server
	nc net.Conn

	out  chan outFrame
	done chan struct{}
	once sync.Once
	reqs sync.WaitGroup

	// Set by the reader before the first request goroutine starts, read-only after.
	version primitive.ProtocolVersion
	plain   frame.RawCodec
	zcodec  frame.RawCodec // nil until STARTUP negotiated compression
	zbody   bodyCodec      // zcodec's body codec (the BATCH fast path's)
	started bool

	keyspace atomic.Pointer[string] // USE
}

type outFrame struct {
	f     *frame.Frame
	raw   []byte // pre-encoded frame (version rejections)
	close bool   // close the connection after writing this frame
}

func newConn(s *Server, nc net.Conn) *conn {
	return &conn{s: s, nc: nc, out: make(chan outFrame, 256), done: make(chan struct{}), plain: frame.NewRawCodec()}
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
	for {
		var o outFrame
		select {
		case o = <-c.out:
		case <-c.done:
			return
		}
		var err error
		switch {
		case o.raw != nil:
			_, err = bw.Write(o.raw)
		case o.f.Header.Flags.Contains(primitive.HeaderFlagCompressed):
			err = c.zcodec.EncodeFrame(o.f, bw)
		default:
			err = c.plain.EncodeFrame(o.f, bw)
		}
		if err == nil && (len(c.out) == 0 || o.close) {
			err = bw.Flush()
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

// Supported protocol versions. v5 (segments, checksums) is not implemented: a
// v5 STARTUP gets the PROTOCOL_ERROR that makes drivers retry with v4.
const (
	minVersion = primitive.ProtocolVersion3
	maxVersion = primitive.ProtocolVersion4
)

func (c *conn) readLoop() error {
	br := bufio.NewReaderSize(countingReader{c.nc, &c.s.stats.bytesIn}, 64<<10)
	var hdr [9]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return err
		}
		version := primitive.ProtocolVersion(hdr[0] & 0x7f)
		if version < minVersion || version > maxVersion || hdr[0]&0x80 != 0 {
			c.rejectVersion(version, hdr[:])
			<-c.done // the writer closes after sending the answer
			return nil
		}
		stream := int16(binary.BigEndian.Uint16(hdr[2:]))
		if c.version != 0 && version != c.version {
			c.protocolError(stream, "Invalid message version. Got "+version.String()+" but previous messages on this connection had version "+c.version.String(), true)
			<-c.done
			return nil
		}
		length := int32(binary.BigEndian.Uint32(hdr[5:]))
		if length < 0 || int(length) > c.s.cfg.MaxFrameBytes {
			c.protocolError(stream, "Request is too big: length "+itoa(int(length))+" exceeds maximum allowed length "+itoa(c.s.cfg.MaxFrameBytes), true)
			<-c.done
			return nil
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			return err
		}
		h := &frame.Header{Version: version, Flags: primitive.HeaderFlag(hdr[1]), StreamId: stream, OpCode: primitive.OpCode(hdr[4]), BodyLength: length}
		if m := c.fastBatch(h, body); m != nil {
			c.dispatch(h, m)
			continue
		}
		codec := c.plain
		if h.Flags.Contains(primitive.HeaderFlagCompressed) {
			if c.zcodec == nil {
				c.protocolError(stream, "Received a compressed frame but no compression was negotiated", true)
				return nil
			}
			codec = c.zcodec
		}
		if c.version == 0 {
			c.version = version
			c.s.stats.update(func(s *Stats) { s.ProtocolVersions[int(version)]++ })
		}
		b, err := codec.DecodeBody(h, bytes.NewReader(body))
		if err != nil {
			c.protocolError(stream, "cannot decode request: "+err.Error(), false)
			continue
		}
		c.dispatch(h, b.Message)
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
	msg := "Invalid or unsupported protocol version (" + itoa(int(v)) + "); supported versions are (3/v3, 4/v4)"
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
	c.send(outFrame{f: frame.NewFrame(v, stream, &message.ProtocolError{ErrorMessage: msg}), close: closeAfter})
}

// respond queues a response on the request's stream, compressed when
// negotiated (STARTUP's own READY never is).
func (c *conn) respond(stream int16, m message.Message) {
	if e, ok := m.(message.Error); ok {
		name := errorName(e)
		c.s.stats.update(func(s *Stats) { s.Errors[name]++ })
	}
	f := frame.NewFrame(c.version, stream, m)
	f.SetCompress(c.zcodec != nil && c.started)
	c.send(outFrame{f: f})
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
		c.respond(h.StreamId, &message.Ready{})
	case *message.Query, *message.Execute, *message.Batch, *message.Prepare:
		if !c.started {
			c.protocolError(h.StreamId, "Unexpected message "+op+", expecting STARTUP or OPTIONS", false)
			return
		}
		c.reqs.Add(1)
		go func() {
			defer c.reqs.Done()
			c.s.stats.begin()
			resp, drop := c.s.handle(c, m)
			// Out of flight before the answer leaves: a client that sends
			// its next request on the answer must not be counted twice.
			c.s.stats.end()
			if drop {
				c.s.stats.inj.Add(1)
				c.close()
				return
			}
			c.respond(h.StreamId, resp)
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
