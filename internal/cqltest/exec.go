package cqltest

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/datastax/go-cassandra-native-protocol/datatype"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// This file executes parsed statements against the store: binding values,
// finding rows for a WHERE clause, planning and applying writes, and describing
// statements for PREPARE (bind variable specs, partition key indexes, result
// columns).

// execCtx is what one statement execution needs besides the statement.
type execCtx struct {
	keyspace     string // keyspace for unqualified table names
	values       []*primitive.Value
	pageSize     int32
	pagingState  []byte
	skipMetadata bool
	now          int64 // unix nanoseconds, for TTLs
	// cl is the request's consistency level; checkCL says to check it
	// against the live replicas (a client's request, not Server.Exec).
	cl      primitive.ConsistencyLevel
	checkCL bool
	// serial is the serial consistency of a lightweight transaction's
	// Paxos round, nil when the client sent none: SERIAL then
	// (cql3/QueryOptions.java Codec, without the SERIAL_CONSISTENCY flag).
	serial *primitive.ConsistencyLevel
	// ts is the write timestamp of statements without USING TIMESTAMP:
	// the request's default timestamp, else set on first use
	// (Server.timestamp).
	ts    int64
	tsSet bool
	// warnings go back with the answer (tombstone_warn_threshold).
	warnings []string
	// newResultID, when set, is a prepared SELECT's result metadata id
	// that the client's EXECUTE did not carry (v5): the rows go with
	// their columns and this id, skip-metadata or not.
	newResultID []byte
}

func (x *execCtx) checkArity(st *statement) error {
	if len(x.values) != st.markers {
		return invalidf("There were %d markers(?) in CQL but %d bound variables", st.markers, len(x.values))
	}
	return nil
}

// bind returns the value of a term as type typ: the bound bytes for a marker
// (nil for null, unset=true for an unset value), checked against typ as
// Cassandra's serializers check them (validateValue), or the encoded
// literal.
func (x *execCtx) bind(t term, typ *colType) (v []byte, unset bool, err error) {
	if t.kind == termMarker {
		if t.marker >= len(x.values) {
			return nil, false, invalidf("missing bound value %d", t.marker)
		}
		pv := x.values[t.marker]
		switch pv.Type {
		case primitive.ValueTypeUnset:
			return nil, true, nil
		case primitive.ValueTypeNull:
			return nil, false, nil
		}
		if pv.Contents == nil {
			return []byte{}, false, nil
		}
		if err := validateValue(typ, pv.Contents); err != nil {
			return nil, false, invalidf("%v", err)
		}
		return pv.Contents, false, nil
	}
	b, err := encodeLiteral(typ, t)
	if err != nil {
		return nil, false, invalidf("%v", err)
	}
	return b, false, nil
}

// bindInt binds the TTL, LIMIT (int) or TIMESTAMP (bigint) of a statement.
func (x *execCtx) bindInt(t *term, typ string) (n int64, set bool, err error) {
	if t == nil {
		return 0, false, nil
	}
	v, unset, err := x.bind(*t, mustType(typ))
	if err != nil || unset || v == nil {
		return 0, false, err
	}
	switch len(v) {
	case 4:
		n = int64(int32(binary.BigEndian.Uint32(v)))
	case 8:
		n = int64(binary.BigEndian.Uint64(v))
	default:
		return 0, false, nil // empty: as unset
	}
	return n, true, nil
}

func (t *table) column(name string) (int, error) {
	i, ok := t.byName[name]
	if !ok {
		return 0, invalidf("Undefined column name %s in table %s.%s", name, t.ks, t.name)
	}
	return i, nil
}

// restriction is a relation with its values bound.
type restriction struct {
	col  int
	op   string
	vals [][]byte
}

