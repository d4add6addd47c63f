package pulsartest

import (
	"bufio"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/demandpipe/demandpipe/internal/leakcheck"
)

// rawClient speaks the protocol with this package's own codec, for checks
// the Go client cannot make (version negotiation, corrupt frames).
type rawClient struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t *testing.T, s *Server) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	return &rawClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *rawClient) send(cmd, stored []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(appendFrame(nil, cmd, stored)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) recv() (cmdType, []byte, frame) {
	c.t.Helper()
	f, _, err := readFrame(c.r, nil, 10<<20)
	if err != nil {
		c.t.Fatal(err)
	}
	typ, body, err := decodeBase(f.cmd)
	if err != nil {
		c.t.Fatal(err)
	}
	return typ, body, f
}

func (c *rawClient) connect(version int32) int32 {
	c.t.Helper()
	c.send(appendBase(nil, cmdConnect, putI32(putString(nil, 1, "raw"), 4, version)), nil)
	typ, body, _ := c.recv()
	if typ != cmdConnected {
		c.t.Fatalf("want CONNECTED, got %d", typ)
	}
	var v int32
	walk(body, func(f field) error {
		if f.num == 2 {
			v = int32(f.u)
		}
		return nil
	})
	return v
}

func TestRawProtocol(t *testing.T) {
	defer goleak.VerifyNone(t, append(leakcheck.PulsarClient, goleak.IgnoreCurrent())...)
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	t.Run("version", func(t *testing.T) {
		if v := dialRaw(t, s).connect(25); v != 20 {
			t.Errorf("client v25: negotiated %d, want 20", v)
		}
		if v := dialRaw(t, s).connect(10); v != 10 {
			t.Errorf("client v10: negotiated %d, want 10", v)
		}
	})
	t.Run("ping", func(t *testing.T) {
		c := dialRaw(t, s)
		c.connect(20)
		c.send(encPing(), nil)
		if typ, _, _ := c.recv(); typ != cmdPong {
			t.Fatalf("got %d, want PONG", typ)
		}
	})
	t.Run("command-before-connect", func(t *testing.T) {
		c := dialRaw(t, s)
		c.send(encPing(), nil)
		if _, _, err := readFrame(c.r, nil, 1<<20); err == nil {
			t.Fatal("connection stayed open")
		}
	})
	t.Run("lookup-and-metadata", func(t *testing.T) {
		if err := s.CreatePartitionedTopic("orders", 4); err != nil {
			t.Fatal(err)
		}
		c := dialRaw(t, s)
		c.connect(20)
		c.send(appendBase(nil, cmdLookup, putU64(putString(nil, 1, "persistent://public/default/x"), 2, 9)), nil)
		typ, body, _ := c.recv()
		var url string
		walk(body, func(f field) error {
			if f.num == 1 {
				url = string(f.b)
			}
			return nil
		})
		if typ != cmdLookupResponse || url != s.URL() {
			t.Fatalf("lookup: type %d url %q, want %q", typ, url, s.URL())
		}
		c.send(appendBase(nil, cmdPartitionedMetadata, putU64(putString(nil, 1, "orders"), 2, 10)), nil)
		_, body, _ = c.recv()
		var parts uint64
		walk(body, func(f field) error {
			if f.num == 1 {
				parts = f.u
			}
			return nil
		})
		if parts != 4 {
			t.Fatalf("partitions %d, want 4", parts)
		}
	})
	t.Run("bad-checksum", func(t *testing.T) {
		c := dialRaw(t, s)
		c.connect(20)
		c.send(appendBase(nil, cmdProducer, putU64(putU64(putString(nil, 1, "crc"), 2, 1), 3, 1)), nil)
		if typ, _, _ := c.recv(); typ != cmdProducerSuccess {
			t.Fatalf("got %d, want PRODUCER_SUCCESS", typ)
		}
		meta := putU64(putU64(putString(nil, 1, "p"), 2, 0), 3, 1)
		stored := appendPayload(nil, meta, []byte("payload"))
		stored[len(stored)-1] ^= 0xff
		c.send(appendBase(nil, cmdSend, putU64(putU64(nil, 1, 1), 2, 0)), stored)
		typ, body, _ := c.recv()
		var code uint64
		walk(body, func(f field) error {
			if f.num == 3 {
				code = f.u
			}
			return nil
		})
		if typ != cmdSendError || serverError(code) != errChecksum {
			t.Fatalf("got type %d code %d, want SEND_ERROR ChecksumError", typ, code)
		}
		if s.TopicEntries("crc") != 0 {
			t.Fatal("corrupt message stored")
		}
	})
	t.Run("send-without-producer", func(t *testing.T) {
		// The broker closes the connection (ServerCnx.handleSend).
		c := dialRaw(t, s)
		c.connect(20)
		meta := putU64(putU64(putString(nil, 1, "p"), 2, 0), 3, 1)
		c.send(appendBase(nil, cmdSend, putU64(putU64(nil, 1, 9), 2, 0)), appendPayload(nil, meta, []byte("payload")))
		if _, _, err := readFrame(c.r, nil, 10<<20); err == nil {
			t.Fatal("the connection stayed open after a SEND for a producer it does not have")
		}
	})
	t.Run("subscribe-unsubscribe", func(t *testing.T) {
		c := dialRaw(t, s)
		c.connect(20)
		sub := putU64(putU64(putU64(putString(putString(nil, 1, "unsub"), 2, "s"), 3, uint64(subShared)), 4, 7), 5, 1)
		c.send(appendBase(nil, cmdSubscribe, sub), nil)
		if typ, _, _ := c.recv(); typ != cmdSuccess {
			t.Fatalf("subscribe: got %d, want SUCCESS", typ)
		}
		if _, ok := s.Subscription("unsub", "s"); !ok {
			t.Fatal("subscription missing")
		}
		c.send(appendBase(nil, cmdUnsubscribe, putU64(putU64(nil, 1, 7), 2, 2)), nil)
		if typ, _, _ := c.recv(); typ != cmdSuccess {
			t.Fatalf("unsubscribe: got %d, want SUCCESS", typ)
		}
		if _, ok := s.Subscription("unsub", "s"); ok {
			t.Fatal("subscription still exists after UNSUBSCRIBE")
		}
	})
	t.Run("oversized-frame", func(t *testing.T) {
		c := dialRaw(t, s)
		c.connect(20)
		c.nc.Write([]byte{0x7f, 0xff, 0xff, 0xff})
		if _, _, err := readFrame(c.r, nil, 1<<20); err == nil {
			t.Fatal("connection stayed open after an oversized frame")
		}
	})
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, append(leakcheck.PulsarClient, goleak.IgnoreCurrent())...)
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c := dialRaw(t, s)
		c.connect(20)
	}
	s.StallDispatch(time.Hour)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, s)
	c.connect(20)
	s.Close()
	s.Close()
	if err := s.Start(); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{Addr: "127.0.0.1:0", MaxMessageSize: 1 << 20, Partitions: map[string]int{"a": 3}}, true},
		{Config{Addr: "nonsense"}, false},
		{Config{MaxMessageSize: 10}, false},
		{Config{MaxProtocolVersion: 3}, false},
		{Config{MaxUnackedMessagesPerConsumer: Unlimited, MaxUnackedMessagesPerSubscription: 10, KeySharedLookAheadPerConsumer: Unlimited}, true},
		{Config{MaxUnackedMessagesPerConsumer: -2}, false},
		{Config{MaxUnackedMessagesPerSubscription: 1<<30 + 1}, false},
		{Config{KeySharedLookAheadPerSubscription: -5}, false},
		{Config{Partitions: map[string]int{"a": 0}}, false},
		{Config{Partitions: map[string]int{"a/b": 2}}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}
