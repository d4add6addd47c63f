package pulsartest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
)

// Server is a running test double. All broker state (topics, ledgers,
// subscriptions, consumers) sits behind one mutex: the double serves tests,
// where a single lock is fast enough and keeps every hand-off obviously
// atomic. Per-connection writes happen outside the lock, on each
// connection's writer goroutine.
type Server struct {
	cfg      Config
	maxFrame int

	mu          sync.Mutex
	ln          net.Listener
	addr        string // bound host:port; kept across Stop/Start so clients reconnect
	advertised  string
	running     bool
	closed      bool
	conns       map[*conn]struct{}
	topics      map[string]*topic
	partitioned map[string]int
	nextLedger  int64
	nextName    int64
	stallUntil  time.Time
	stallTimer  *time.Timer
	ksReorder   int // Config.KeySharedReorderAfterReconnect, changed by ReorderKeySharedReplays
	stats       Stats

	wg sync.WaitGroup // accept loops and connection goroutines

	// The monitor of inactive topics (inactive.go) and retention
	// (retention.go).
	monitorStop chan struct{}
	monitorDone chan struct{}
	monitorOnce sync.Once
}

// ErrClosed is returned by operations on a closed Server.
var ErrClosed = errors.New("pulsartest: server closed")

// Start validates cfg, applies defaults and starts listening.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	cfg.Tokens = slices.Clone(cfg.Tokens)
	s := &Server{
		cfg:         cfg,
		maxFrame:    cfg.MaxMessageSize + FramePadding,
		addr:        cfg.Addr,
		conns:       make(map[*conn]struct{}),
		topics:      make(map[string]*topic),
		partitioned: make(map[string]int),
		nextLedger:  1,
		stats:       Stats{MessagesIn: make(map[string]int64)},
		ksReorder:   cfg.KeySharedReorderAfterReconnect,
	}
	for name, n := range cfg.Partitions {
		if err := s.CreatePartitionedTopic(name, n); err != nil {
			return nil, err
		}
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	s.monitorStop, s.monitorDone = make(chan struct{}), make(chan struct{})
	go s.monitor()
	return s, nil
}

func (s *Server) listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.running {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("pulsartest: listen %s: %w", s.addr, err)
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS) // the handshake runs in readLoop
	}
	s.ln = ln
	s.addr = ln.Addr().String() // pin the port chosen for ":0"
	s.advertised = s.cfg.AdvertisedAddr
	if s.advertised == "" {
		host, port, _ := net.SplitHostPort(s.addr)
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		s.advertised = net.JoinHostPort(host, port)
	}
	s.running = true
	s.restartInactivityLocked()
	s.reloadLedgersLocked(time.Now())
	s.wg.Add(1)
	go s.acceptLoop(ln)
	return nil
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return // listener closed by stop or Close
		}
		s.mu.Lock()
		if !s.running || s.ln != ln {
			s.mu.Unlock()
			nc.Close()
			return
		}
		c := newConn(s, nc)
		s.conns[c] = struct{}{}
		s.stats.Connections++
		s.wg.Add(2)
		s.mu.Unlock()
		s.logf("accepted %s", nc.RemoteAddr())
		go c.readLoop()
		go c.writeLoop()
	}
}

// Addr returns the host:port the server listens on (stable across Restart).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL returns the service URL for clients, e.g. "pulsar://127.0.0.1:6650",
// or "pulsar+ssl://127.0.0.1:6651" with Config.TLS.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.urlLocked()
}

func (s *Server) urlLocked() string {
	if s.cfg.TLS != nil {
		return "pulsar+ssl://" + s.advertised
	}
	return "pulsar://" + s.advertised
}

// stop closes the listener and every connection, keeping topics and
// cursors; it waits until all connection goroutines have ended.
func (s *Server) stop() {
	s.mu.Lock()
	if s.running {
		s.running = false
		s.ln.Close()
		for c := range s.conns {
			c.shutdownLocked()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Close stops the server for good and waits for its goroutines. It is safe
// to call more than once.
func (s *Server) Close() error {
	s.stop()
	s.mu.Lock()
	s.closed = true
	if s.stallTimer != nil {
		s.stallTimer.Stop()
		s.stallTimer = nil
	}
	s.mu.Unlock()
	if s.monitorStop != nil {
		s.monitorOnce.Do(func() { close(s.monitorStop) })
		<-s.monitorDone
	}
	return nil
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}