func (x *execCtx) restrictions(t *table, rels []relation) ([]restriction, error) {
	out := make([]restriction, 0, len(rels))
	for _, r := range rels {
		col, err := t.column(r.col)
		if err != nil {
			return nil, err
		}
		typ := t.cols[col].typ
		res := restriction{col: col, op: r.op}
		if r.inAll {
			lt, _ := newColType("list", []*colType{typ})
			v, unset, err := x.bind(r.terms[0], lt)
			if err != nil {
				return nil, err
			}
			if unset || v == nil {
				return nil, invalidf("Invalid null value for IN restriction on %s", r.col)
			}
			if res.vals, err = splitCollection(v); err != nil {
				return nil, invalidf("IN value for %s: %v", r.col, err)
			}
		} else {
			for _, tm := range r.terms {
				v, unset, err := x.bind(tm, typ)
				if err != nil {
					return nil, err
				}
				if unset || v == nil {
					return nil, invalidf("Invalid null value in condition for column %s", r.col)
				}
				res.vals = append(res.vals, v)
			}
		}
		out = append(out, res)
	}
	return out, nil
}

// rowMatches reports whether r's values at now satisfy rs.
func (t *table) rowMatches(r *row, rs []restriction, now int64) bool {
	for _, res := range rs {
		v := t.value(r, res.col, now)
		if v == nil {
			return false
		}
		switch res.op {
		case "=", "IN":
			if !slices.ContainsFunc(res.vals, func(x []byte) bool { return bytesEqual(x, v) }) {
				return false
			}
		default:
			c := compareValues(t.cols[res.col].typ, v, res.vals[0])
			if (res.op == "<" && c >= 0) || (res.op == "<=" && c > 0) || (res.op == ">" && c <= 0) || (res.op == ">=" && c < 0) {
				return false
			}
		}
	}
	return true
}

// partitionKeys returns the encoded keys of the partitions the restrictions
// name, in IN-list order without duplicates, or ok=false when some partition key
// column is not restricted by = or IN (then every partition is a candidate).
func (t *table) partitionKeys(rs []restriction) (keys []string, vals [][][]byte, ok bool) {
	perCol := make([][][]byte, len(t.pk))
	for j, i := range t.pk {
		for _, res := range rs {
			if res.col == i && (res.op == "=" || res.op == "IN") {
				perCol[j] = res.vals
			}
		}
		if perCol[j] == nil {
			return nil, nil, false
		}
	}
	seen := map[string]bool{}
	cur := make([][]byte, len(t.pk))
	var walk func(j int)
	walk = func(j int) {
		if j == len(t.pk) {
			k := partitionKey(cur)
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
				vals = append(vals, slices.Clone(cur))
			}
			return
		}
		for _, v := range perCol[j] {
			cur[j] = v
			walk(j + 1)
		}
	}
	walk(0)
	return keys, vals, true
}

// readPartitions is the partition keys a read names, for its replica check
// on a ring; nil (every token range) for a scan, or with one node, which
// needs no keys.
func (s *Server) readPartitions(t *table, rs []restriction) [][][]byte {
	if len(s.nodes) == 1 || t.placement == nil {
		return nil
	}
	_, vals, ok := t.partitionKeys(rs)
	if !ok {
		return nil
	}
	if vals == nil {
		return [][][]byte{} // IN (): no partition, nothing to check
	}
	return vals
}

// scan calls fn with each live row matching rs, partition by partition in
// clustering order, until fn returns false. It counts the tombstones it
// passes on its way (cells.go), in the rows of the slice the key
// restrictions select and in the partitions' range deletions, and gives
// fn the count so far. Callers hold t.mu for reading.
func (t *table) scan(rs []restriction, now int64, fn func(r *row, tombstones int) bool) (tombstones int) {
	var parts []*partition
	if keys, _, ok := t.partitionKeys(rs); ok {
		for _, k := range keys {
			if p := t.parts[k]; p != nil {
				parts = append(parts, p)
			}
		}
	} else {
		parts = t.sortedPartitions()
	}
	var keyRs []restriction // restrictions on key columns: the slice read
	for _, res := range rs {
		if t.cols[res.col].kind <= colClustering {
			keyRs = append(keyRs, res)
		}
	}
	for _, p := range parts {
		tombstones += t.rangeTombstones(p, keyRs, now)
		for _, r := range p.rows {
			if !t.rowMatches(r, keyRs, now) {
				continue
			}
			tombstones += t.rowTombstones(r, now)
			if t.rowLive(r, now) && t.rowMatches(r, rs, now) && !fn(r, tombstones) {
				return tombstones
			}
		}
	}
	return tombstones
}

