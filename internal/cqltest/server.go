package cqltest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a CQL native protocol test double listening on TCP. It is safe for
// concurrent use. Create it with Start and stop it with Close.
type Server struct {
	cfg    Config
	store  *store
	stats  stats
	faults faults
	live   atomic.Int32 // live nodes (Config.LiveNodes, SetLiveNodes)
	nodes  []*node      // Config.Nodes, fixed at Start
	tokens []int64      // the nodes' tokens, ascending in node order
	lastTS atomic.Int64 // the last write timestamp the server assigned (nextTimestamp)

	schemaMu sync.Mutex // serialises rewrites of the system tables

	prepMu   sync.RWMutex
	prepared map[string]*prepared

	mu      sync.Mutex // guards the nodes' listeners and the fields below
	conns   map[*conn]struct{}
	closed  bool
	upTimer *time.Timer
	wg      sync.WaitGroup // accept loops and connections
}

// Start validates cfg, listens on cfg.Addr (and, with cfg.Nodes > 1, on
// each other node's address) and serves until Close.
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
		nodes:    newNodes(cfg),
	}
	s.tokens = nodeTokens(cfg.Nodes)
	s.faults.rng = rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))
	s.faults.latency = cfg.Latency
	s.live.Store(int32(cfg.LiveNodes))
	s.stats.reset()
	s.installSystem()
	if err := s.listen(); err != nil {
		return nil, err
	}
	s.refreshSystem()
	for _, n := range s.nodes {
		s.wg.Add(1)
		go s.acceptLoop(n, n.ln)
	}
	return s, nil
}

// SetLiveNodes sets how many nodes of the cluster are up (Config.LiveNodes),
// from the next statement on: fewer than a consistency level needs makes
// reads and writes answer UNAVAILABLE until enough are back. n is clamped to
// 1..MaxLiveNodes (1..Config.Nodes with more than one node): this node,
// answering, is always one of them; with a ring, nodes 0..n-1 are up.
func (s *Server) SetLiveNodes(n int) {
	hi := MaxLiveNodes
	if len(s.nodes) > 1 {
		hi = len(s.nodes)
	}
	s.live.Store(int32(max(1, min(n, hi))))
}

// LiveNodes is the number of live nodes (Config.LiveNodes, SetLiveNodes).
func (s *Server) LiveNodes() int { return int(s.live.Load()) }

// Addr is node 0's listening address, host:port, e.g. "127.0.0.1:40123"
// (Addrs lists every node's).
func (s *Server) Addr() string { return s.nodes[0].addr.String() }

// addrString is node 0's address as errors name it.
func (s *Server) addrString() string { return "/" + s.nodes[0].addr.String() }

// Port is the listening TCP port, every node's.
func (s *Server) Port() int { return s.nodes[0].addr.Port }

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

func (s *Server) acceptLoop(n *node, ln net.Listener) {
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
		if s.closed || n.ln != ln {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		c := newConn(s, n, nc)
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

// Down stops listening and closes every connection, as a node that went
// away (with Config.Nodes > 1, every node: the whole cluster).
// With d > 0 the server comes back by itself after d (see Up); with d == 0 it
// stays down until Up. Data and prepared statements are kept.
func (s *Server) Down(d time.Duration) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("cqltest: server closed")
	}
	s.closeListeners()
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

// Up listens again on the addresses of the first Start after Down. It is a
// no-op for a node that is listening.
func (s *Server) Up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("cqltest: server closed")
	}
	for _, n := range s.nodes {
		if n.ln != nil {
			continue
		}
		// Go listeners set SO_REUSEADDR, so the port can be bound again at
		// once even with connections of the previous life in TIME_WAIT.
		ln, err := net.Listen("tcp", n.addr.String())
		if err != nil {
			return fmt.Errorf("cqltest: listen again on %s: %w", n.addr, err)
		}
		n.ln = ln
		s.wg.Add(1)
		go s.acceptLoop(n, ln)
	}
	return nil
}

// closeListeners stops every node's listener; s.mu is held.
func (s *Server) closeListeners() {
	for _, n := range s.nodes {
		if n.ln != nil {
			n.ln.Close()
			n.ln = nil
		}
	}
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
	s.closeListeners()
	if s.upTimer != nil {
		s.upTimer.Stop()
	}
	s.mu.Unlock()
	s.DropConnections()
	s.wg.Wait()
	return nil
}

// Stats returns a copy of what the server has seen since Start or ResetStats.
func (s *Server) Stats() Stats {
	st := s.stats.snapshot()
	st.Nodes = s.nodeStats()
	return st
}

// ResetStats zeroes the statistics; data, schema and faults stay.
func (s *Server) ResetStats() {
	s.stats.reset()
	s.resetNodeStats()
}

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
