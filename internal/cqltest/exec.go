package cqltest

import (
	"encoding/binary"
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
}

func (x *execCtx) checkArity(st *statement) error {
	if len(x.values) != st.markers {
		return invalidf("There were %d markers(?) in CQL but %d bound variables", st.markers, len(x.values))
	}
	return nil
}

// bind returns the value of a term as type typ: the bound bytes for a marker
// (nil for null, unset=true for an unset value) or the encoded literal.
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
		return pv.Contents, false, nil
	}
	b, err := encodeLiteral(typ, t)
	if err != nil {
		return nil, false, invalidf("%v", err)
	}
	return b, false, nil
}

func (x *execCtx) bindInt(t *term, what string) (n int64, set bool, err error) {
	if t == nil {
		return 0, false, nil
	}
	v, unset, err := x.bind(*t, mustType("int"))
	if err != nil || unset || v == nil {
		return 0, false, err
	}
	switch len(v) {
	case 4:
		n = int64(int32(binary.BigEndian.Uint32(v)))
	case 8:
		n = int64(binary.BigEndian.Uint64(v))
	default:
		return 0, false, invalidf("Invalid %s value", what)
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
			v, unset, err := x.bind(r.terms[0], typ)
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

func (t *table) rowMatches(r *row, rs []restriction) bool {
	for _, res := range rs {
		cell := r.cells[res.col]
		if cell == nil {
			return false
		}
		switch res.op {
		case "=", "IN":
			if !slices.ContainsFunc(res.vals, func(v []byte) bool { return bytesEqual(v, cell) }) {
				return false
			}
		default:
			c := compareValues(t.cols[res.col].typ, cell, res.vals[0])
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

// selectRows returns the live rows matching rs, partition by partition.
// Callers hold t.mu for reading.
func (t *table) selectRows(rs []restriction, now int64, limit int) []*row {
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
	var out []*row
	for _, p := range parts {
		for _, r := range p.rows {
			if r.live(now) && t.rowMatches(r, rs) {
				out = append(out, r)
				if limit > 0 && len(out) == limit {
					return out
				}
			}
		}
	}
	return out
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
	limit, hasLimit, err := x.bindInt(st.limit, "LIMIT")
	if err != nil {
		return nil, err
	}
	if hasLimit && limit <= 0 {
		return nil, invalidf("LIMIT must be strictly positive")
	}
	// Like Cassandra, a valid statement meets the replica check: after
	// its values are bound and checked, before any replica is read.
	if x.checkCL {
		if err := s.assureLive(t, x.cl); err != nil {
			return nil, err
		}
	}
	t.mu.RLock()
	var data message.RowSet
	if st.countAll {
		n := len(t.selectRows(rs, x.now, 0))
		data = message.RowSet{{binary.BigEndian.AppendUint64(nil, uint64(n))}}
	} else {
		rows := t.selectRows(rs, x.now, int(limit))
		data = make(message.RowSet, len(rows))
		for i, r := range rows {
			out := make(message.Row, len(idx))
			for j, c := range idx {
				out[j] = r.cells[c]
			}
			data[i] = out
		}
	}
	t.mu.RUnlock()

	// Paging: the paging state is the offset of the next row of the same query.
	var off uint64
	if len(x.pagingState) == 8 {
		off = min(binary.BigEndian.Uint64(x.pagingState), uint64(len(data)))
	}
	data = data[off:]
	if x.pageSize > 0 && len(data) > int(x.pageSize) {
		data = data[:x.pageSize]
		md.PagingState = binary.BigEndian.AppendUint64(nil, off+uint64(x.pageSize))
	}
	if x.skipMetadata {
		md.Columns = nil
	}
	return &message.RowsResult{Metadata: md, Data: data}, nil
}

// mutation is a planned write: validated and bound, not yet applied, so a batch
// can be checked whole before any of it is applied.
type mutation struct {
	t       *table
	kind    stmtKind
	keys    []string // partitions touched
	pk      [][]byte // for upserts
	cells   [][]byte
	set     []bool
	expires int64
	rs      []restriction // for deletes
	ifCond  bool          // IF NOT EXISTS (insert) / IF EXISTS (update, delete)
}

func (s *Server) planWrite(x *execCtx, t *table, st *statement) (*mutation, error) {
	m := &mutation{t: t, kind: st.kind, ifCond: st.ifExists}
	if st.kind == stmtDelete {
		rs, err := x.restrictions(t, st.where)
		if err != nil {
			return nil, err
		}
		keys, _, ok := t.partitionKeys(rs)
		if !ok {
			return nil, invalidf("Some partition key parts are missing: DELETE needs the whole partition key")
		}
		m.keys, m.rs = keys, rs
		return m, nil
	}
	m.cells = make([][]byte, len(t.cols))
	m.set = make([]bool, len(t.cols))
	assign := func(name string, tm term) error {
		c, err := t.column(name)
		if err != nil {
			return err
		}
		if m.set[c] {
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
		m.cells[c], m.set[c] = v, true
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
			if !m.set[c] {
				return nil, invalidf("Some primary key parts are missing: %s", t.cols[c].name)
			}
			if m.cells[c] == nil {
				return nil, invalidf("Invalid null value in condition for column %s", t.cols[c].name)
			}
		}
	}
	m.pk = make([][]byte, len(t.pk))
	for j, c := range t.pk {
		m.pk[j] = m.cells[c]
	}
	m.keys = []string{partitionKey(m.pk)}
	ttl, hasTTL, err := x.bindInt(st.ttl, "TTL")
	if err != nil {
		return nil, err
	}
	if _, _, err = x.bindInt(st.timestamp, "TIMESTAMP"); err != nil {
		return nil, err
	}
	if ttl < 0 {
		return nil, invalidf("A TTL must be greater or equal to 0, but was %d", ttl)
	}
	if !hasTTL {
		ttl = t.defaultTTL
	}
	if ttl > 0 {
		m.expires = x.now + ttl*1e9
	}
	return m, nil
}

// apply performs the write. For conditional writes it reports whether the
// condition held, and the existing row when it did not.
func (m *mutation) apply(now int64) (applied bool, existing *row) {
	t := m.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if m.kind == stmtDelete {
		n := 0
		for _, k := range m.keys {
			p := t.parts[k]
			if p == nil {
				continue
			}
			kept := p.rows[:0]
			for _, r := range p.rows {
				if r.live(now) && t.rowMatches(r, m.rs) {
					n++
					continue
				}
				kept = append(kept, r)
			}
			t.rows -= len(p.rows) - len(kept)
			clear(p.rows[len(kept):])
			p.rows = kept
			if len(p.rows) == 0 {
				delete(t.parts, k)
			}
		}
		return !m.ifCond || n > 0, nil
	}
	if m.ifCond {
		var found *row
		if p := t.parts[m.keys[0]]; p != nil {
			i, ok := slices.BinarySearchFunc(p.rows, &row{cells: m.cells}, t.compareCK)
			if ok && p.rows[i].live(now) {
				found = p.rows[i]
			}
		}
		if (m.kind == stmtInsert) == (found != nil) {
			return false, found
		}
	}
	t.upsert(m.keys[0], m.pk, m.cells, m.set, m.expires)
	return true, nil
}

// conditionalResult is the [applied] row of a lightweight transaction.
func conditionalResult(t *table, applied bool, existing *row) message.Message {
	md := &message.RowsMetadata{ColumnCount: 1, Columns: []*message.ColumnMetadata{
		{Keyspace: t.ks, Table: t.name, Name: "[applied]", Type: datatype.Boolean},
	}}
	r := message.Row{encBool(applied)}
	if existing != nil {
		for i, c := range t.cols {
			md.Columns = append(md.Columns, &message.ColumnMetadata{Keyspace: t.ks, Table: t.name, Name: c.name, Index: int32(i + 1), Type: c.typ.dt})
			r = append(r, existing.cells[i])
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