func columnSpecs(t *table, idx []int) []*message.ColumnMetadata {
	out := make([]*message.ColumnMetadata, len(idx))
	for i, c := range idx {
		out[i] = &message.ColumnMetadata{Keyspace: t.ks, Table: t.name, Name: t.cols[c].name, Index: int32(i), Type: t.cols[c].typ.dt}
	}
	return out
}

// projection resolves the selected columns.
func (t *table) projection(st *statement) ([]int, error) {
	if st.selectCols == nil {
		idx := make([]int, len(t.cols))
		for i := range idx {
			idx[i] = i
		}
		return idx, nil
	}
	idx := make([]int, len(st.selectCols))
	for i, name := range st.selectCols {
		c, err := t.column(name)
		if err != nil {
			return nil, err
		}
		idx[i] = c
	}
	return idx, nil
}

func (t *table) resultMetadata(st *statement) (*message.RowsMetadata, []int, error) {
	if st.countAll {
		return &message.RowsMetadata{ColumnCount: 1, Columns: []*message.ColumnMetadata{
			{Keyspace: t.ks, Table: t.name, Name: "count", Type: datatype.Bigint},
		}}, nil, nil
	}
	idx, err := t.projection(st)
	if err != nil {
		return nil, nil, err
	}
	return &message.RowsMetadata{ColumnCount: int32(len(idx)), Columns: columnSpecs(t, idx)}, idx, nil
}

func (s *Server) execSelect(x *execCtx, t *table, st *statement) (message.Message, error) {
	md, idx, err := t.resultMetadata(st)
	if err != nil {
		return nil, err
	}
	rs, err := x.restrictions(t, st.where)
	if err != nil {
		return nil, err
	}
	limit, hasLimit, err := x.bindInt(st.limit, "int")
	if err != nil {
		return nil, err
	}
	if hasLimit && limit <= 0 {
		return nil, invalidf("LIMIT must be strictly positive")
	}
	// Like Cassandra, a valid statement meets the replica check: after
	// its values are bound and checked, before any replica is read.
	if x.checkCL {
		if err := s.assureLive(t, x.cl, s.readPartitions(t, rs)); err != nil {
			return nil, err
		}
	}
	// Paging: the paging state is the offset of the next row of the same
	// query. A page reads its rows and one more (is there another page?),
	// and counts the tombstones from its first row on.
	off := 0
	if len(x.pagingState) == 8 {
		off = int(min(binary.BigEndian.Uint64(x.pagingState), math.MaxInt32))
	}
	end := math.MaxInt
	if hasLimit {
		end = int(limit)
	}
	if x.pageSize > 0 && !st.countAll {
		end = min(end, off+int(x.pageSize)+1)
	}
	t.mu.RLock()
	var (
		data          message.RowSet
		n, tombstones int
		before        int // tombstones on earlier pages
	)
	tombstones = t.scan(rs, x.now, func(r *row, tombs int) bool {
		if st.countAll {
			n++
			return true
		}
		if n == off {
			before = tombs - t.rowTombstones(r, x.now)
		}
		if n >= off {
			out := make(message.Row, len(idx))
			for j, c := range idx {
				out[j] = t.value(r, c, x.now)
			}
			data = append(data, out)
		}
		n++
		return n < end
	})
	t.mu.RUnlock()
	if st.countAll {
		data = message.RowSet{{binary.BigEndian.AppendUint64(nil, uint64(n))}}
	}
	tombstones -= before
	if err := s.checkTombstones(x, t, st, len(data), tombstones); err != nil {
		return nil, err
	}
	if x.pageSize > 0 && len(data) > int(x.pageSize) {
		data = data[:x.pageSize]
		md.PagingState = binary.BigEndian.AppendUint64(nil, uint64(off)+uint64(x.pageSize))
	}
	if x.newResultID != nil {
		md.NewResultMetadataId = x.newResultID
	} else if x.skipMetadata {
		md.Columns = nil
	}
	return &message.RowsResult{Metadata: md, Data: data}, nil
}

