package cqltest

import (
	"bytes"
	"crypto/md5"
	"time"

	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// handle serves one QUERY, EXECUTE, BATCH or PREPARE. It applies the service
// time and injected faults to statements on user keyspaces, then executes.
// drop reports that the connection must be closed without an answer;
// warnings go with the answer (protocol v4 on).
func (s *Server) handle(c *conn, m message.Message) (resp message.Message, warnings []string, drop bool) {
	if q, ok := m.(*message.Query); ok {
		return s.query(c, q)
	}
	if e, ok := m.(*message.Execute); ok {
		return s.execute(c, e)
	}
	resp, drop = s.handleOther(c, m)
	return resp, nil, drop
}

func (s *Server) query(c *conn, msg *message.Query) (message.Message, []string, bool) {
	st, err := parse(msg.Query)
	if err != nil {
		return errorMessage(err), nil, false
	}
	x, cl, err := newExecCtx(s, msg.Options, c.currentKeyspace())
	if err != nil {
		return errorMessage(err), nil, false
	}
	resp, drop := s.runStatement(c, st, x, cl)
	return resp, x.warnings, drop
}

func (s *Server) execute(c *conn, msg *message.Execute) (message.Message, []string, bool) {
	p := s.lookupPrepared(msg.QueryId)
	if p == nil {
		return errorMessage(&reqError{code: codeUnprepared, msg: "Prepared query with ID " + hexID(msg.QueryId) + " not found", id: msg.QueryId}), nil, false
	}
	x, cl, err := newExecCtx(s, msg.Options, p.keyspace)
	if err != nil {
		return errorMessage(err), nil, false
	}
	if c != nil && c.version >= primitive.ProtocolVersion5 && p.result != nil && !bytes.Equal(msg.ResultMetadataId, p.resultID) {
		// v5: the client's columns are not the statement's; send them
		// with their id (transport/messages/ExecuteMessage.java).
		x.newResultID = p.resultID
	}
	resp, drop := s.runStatement(c, p.st, x, cl)
	return resp, x.warnings, drop
}

func (s *Server) handleOther(c *conn, m message.Message) (resp message.Message, drop bool) {
	switch msg := m.(type) {
	case *message.Prepare:
		ks := c.currentKeyspace()
		if msg.Keyspace != "" {
			ks = msg.Keyspace
		}
		p, err := s.prepare(msg.Query, ks)
		if err != nil {
			return errorMessage(err), false
		}
		res := &message.PreparedResult{PreparedQueryId: p.id, VariablesMetadata: p.vars, ResultMetadata: p.result}
		if c != nil && c.version >= primitive.ProtocolVersion5 {
			res.ResultMetadataId = p.resultID
		}
		return res, false
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
	x.serial = o.SerialConsistency
	if o.DefaultTimestamp != nil {
		x.ts, x.tsSet = *o.DefaultTimestamp, true
	}
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
	var f Fault
	if systemKeyspaces[ks] {
		s.stats.update(func(s *Stats) { s.SystemStatements++ })
	} else {
		var ok bool
		if f, ok = s.serviceTime(c); !ok {
			return nil, true
		}
		switch {
		case f == FaultNone, f == FaultTimeoutApplied && isWrite(st.kind):
		case f == FaultDrop:
			return nil, true
		default:
			s.stats.inj.Add(1)
			return statementFault(f, st, x, cl), false
		}
		s.stats.update(func(s *Stats) { s.Statements[string(st.kind)]++ })
	}
	msg, err := s.exec(c, st, x)
	if err != nil {
		return errorMessage(err), false
	}
	if f == FaultTimeoutApplied {
		s.stats.inj.Add(1)
		return statementFault(f, st, x, cl), false // applied, yet a timeout
	}
	return msg, false
}

// statementFault is faultMessage for one statement. A lightweight
// transaction's timeout is its Paxos round's: WRITE_TIMEOUT of write type
// CAS at the serial consistency (StorageProxy.cas), as is its UNAVAILABLE.
func statementFault(f Fault, st *statement, x *execCtx, cl primitive.ConsistencyLevel) message.Message {
	if !st.conditional() {
		return faultMessage(f, st.kind == stmtSelect, nil, cl)
	}
	msg := faultMessage(f, false, nil, x.serialLevel())
	if wt, ok := msg.(*message.WriteTimeout); ok {
		wt.WriteType = primitive.WriteTypeCas
	}
	return msg
}

func isWrite(k stmtKind) bool { return k == stmtInsert || k == stmtUpdate || k == stmtDelete }

func isSerial(cl primitive.ConsistencyLevel) bool {
	return cl == primitive.ConsistencyLevelSerial || cl == primitive.ConsistencyLevelLocalSerial
}

// serialLevel is the transaction's serial consistency: the client's, else
// SERIAL (cql3/QueryOptions.java's default when the flag is absent).
func (x *execCtx) serialLevel() primitive.ConsistencyLevel {
	if x.serial == nil {
		return primitive.ConsistencyLevelSerial
	}
	return *x.serial
}

// checkSerial refuses the levels a lightweight transaction cannot run at,
// as StorageProxy.cas does before its Paxos round:
// ConsistencyLevel.validateForCas (the serial consistency must be SERIAL
// or LOCAL_SERIAL) and validateForCasCommit (the commit's must not be).
func (x *execCtx) checkSerial() error {
	if !isSerial(x.serialLevel()) {
		return invalidf("Invalid consistency for conditional update. Must be one of SERIAL or LOCAL_SERIAL")
	}
	if isSerial(x.cl) {
		return invalidf("%s is not supported as conditional update commit consistency. Use ANY if you mean \"make sure it is accepted but I don't care how many replicas commit it for non-SERIAL reads\"", clName(x.cl))
	}
	return nil
}

// exec executes one statement; c is nil for Server.Exec.
func (s *Server) exec(c *conn, st *statement, x *execCtx) (message.Message, error) {
	ks := statementKeyspace(st, x)
	switch st.kind {
	case stmtSelect, stmtInsert, stmtUpdate, stmtDelete, stmtTruncate:
		t, err := s.lookup(c, ks, st.table)
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
		cas := st.conditional()
		if !cas && isSerial(x.cl) {
			// ConsistencyLevel.validateForWrite.
			return nil, invalidf("You must use conditional updates for serializable writes")
		}
		m, err := s.planWrite(x, t, st)
		if err != nil {
			return nil, err
		}
		if cas {
			if err := x.checkSerial(); err != nil {
				return nil, err
			}
		}
		// The replica check comes after validation, as in Cassandra
		// (StorageProxy.mutate), and an unavailable write applies nothing.
		// A transaction's Paxos round needs its serial consistency's
		// quorum first (StorageProxy.cas), then its commit the
		// statement's consistency.
		if x.checkCL {
			if cas {
				if err := s.assureLive(t, x.serialLevel(), m.pks); err != nil {
					return nil, err
				}
			}
			if err := s.assureLive(t, x.cl, m.pks); err != nil {
				return nil, err
			}
		}
		applied, existing := m.apply(x.now)
		s.countWrite(c, t, m.pks)
		if applied && st.kind != stmtDelete {
			s.stats.rows.Add(1)
		}
		if cas {
			return conditionalResult(t, applied, existing, m.condCols, x.now), nil
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
	s.refreshSystem()
	s.pushSchemaEvent(res)
	return res, nil
}

func (s *Server) runBatch(c *conn, b *message.Batch) (message.Message, bool) {
	type unit struct {
		st *statement
		x  *execCtx
	}
	now := s.cfg.Now().UnixNano()
	// One write timestamp for the whole batch: the client's default
	// timestamp, else the server's (cql3/statements/BatchStatement.java).
	var ts int64
	if b.DefaultTimestamp != nil {
		ts = *b.DefaultTimestamp
	} else {
		ts = s.nextTimestamp()
	}
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
		if st.conditional() {
			return errorMessage(invalidf("conditional statements in batches are not supported by cqltest")), false
		}
		x := &execCtx{keyspace: ks, values: ch.Values, now: now, ts: ts, tsSet: true}
		if err := x.checkArity(st); err != nil {
			return errorMessage(err), false
		}
		units[i] = unit{st, x}
		if !systemKeyspaces[statementKeyspace(st, x)] {
			user = true
		}
	}
	var f Fault
	if user {
		var ok bool
		if f, ok = s.serviceTime(c); !ok {
			return nil, true
		}
		switch f {
		case FaultNone, FaultTimeoutApplied:
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
		if err := s.assureLive(m.t, b.Consistency, m.pks); err != nil {
			return errorMessage(err), false
		}
	}
	s.countBatch(c, muts)
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
		st.BatchKeyspaces[b.Keyspace]++
		for _, u := range units {
			st.Statements[string(u.st.kind)]++
		}
		if len(st.BatchPartitions) < maxBatchPartitions {
			st.BatchPartitions = append(st.BatchPartitions, len(partitions))
		}
	})
	if f == FaultTimeoutApplied {
		s.stats.inj.Add(1)
		bt := b.Type
		return faultMessage(f, false, &bt, b.Consistency), false // applied, yet a timeout
	}
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
	resultID []byte // v5 result metadata id (resultMetadataID)
}

// resultMetadataID identifies a statement's result columns in v5 (PREPARED
// sends it, EXECUTE echoes it): an MD5 over each column's name and type,
// as cql3/ResultSet.java computeResultMetadataId; opaque to clients.
func resultMetadataID(md *message.RowsMetadata) []byte {
	h := md5.New()
	if md != nil {
		for _, c := range md.Columns {
			h.Write([]byte(c.Name))
			h.Write([]byte{0})
			h.Write([]byte(c.Type.AsCql()))
			h.Write([]byte{0, 0})
		}
	}
	return h.Sum(nil)
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
	p := &prepared{id: id, keyspace: ks, st: st, vars: vars, result: result, resultID: resultMetadataID(result)}
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
