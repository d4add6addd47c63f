package cqltest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// Server is a CQL native protocol test double listening on TCP. It is safe for
// concurrent use. Create it with Start and stop it with Close.
type Server struct {
	cfg    Config
	store  *store
	stats  stats
	faults faults
	live   atomic.Int32 // live nodes (Config.LiveNodes, SetLiveNodes)
	lastTS atomic.Int64 // the last write timestamp the server assigned (nextTimestamp)

	schemaMu sync.Mutex // serialises rewrites of the system tables

	prepMu   sync.RWMutex
	prepared map[string]*prepared

	mu      sync.Mutex
	ln      net.Listener
	addr    *net.TCPAddr // bound address; Up listens here again after Down
	conns   map[*conn]struct{}
	closed  bool
	upTimer *time.Timer
	wg      sync.WaitGroup // accept loops and connections
}

// Start validates cfg, listens on cfg.Addr and serves until Close.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:      cfg,
		store:    newStore(cfg.Now, cfg.DataCenter, cfg.PurgeTombstones),
		prepared: map[string]*prepared{},
		conns:    map[*conn]struct{}{},
	}
	s.faults.rng = rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))
	s.faults.latency = cfg.Latency
	s.live.Store(int32(cfg.LiveNodes))
	s.stats.reset()
	s.installSystem()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("cqltest: listen: %w", err)
	}
	s.ln = ln
	s.addr = ln.Addr().(*net.TCPAddr)
	s.refresh()
	s.wg.Add(1)
	go s.acceptLoop(ln)
	return s, nil
}

// SetLiveNodes sets how many nodes of the cluster are up (Config.LiveNodes),
// from the next statement on: fewer than a consistency level needs makes
// reads and writes answer UNAVAILABLE until enough are back. n is clamped to
// 1..MaxLiveNodes: this node, answering, is always one of them.
func (s *Server) SetLiveNodes(n int) {
	s.live.Store(int32(max(1, min(n, MaxLiveNodes))))
}

// LiveNodes is the number of live nodes (Config.LiveNodes, SetLiveNodes).
func (s *Server) LiveNodes() int { return int(s.live.Load()) }

// assureLive returns UNAVAILABLE when cl needs more live replicas of t's
// keyspace than there are (consistency.go); nil for the system tables.
func (s *Server) assureLive(t *table, cl primitive.ConsistencyLevel) error {
	return t.placement.check(cl, int(s.live.Load()), s.cfg.DataCenter)
}

// Addr is the listening address, host:port, e.g. "127.0.0.1:40123".
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr.String()
}

// addrString is the node's address as errors name it.
func (s *Server) addrString() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "/" + s.addr.String()
}

// Port is the listening TCP port.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr.Port
}

// refresh rewrites system.local and system_schema.
func (s *Server) refresh() {
	ip := s.addr.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1) // listening on all addresses: report loopback
	}
	s.refreshSystem(ip, s.addr.Port)
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // listener closed (Close or Down)
		}
		s.mu.Lock()
		if s.closed || s.ln != ln {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		c := newConn(s, nc)
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.stats.connections.Add(1)
		s.stats.open.Add(1)
		go c.serve()
	}
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.stats.open.Add(-1)
}

// DropConnections closes every open client connection (the listener stays), as
// a node restart or a network blip would. It returns how many it closed.
func (s *Server) DropConnections() int {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	return len(conns)
}

// Down stops listening and closes every connection, as a node that went away.
// With d > 0 the server comes back by itself after d (see Up); with d == 0 it
// stays down until Up. Data and prepared statements are kept.
func (s *Server) Down(d time.Duration) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("cqltest: server closed")
	}
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	if s.upTimer != nil {
		s.upTimer.Stop()
		s.upTimer = nil
	}
	if d > 0 {
		s.upTimer = time.AfterFunc(d, func() {
			if err := s.Up(); err != nil {
				s.logf("cqltest: coming back up: %v", err)
			}
		})
	}
	s.mu.Unlock()
	s.DropConnections()
	return nil
}

// Up listens again on the address of the first Start after Down. It is a no-op
// when the server is listening.
func (s *Server) Up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("cqltest: server closed")
	}
	if s.ln != nil {
		return nil
	}
	// Go listeners set SO_REUSEADDR, so the port can be bound again at once even
	// with connections of the previous life in TIME_WAIT.
	ln, err := net.Listen("tcp", s.addr.String())
	if err != nil {
		return fmt.Errorf("cqltest: listen again on %s: %w", s.addr, err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.acceptLoop(ln)
	return nil
}

// Close stops listening, closes every connection and waits for all of the
// server's goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	if s.upTimer != nil {
		s.upTimer.Stop()
	}
	s.mu.Unlock()
	s.DropConnections()
	s.wg.Wait()
	return nil
}

// Stats returns a copy of what the server has seen since Start or ResetStats.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// ResetStats zeroes the statistics; data, schema and faults stay.
func (s *Server) ResetStats() { s.stats.reset() }

// Rows returns the number of live rows in a table.
func (s *Server) Rows(keyspace, table string) (int, error) {
	t, err := s.store.lookup(keyspace, table)
	if err != nil {
		return 0, err
	}
	return t.rowCount(s.cfg.Now().UnixNano()), nil
}

// Exec runs one CQL statement as a client would (in no keyspace unless the
// statement names one), for setting up test data without a driver. SELECT
// results are returned as rows of raw cell bytes. It carries no consistency
// level, so it never meets the live-replica check.
func (s *Server) Exec(query string) ([][][]byte, error) {
	st, err := parse(query)
	if err != nil {
		return nil, err
	}
	x := &execCtx{now: s.cfg.Now().UnixNano()}
	if err := x.checkArity(st); err != nil {
		return nil, err
	}
	msg, err := s.exec(nil, st, x)
	if err != nil {
		return nil, err
	}
	return rowsOf(msg), nil
}