// checkTombstones applies tombstone_warn_threshold and
// tombstone_failure_threshold to a read of a user table that passed
// tombstones (db/ReadCommand.java; system keyspaces are exempt): a warning
// in the answer, or READ_FAILURE as a coordinator answers a replica's
// TombstoneOverwhelmingException.
func (s *Server) checkTombstones(x *execCtx, t *table, st *statement, live, tombstones int) error {
	if systemKeyspaces[t.ks] {
		return nil
	}
	if tombstones > s.cfg.TombstoneFailureThreshold {
		s.stats.update(func(s *Stats) { s.TombstoneFailures++ })
		return &reqError{code: codeReadFailure, cl: x.cl, msg: fmt.Sprintf(
			"Operation failed - received 0 responses and 1 failures: READ_TOO_MANY_TOMBSTONES from %s (scanned over %d tombstones in %s.%s; tombstone_failure_threshold is %d)",
			s.addrString(), tombstones, t.ks, t.name, s.cfg.TombstoneFailureThreshold)}
	}
	if tombstones > s.cfg.TombstoneWarnThreshold {
		s.stats.update(func(s *Stats) { s.TombstoneWarnings++ })
		x.warnings = append(x.warnings, fmt.Sprintf("Read %d live rows and %d tombstone cells for query %.512s (see tombstone_warn_threshold)", live, tombstones, st.text))
	}
	return nil
}

// mutation is a planned write: validated and bound, not yet applied, so a batch
// can be checked whole before any of it is applied.
type mutation struct {
	t      *table
	kind   stmtKind
	keys   []string   // partitions touched
	pks    [][][]byte // their partition key values
	cells  []cell     // INSERT, UPDATE: the row's key and the cells written
	marker cell       // INSERT: the row marker
	// DELETE: the WHERE clause, its clustering restrictions, and the cells
	// deleted (DELETE c FROM) or nil for rows.
	rs, ckRs []restriction
	delCols  []int
	ts       int64 // the statement's write timestamp
	now      int64 // unix ns: deletion time of its tombstones
	ifCond   bool  // IF NOT EXISTS (insert) / IF EXISTS (update, delete)
	// IF c op v conditions (UPDATE, DELETE), and the columns a
	// transaction that is not applied answers with: the conditions'
	// columns in IF order, nil for every column (IF [NOT] EXISTS).
	conds    []boundCond
	condCols []int
}

// boundCond is a condition with its value bound (nil: null).
type boundCond struct {
	col int
	op  string
	v   []byte
}

// maxTTL is the largest TTL, 20 years (cql3/Attributes.java MAX_TTL).
const maxTTL = 20 * 365 * 24 * 60 * 60

