package cqltest

import (
	"crypto/md5"
	"time"

	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// handle serves one QUERY, EXECUTE, BATCH or PREPARE. It applies the service
// time and injected faults to statements on user keyspaces, then executes.
// drop reports that the connection must be closed without an answer.
func (s *Server) handle(c *conn, m message.Message) (resp message.Message, drop bool) {
	switch msg := m.(type) {
	case *message.Query:
		st, err := parse(msg.Query)
		if err != nil {
			return errorMessage(err), false
		}
		x, cl, err := newExecCtx(s, msg.Options, c.currentKeyspace())
		if err != nil {
			return errorMessage(err), false
		}
		return s.runStatement(c, st, x, cl)
	case *message.Execute:
		p := s.lookupPrepared(msg.QueryId)
		if p == nil {
			return errorMessage(&reqError{code: codeUnprepared, msg: "Prepared query with ID " + hexID(msg.QueryId) + " not found", id: msg.QueryId}), false
		}
		x, cl, err := newExecCtx(s, msg.Options, p.keyspace)
		if err != nil {
			return errorMessage(err), false
		}
		return s.runStatement(c, p.st, x, cl)
	case *message.Prepare:
		ks := c.currentKeyspace()
		if msg.Keyspace != "" {
			ks = msg.Keyspace
		}
		p, err := s.prepare(msg.Query, ks)
		if err != nil {
			return errorMessage(err), false
		}
		return &message.PreparedResult{PreparedQueryId: p.id, VariablesMetadata: p.vars, ResultMetadata: p.result}, false
	case *message.Batch:
		return s.runBatch(c, msg)
	}
	return &message.ProtocolError{ErrorMessage: "unexpected message"}, false
}

func newExecCtx(s *Server, o *message.QueryOptions, ks string) (*execCtx, primitive.ConsistencyLevel, error) {
	x := &execCtx{keyspace: ks, now: s.cfg.Now().UnixNano(), cl: primitive.ConsistencyLevelOne, checkCL: true}
	if o == nil {
		return x, x.cl, nil
	}
	if len(o.NamedValues) > 0 {
		return nil, 0, invalidf("named bind values are not supported by cqltest")
	}
	if o.Keyspace != "" {
		x.keyspace = o.Keyspace
	}
	x.values, x.pageSize, x.pagingState, x.skipMetadata = o.PositionalValues, o.PageSize, o.PagingState, o.SkipMetadata
	x.cl = o.Consistency
	return x, o.Consistency, nil
}

// statementKeyspace is the keyspace a statement acts on.
func statementKeyspace(st *statement, x *execCtx) string {
	if st.keyspace != "" {
		return st.keyspace
	}
	return x.keyspace
}

// serviceTime applies the fault and latency decision for one statement (or one
// batch) on a user keyspace. It returns the fault to answer with; ok=false
// means the connection closed while sleeping.
func (s *Server) serviceTime(c *conn) (Fault, bool) {
	f, lat := s.faults.pick()
	if lat > 0 {
		t := time.NewTimer(lat)
		defer t.Stop()
		var done <-chan struct{}
		if c != nil {
			done = c.done
		}
		select {
		case <-t.C:
		case <-done:
			return FaultNone, false
		}
	}
	return f, true
}

func (s *Server) runStatement(c *conn, st *statement, x *execCtx, cl primitive.ConsistencyLevel) (message.Message, bool) {
	if err := x.checkArity(st); err != nil {
		return errorMessage(err), false
	}
	ks := statementKeyspace(st, x)
	if systemKeyspaces[ks] {
		s.stats.update(func(s *Stats) { s.SystemStatements++ })
	} else {
		f, ok := s.serviceTime(c)
		if !ok {
			return nil, true
		}
		switch f {
		case FaultNone:
		case FaultDrop:
			return nil, true
		default:
			s.stats.inj.Add(1)
			return faultMessage(f, st.kind == stmtSelect, nil, cl), false
		}
		s.stats.update(func(s *Stats) { s.Statements[string(st.kind)]++ })
	}
	msg, err := s.exec(c, st, x)
	if err != nil {
		return errorMessage(err), false
	}
	return msg, false
}

func isWrite(k stmtKind) bool { return k == stmtInsert || k == stmtUpdate || k == stmtDelete }

// exec executes one statement; c is nil for Server.Exec.
func (s *Server) exec(c *conn, st *statement, x *execCtx) (message.Message, error) {
	ks := statementKeyspace(st, x)
	switch st.kind {
	case stmtSelect, stmtInsert, stmtUpdate, stmtDelete, stmtTruncate:
		t, err := s.store.lookup(ks, st.table)
		if err != nil {
			return nil, err
		}
		if st.kind == stmtSelect {
			return s.execSelect(x, t, st)
		}
		if systemKeyspaces[ks] {
			return nil, &reqError{code: codeInvalid, msg: ks + " keyspace is not user-modifiable."}
		}
		if st.kind == stmtTruncate {
			t.truncate()
			return &message.VoidResult{}, nil
		}
		m, err := s.planWrite(x, t, st)
		if err != nil {
			return nil, err
		}
		// The replica check comes after validation, as in Cassandra
		// (StorageProxy.mutate), and an unavailable write applies nothing.
		if x.checkCL {
			if err := s.assureLive(t, x.cl); err != nil {
				return nil, err
			}
		}
		applied, existing := m.apply(x.now)
		if applied && st.kind != stmtDelete {
			s.stats.rows.Add(1)
		}
		if m.ifCond {
			return conditionalResult(t, applied, existing), nil
		}
		return &message.VoidResult{}, nil
	case stmtUse:
		if !s.store.hasKeyspace(st.keyspace) {
			return nil, invalidf("Keyspace '%s' does not exist", st.keyspace)
		}
		if c != nil {
			c.setKeyspace(st.keyspace)
		}
		return &message.SetKeyspaceResult{Keyspace: st.keyspace}, nil
	}

	// Schema changes.
	if systemKeyspaces[ks] {
		return nil, &reqError{code: codeInvalid, msg: ks + " keyspace is not user-modifiable."}
	}
	var changed bool
	var err error
	res := &message.SchemaChangeResult{Keyspace: ks, Target: primitive.SchemaChangeTargetTable, Object: st.table}
	switch st.kind {
	case stmtCreateKeyspace:
		changed, err = s.store.createKeyspace(st)
		res.ChangeType, res.Target, res.Object = primitive.SchemaChangeTypeCreated, primitive.SchemaChangeTargetKeyspace, ""
	case stmtCreateTable:
		changed, err = s.store.createTable(ks, st)
		res.ChangeType = primitive.SchemaChangeTypeCreated
	case stmtDropTable:
		changed, err = s.store.dropTable(ks, st.table, st.ifExists)
		res.ChangeType = primitive.SchemaChangeTypeDropped
	case stmtDropKeyspace:
		changed, err = s.store.dropKeyspace(ks, st.ifExists)
		res.ChangeType, res.Target, res.Object = primitive.SchemaChangeTypeDropped, primitive.SchemaChangeTargetKeyspace, ""
	default:
		return nil, invalidf("unsupported statement %s", st.kind)
	}
	if err != nil {
		return nil, err
	}
	if !changed {
		return &message.VoidResult{}, nil
	}
	s.mu.Lock()
	s.refresh()
	s.mu.Unlock()
	return res, nil
}

func (s *Server) runBatch(c *conn, b *message.Batch) (message.Message, bool) {
	type unit struct {
		st *statement
		x  *execCtx
	}
	now := s.cfg.Now().UnixNano()
	units := make([]unit, len(b.Children))
	user := false
	for i, ch := range b.Children {
		var st *statement
		ks := c.currentKeyspace()
		if b.Keyspace != "" {
			ks = b.Keyspace
		}
		if ch.Id != nil {
			p := s.lookupPrepared(ch.Id)
			if p == nil {
				return errorMessage(&reqError{code: codeUnprepared, msg: "Prepared query with ID " + hexID(ch.Id) + " not found", id: ch.Id}), false
			}
			st, ks = p.st, p.keyspace
		} else {
			var err error
			if st, err = parse(ch.Query); err != nil {
				return errorMessage(err), false
			}
		}
		if !isWrite(st.kind) {
			return errorMessage(invalidf("Invalid statement in batch: only UPDATE, INSERT and DELETE statements are allowed.")), false
		}
		if st.ifExists {
			return errorMessage(invalidf("conditional statements in batches are not supported by cqltest")), false
		}
		x := &execCtx{keyspace: ks, values: ch.Values, now: now}
		if err := x.checkArity(st); err != nil {
			return errorMessage(err), false
		}
		units[i] = unit{st, x}
		if !systemKeyspaces[statementKeyspace(st, x)] {
			user = true
		}
	}
	if user {
		f, ok := s.serviceTime(c)
		if !ok {
			return nil, true
		}
		switch f {
		case FaultNone:
		case FaultDrop:
			return nil, true
		default:
			s.stats.inj.Add(1)
			bt := b.Type
			return faultMessage(f, false, &bt, b.Consistency), false
		}
	}
	// Plan every statement before applying any, so an invalid one fails the
	// whole batch as in Cassandra.
	muts := make([]*mutation, len(units))
	type partition struct {
		t   *table
		key string
	}
	partitions := map[partition]bool{}
	for i, u := range units {
		t, err := s.store.lookup(statementKeyspace(u.st, u.x), u.st.table)
		if err != nil {
			return errorMessage(err), false
		}
		if systemKeyspaces[t.ks] {
			return errorMessage(invalidf("%s keyspace is not user-modifiable.", t.ks)), false
		}
		if muts[i], err = s.planWrite(u.x, t, u.st); err != nil {
			return errorMessage(err), false
		}
		for _, k := range muts[i].keys {
			partitions[partition{t, k}] = true
		}
	}
	// Every mutation must find its replicas alive before any is applied.
	for _, m := range muts {
		if err := s.assureLive(m.t, b.Consistency); err != nil {
			return errorMessage(err), false
		}
	}
	written := 0
	for _, m := range muts {
		m.apply(now)
		if m.kind != stmtDelete {
			written++
		}
	}
	s.stats.rows.Add(int64(written))
	s.stats.update(func(st *Stats) {
		st.Batches[batchTypeName(b.Type)]++
		for _, u := range units {
			st.Statements[string(u.st.kind)]++
		}
		if len(st.BatchPartitions) < maxBatchPartitions {
			st.BatchPartitions = append(st.BatchPartitions, len(partitions))
		}
	})
	return &message.VoidResult{}, false
}

func batchTypeName(t primitive.BatchType) string {
	switch t {
	case primitive.BatchTypeLogged:
		return "LOGGED"
	case primitive.BatchTypeUnlogged:
		return "UNLOGGED"
	case primitive.BatchTypeCounter:
		return "COUNTER"
	}
	return "UNKNOWN"
}

// prepared is a statement parsed and described once, executed by id.
type prepared struct {
	id       []byte
	keyspace string // session keyspace at PREPARE, for unqualified names
	st       *statement
	vars     *message.VariablesMetadata
	result   *message.RowsMetadata
}

// prepare parses and describes query. Its id is the MD5 of keyspace and text,
// as in Cassandra, so re-preparing (after Down/Up, or on another connection)
// gives the same id.
func (s *Server) prepare(query, ks string) (*prepared, error) {
	sum := md5.Sum([]byte(ks + "\x00" + query))
	id := sum[:]
	if p := s.lookupPrepared(id); p != nil {
		return p, nil
	}
	st, err := parse(query)
	if err != nil {
		return nil, err
	}
	var t *table
	switch st.kind {
	case stmtSelect, stmtInsert, stmtUpdate, stmtDelete:
		tks := st.keyspace
		if tks == "" {
			tks = ks
		}
		if t, err = s.store.lookup(tks, st.table); err != nil {
			return nil, err
		}
	}
	vars, result, err := describe(t, st)
	if err != nil {
		return nil, err
	}
	p := &prepared{id: id, keyspace: ks, st: st, vars: vars, result: result}
	s.prepMu.Lock()
	s.prepared[string(id)] = p
	s.prepMu.Unlock()
	return p, nil
}

func (s *Server) lookupPrepared(id []byte) *prepared {
	s.prepMu.RLock()
	defer s.prepMu.RUnlock()
	return s.prepared[string(id)]
}

func hexID(id []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(id))
	for _, b := range id {
		out = append(out, digits[b>>4], digits[b&15])
	}
	return string(out)
}

// rowsOf returns the cells of a ROWS result (nil for other results).
func rowsOf(m message.Message) [][][]byte {
	r, ok := m.(*message.RowsResult)
	if !ok {
		return nil
	}
	out := make([][][]byte, len(r.Data))
	for i, row := range r.Data {
		out[i] = row
	}
	return out
}

// rowsMetadata returns the metadata of a ROWS result (nil for other results).
func rowsMetadata(m message.Message) *message.RowsMetadata {
	if r, ok := m.(*message.RowsResult); ok {
		return r.Metadata
	}
	return nil
}