func (s *Server) planWrite(x *execCtx, t *table, st *statement) (*mutation, error) {
	m := &mutation{t: t, kind: st.kind, ifCond: st.ifExists, now: x.now}
	ts, hasTS, err := x.bindInt(st.timestamp, "bigint")
	if err != nil {
		return nil, err
	}
	if hasTS && ts == math.MinInt64 {
		return nil, invalidf("Invalid timestamp value: %d", ts)
	}
	switch {
	case st.conditional() && st.timestamp != nil:
		return nil, invalidf("Cannot provide custom timestamp for conditional updates")
	case st.conditional():
		// A lightweight transaction's writes carry its Paxos ballot's
		// timestamp, the coordinator's clock made to exceed every
		// timestamp it gave before (ClientState.getTimestampForPaxos;
		// Commit.Proposal.of rewrites the update's timestamps to the
		// ballot's): the client's default timestamp is not used.
		ts = s.nextTimestamp()
	case !hasTS:
		ts = s.timestamp(x)
	}
	m.ts = ts
	if err := x.bindConditions(t, st, m); err != nil {
		return nil, err
	}
	if st.kind == stmtDelete {
		return m, s.planDelete(x, t, st, m)
	}
	m.cells = make([]cell, len(t.cols))
	ttl, hasTTL, err := x.bindInt(st.ttl, "int")
	if err != nil {
		return nil, err
	}
	if ttl < 0 {
		return nil, invalidf("A TTL must be greater or equal to 0, but was %d", ttl)
	}
	if ttl > maxTTL {
		return nil, invalidf("ttl is too large. requested (%d) maximum (%d)", ttl, maxTTL)
	}
	if !hasTTL {
		ttl = t.defaultTTL
	}
	// An expiring cell's local expiration time is in whole seconds, the
	// request's now in seconds (rounded down) plus the TTL
	// (db/LivenessInfo.java, ExpiringLivenessInfo; rows/BufferCell
	// expiring), and reads compare their own now in seconds with it: the
	// cell is gone at that second, up to a second before now + TTL.
	var expires int64
	if ttl > 0 {
		expires = (x.now/1e9 + ttl) * 1e9
	}
	assign := func(name string, tm term) error {
		c, err := t.column(name)
		if err != nil {
			return err
		}
		if m.cells[c].ok {
			return invalidf("Multiple definitions found for column %s", name)
		}
		v, unset, err := x.bind(tm, t.cols[c].typ)
		if err != nil {
			return err
		}
		if unset {
			if t.cols[c].kind <= colClustering {
				return invalidf("Invalid unset value for column %s", name)
			}
			return nil
		}
		switch {
		case t.cols[c].kind <= colClustering:
			m.cells[c] = cell{v: v, ok: true}
		case v == nil: // null: a tombstone
			m.cells[c] = cell{ts: ts, ldt: x.now, ok: true, del: true}
		default:
			m.cells[c] = cell{v: v, ts: ts, ldt: expires, ok: true}
		}
		return nil
	}
	for i, name := range st.insertCols {
		if c, ok := t.byName[name]; ok && st.kind == stmtUpdate && t.cols[c].kind <= colClustering {
			return nil, invalidf("PRIMARY KEY part %s found in SET part", name)
		}
		if err := assign(name, st.values[i]); err != nil {
			return nil, err
		}
	}
	if st.kind == stmtUpdate {
		for _, r := range st.where {
			if r.op != "=" {
				return nil, invalidf("UPDATE supports only = relations in cqltest (column %s)", r.col)
			}
			if err := assign(r.col, r.terms[0]); err != nil {
				return nil, err
			}
		}
	}
	for _, key := range [2][]int{t.pk, t.ck} {
		for _, c := range key {
			if !m.cells[c].ok {
				return nil, invalidf("Some primary key parts are missing: %s", t.cols[c].name)
			}
			if m.cells[c].v == nil {
				return nil, invalidf("Invalid null value in condition for column %s", t.cols[c].name)
			}
		}
	}
	pk := make([][]byte, len(t.pk))
	for j, c := range t.pk {
		pk[j] = m.cells[c].v
	}
	m.keys, m.pks = []string{partitionKey(pk)}, [][][]byte{pk}
	if st.kind == stmtInsert {
		m.marker = cell{ts: ts, ldt: expires, ok: true}
	}
	return m, nil
}

// bindConditions binds the IF conditions of an UPDATE or DELETE:
// regular columns only, an unset value refused, null compared by = and
// != only (cql3/conditions/ColumnCondition.java compareWithOperator).
func (x *execCtx) bindConditions(t *table, st *statement, m *mutation) error {
	seen := map[int]bool{}
	for _, c := range st.conds {
		col, err := t.column(c.col)
		if err != nil {
			return err
		}
		if t.cols[col].kind <= colClustering {
			return invalidf("PRIMARY KEY column '%s' cannot have IF conditions", c.col)
		}
		v, unset, err := x.bind(c.value, t.cols[col].typ)
		if err != nil {
			return err
		}
		if unset {
			return invalidf("Invalid 'unset' value in condition")
		}
		if v == nil && c.op != "=" && c.op != "!=" {
			return invalidf("Invalid comparison with null for operator \"%s\"", c.op)
		}
		m.conds = append(m.conds, boundCond{col: col, op: c.op, v: v})
		if !seen[col] {
			seen[col] = true
			m.condCols = append(m.condCols, col)
		}
	}
	return nil
}

// planDelete binds a DELETE: the partitions (whole partition key by = or
// IN), the clustering restrictions, the cells.
func (s *Server) planDelete(x *execCtx, t *table, st *statement, m *mutation) error {
	rs, err := x.restrictions(t, st.where)
	if err != nil {
		return err
	}
	keys, pks, ok := t.partitionKeys(rs)
	if !ok {
		return invalidf("Some partition key parts are missing: DELETE needs the whole partition key")
	}
	m.keys, m.pks, m.rs = keys, pks, rs
	if st.conditional() {
		// A transaction is on one partition, and IF conditions on one
		// row (ModificationStatement.makeCasRequest; DeleteStatement).
		for _, res := range rs {
			if res.op == "IN" {
				if t.cols[res.col].kind == colPartitionKey {
					return invalidf("IN on the partition key is not supported with conditional deletions")
				}
				return invalidf("IN on the clustering key columns is not supported with conditional deletions")
			}
		}
	}
	for _, res := range rs {
		switch t.cols[res.col].kind {
		case colClustering:
			m.ckRs = append(m.ckRs, res)
		case colPartitionKey:
		default:
			return invalidf("Invalid where clause contains non PRIMARY KEY columns: %s", t.cols[res.col].name)
		}
	}
	for _, name := range st.deleteCols {
		c, err := t.column(name)
		if err != nil {
			return err
		}
		if t.cols[c].kind <= colClustering {
			return invalidf("Invalid identifier %s for deletion (should not be a PRIMARY KEY part)", name)
		}
		m.delCols = append(m.delCols, c)
	}
	if m.delCols != nil && len(t.ck) > 0 && t.clusteringKeys(m.ckRs) == nil {
		return invalidf("Range deletions are not supported for specific columns")
	}
	if m.conds != nil {
		rows := t.clusteringKeys(m.ckRs)
		if rows == nil {
			return invalidf("DELETE statements must restrict all PRIMARY KEY columns with equality relations in order to use IF condition on non static columns")
		}
		m.cells = rows[0]
		for j, i := range t.pk {
			m.cells[i] = cell{v: m.pks[0][j], ok: true}
		}
	}
	return nil
}

// clusteringKeys lists the rows the restrictions name by = or IN on every
// clustering column, as key cells (nil when they select a slice).
func (t *table) clusteringKeys(rs []restriction) [][]cell {
	perCol := make([][][]byte, len(t.ck))
	for j, i := range t.ck {
		for _, res := range rs {
			if res.col == i && (res.op == "=" || res.op == "IN") {
				perCol[j] = res.vals
			}
		}
		if perCol[j] == nil {
			return nil
		}
	}
	var out [][]cell
	cur := make([][]byte, len(t.ck))
	var walk func(j int)
	walk = func(j int) {
		if j == len(t.ck) {
			cells := make([]cell, len(t.cols))
			for k, i := range t.ck {
				cells[i] = cell{v: cur[k], ok: true}
			}
			out = append(out, cells)
			return
		}
		for _, v := range perCol[j] {
			cur[j] = v
			walk(j + 1)
		}
	}
	walk(0)
	return out
}

// timestamp is the write timestamp of a statement without USING
// TIMESTAMP: the request's default timestamp if the client sent one, else
// the server's clock in microseconds, made strictly increasing
// (service/ClientState.java getTimestamp), the same for every statement
// of a BATCH.
func (s *Server) timestamp(x *execCtx) int64 {
	if !x.tsSet {
		x.ts, x.tsSet = s.nextTimestamp(), true
	}
	return x.ts
}

func (s *Server) nextTimestamp() int64 {
	now := s.cfg.Now().UnixMilli() * 1000
	for {
		last := s.lastTS.Load()
		ts := now
		if last >= now {
			ts = last + 1
		}
		if s.lastTS.CompareAndSwap(last, ts) {
			return ts
		}
	}
}

// apply performs the write. For conditional writes it reports whether the
// condition held, and the existing row when it did not. The check and the
// write are one step under the table's lock: what a Paxos round makes of
// them on a real cluster (service/paxos; CQL3CasRequest.appliesTo reads
// the row at the ballot, makeUpdates writes it).
func (m *mutation) apply(now int64) (applied bool, existing *row) {
	t := m.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if m.conds != nil {
		cur := m.current(now)
		if !m.holds(cur, now) {
			return false, cur
		}
	}
	if m.kind == stmtDelete {
		return m.applyDelete(now), nil
	}
	if m.ifCond {
		found := m.current(now)
		if (m.kind == stmtInsert) == (found != nil) {
			return false, found
		}
	}
	t.write(m.keys[0], m.pks[0], m.cells, m.marker, now)
	return true, nil
}

// current is the live row the statement's key names, or nil (an
// expired or deleted row is none). Callers hold t.mu.
func (m *mutation) current(now int64) *row {
	t := m.t
	p := t.parts[m.keys[0]]
	if p == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(p.rows, &row{cells: m.cells}, t.compareCK)
	if ok && t.rowLive(p.rows[i], now) {
		return p.rows[i]
	}
	return nil
}

// holds reports whether every IF condition holds on r (nil: no row, every
// column null), as ColumnCondition's compareWithOperator: a null value is
// equal only to null; against a null column only != holds.
func (m *mutation) holds(r *row, now int64) bool {
	for _, c := range m.conds {
		var cur []byte
		if r != nil {
			cur = m.t.value(r, c.col, now)
		}
		var ok bool
		switch {
		case c.v == nil:
			ok = (cur == nil) == (c.op == "=")
		case cur == nil:
			ok = c.op == "!="
		default:
			cmp := compareValues(m.t.cols[c.col].typ, cur, c.v)
			switch c.op {
			case "=":
				ok = cmp == 0
			case "!=":
				ok = cmp != 0
			case "<":
				ok = cmp < 0
			case "<=":
				ok = cmp <= 0
			case ">":
				ok = cmp > 0
			case ">=":
				ok = cmp >= 0
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// applyDelete writes the DELETE's tombstones; it reports whether a live
// row matched (IF EXISTS).
func (m *mutation) applyDelete(now int64) bool {
	t := m.t
	d := deletion{ts: m.ts, ldt: m.now, ok: true}
	found := false
	for k, key := range m.keys {
		p := t.getPartition(key, m.pks[k])
		t.purge(p, now)
		// The rows named, with this partition's key (a row kept as a
		// tombstone has its whole key, as any row).
		keyed := func(rows [][]cell) [][]cell {
			for _, cells := range rows {
				for j, i := range t.pk {
					cells[i] = cell{v: m.pks[k][j], ok: true}
				}
			}
			return rows
		}
		if m.ifCond && !found {
			for _, r := range p.rows {
				if t.rowLive(r, now) && t.rowMatches(r, m.rs, now) {
					found = true
					break
				}
			}
			if !found {
				continue
			}
		}
		rows := keyed(t.clusteringKeys(m.ckRs))
		switch {
		case m.delCols != nil:
			if len(t.ck) == 0 {
				rows = keyed([][]cell{make([]cell, len(t.cols))})
			}
			for _, cells := range rows {
				r, _ := t.getRow(p, cells)
				for _, c := range m.delCols {
					if !t.rowDeletion(p, r).shadows(m.ts) {
						r.cells[c] = reconcile(r.cells[c], cell{ts: m.ts, ldt: m.now, ok: true, del: true})
					}
				}
				t.notePurge(p, m.now)
			}
		case len(m.ckRs) == 0:
			t.deletePartition(p, d)
		case rows != nil:
			for _, cells := range rows {
				t.deleteRow(p, cells, d)
			}
		default:
			t.deleteRange(p, m.ckRs, d)
		}
	}
	return !m.ifCond || found
}

// conditionalResult is the answer of a lightweight transaction, as
// ModificationStatement.buildCasResultSet builds it: the row [applied];
// when not applied and the row exists, followed by its columns: all of
// them, in SELECT * order, for IF [NOT] EXISTS (cols nil), else the
// conditions' columns in IF order. Not applied on a missing row, the
// answer is [applied] alone (merge() of an empty failure result).
func conditionalResult(t *table, applied bool, existing *row, cols []int, now int64) message.Message {
	md := &message.RowsMetadata{ColumnCount: 1, Columns: []*message.ColumnMetadata{
		{Keyspace: t.ks, Table: t.name, Name: "[applied]", Type: datatype.Boolean},
	}}
	r := message.Row{encBool(applied)}
	if existing != nil {
		if cols == nil {
			cols = make([]int, len(t.cols))
			for i := range cols {
				cols[i] = i
			}
		}
		for j, i := range cols {
			c := t.cols[i]
			md.Columns = append(md.Columns, &message.ColumnMetadata{Keyspace: t.ks, Table: t.name, Name: c.name, Index: int32(j + 1), Type: c.typ.dt})
			r = append(r, t.value(existing, i, now))
		}
		md.ColumnCount = int32(len(md.Columns))
	}
	return &message.RowsResult{Metadata: md, Data: message.RowSet{r}}
}

// describe computes the PREPARE metadata: one column spec per bind marker (named
// as Cassandra names them: the column, in(col), [ttl], [timestamp], [limit]),
// the indexes of the markers that bind the partition key (so drivers can route
// by token), and the result columns of a SELECT.
func describe(t *table, st *statement) (*message.VariablesMetadata, *message.RowsMetadata, error) {
	vars := &message.VariablesMetadata{Columns: make([]*message.ColumnMetadata, st.markers)}
	if st.markers == 0 && t == nil {
		return vars, nil, nil
	}
	spec := func(tm term, name string, typ *colType) {
		if tm.kind == termMarker && tm.marker < len(vars.Columns) {
			ks, tbl := "", ""
			if t != nil {
				ks, tbl = t.ks, t.name
			}
			vars.Columns[tm.marker] = &message.ColumnMetadata{Keyspace: ks, Table: tbl, Name: name, Index: int32(tm.marker), Type: typ.dt}
		}
	}
	pkMarker := map[int]int{} // column -> marker
	for i, name := range st.insertCols {
		c, err := t.column(name)
		if err != nil {
			return nil, nil, err
		}
		spec(st.values[i], name, t.cols[c].typ)
		if st.values[i].kind == termMarker {
			pkMarker[c] = st.values[i].marker
		}
	}
	for _, r := range st.where {
		c, err := t.column(r.col)
		if err != nil {
			return nil, nil, err
		}
		typ := t.cols[c].typ
		switch {
		case r.inAll:
			lt, _ := newColType("list", []*colType{typ})
			spec(r.terms[0], "in("+r.col+")", lt)
		default:
			for _, tm := range r.terms {
				spec(tm, r.col, typ)
			}
			if r.op == "=" && r.terms[0].kind == termMarker {
				pkMarker[c] = r.terms[0].marker
			}
		}
	}
	for _, c := range st.conds {
		col, err := t.column(c.col)
		if err != nil {
			return nil, nil, err
		}
		spec(c.value, c.col, t.cols[col].typ)
	}
	if st.ttl != nil {
		spec(*st.ttl, "[ttl]", mustType("int"))
	}
	if st.timestamp != nil {
		spec(*st.timestamp, "[timestamp]", mustType("bigint"))
	}
	if st.limit != nil {
		spec(*st.limit, "[limit]", mustType("int"))
	}
	for i, c := range vars.Columns {
		if c == nil {
			return nil, nil, invalidf("bind marker %d is not supported in this position by cqltest", i)
		}
	}
	if t != nil {
		var pk []uint16
		for _, c := range t.pk {
			m, ok := pkMarker[c]
			if !ok {
				pk = nil
				break
			}
			pk = append(pk, uint16(m))
		}
		vars.PkIndices = pk
	}
	if st.kind == stmtSelect {
		md, _, err := t.resultMetadata(st)
		return vars, md, err
	}
	return vars, nil, nil
}
