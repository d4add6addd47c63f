package cqltest

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"sort"
	"strings"
	"sync"
	"time"
)

// The store keeps keyspaces, tables and rows in memory. Values are never
// decoded: a cell is the exact [bytes] the client sent and goes back out with the
// column's type from the schema. A partition is keyed by its encoded partition
// key; rows inside it are kept sorted by clustering key (see compareValues).

type colKind uint8

const (
	colPartitionKey colKind = iota
	colClustering
	colRegular
	colStatic
)

func (k colKind) String() string {
	return [...]string{"partition_key", "clustering", "regular", "static"}[k]
}

type column struct {
	name     string
	typ      *colType
	kind     colKind
	position int // index within the partition key or clustering key, -1 otherwise
	desc     bool
}

type keyspace struct {
	name          string
	replication   map[string]string
	placement     *placement // replication parsed; nil: never checked
	durableWrites bool
	tables        map[string]*table
}

type table struct {
	ks, name string
	// cols is in Cassandra's SELECT * order: partition key, clustering key, then
	// the other columns by name. Row cells are indexed the same way.
	cols   []*column
	byName map[string]int
	pk, ck []int // indexes into cols
	// regularIdx are the indexes of the other columns (cells).
	regularIdx []int
	options    map[string]term
	// defaultTTL is default_time_to_live in seconds (0: rows never expire).
	defaultTTL int64
	// gcGrace is gc_grace_seconds: how long a tombstone (or an expired
	// cell) is kept, and counted by reads, before it may be purged; it is
	// purged then only with Config.PurgeTombstones (purgeOK).
	gcGrace int64
	purgeOK bool
	id      [16]byte
	// placement is the keyspace's, for the consistency check of each
	// statement without a lookup of the keyspace.
	placement *placement

	mu    sync.RWMutex
	parts map[string]*partition
	rows  int // rows stored, live or not (rowCount counts the live ones)
}

// DefaultGCGraceSeconds is gc_grace_seconds when a table does not set it:
// 10 days (Cassandra's schema/TableParams.java DEFAULT_GC_GRACE_SECONDS).
const DefaultGCGraceSeconds = 864000

type store struct {
	now     func() time.Time
	localDC string // Config.DataCenter, where every live node is
	purge   bool   // Config.PurgeTombstones

	mu        sync.RWMutex
	keyspaces map[string]*keyspace
	schemaGen uint64
}

func newStore(now func() time.Time, localDC string, purge bool) *store {
	return &store{now: now, localDC: localDC, purge: purge, keyspaces: map[string]*keyspace{}}
}

// newTable builds a table from a parsed CREATE TABLE.
func newTable(ks string, st *statement) (*table, error) {
	t := &table{ks: ks, name: st.table, byName: map[string]int{}, options: map[string]term{}, parts: map[string]*partition{}}
	defs := map[string]columnDef{}
	for _, c := range st.columns {
		if _, dup := defs[c.name]; dup {
			return nil, invalidf("Multiple definition of identifier %s", c.name)
		}
		defs[c.name] = c
	}
	used := map[string]bool{}
	add := func(name string, kind colKind, pos int) error {
		d, ok := defs[name]
		if !ok {
			return invalidf("Unknown definition %s referenced in PRIMARY KEY", name)
		}
		if used[name] {
			return invalidf("Multiple definition of identifier %s in PRIMARY KEY", name)
		}
		if d.typ.base().name != d.typ.name || d.typ.name == "list" || d.typ.name == "set" || d.typ.name == "map" {
			if d.typ.name != "frozen" {
				return invalidf("Invalid non-frozen collection type for PRIMARY KEY component %s", name)
			}
		}
		used[name] = true
		t.byName[name] = len(t.cols)
		t.cols = append(t.cols, &column{name: name, typ: d.typ, kind: kind, position: pos, desc: st.descending[name]})
		return nil
	}
	for i, name := range st.partitionKey {
		if err := add(name, colPartitionKey, i); err != nil {
			return nil, err
		}
		t.pk = append(t.pk, i)
	}
	for i, name := range st.clustering {
		if err := add(name, colClustering, i); err != nil {
			return nil, err
		}
		t.ck = append(t.ck, len(st.partitionKey)+i)
	}
	for name := range st.descending {
		if i, ok := t.byName[name]; !ok || t.cols[i].kind != colClustering {
			return nil, invalidf("Only clustering key columns can be defined in CLUSTERING ORDER directive: %s", name)
		}
	}
	var rest []columnDef
	for _, c := range st.columns {
		if !used[c.name] {
			rest = append(rest, c)
		}
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i].name < rest[j].name })
	for _, c := range rest {
		kind := colRegular
		if c.static {
			kind = colStatic
		}
		t.byName[c.name] = len(t.cols)
		t.cols = append(t.cols, &column{name: c.name, typ: c.typ, kind: kind, position: -1})
	}
	for i, c := range t.cols {
		if c.kind > colClustering {
			t.regularIdx = append(t.regularIdx, i)
		}
	}
	for _, o := range st.options {
		t.options[o.name] = o.value
		if o.name == "default_time_to_live" {
			n, err := encodeLiteral(mustType("bigint"), o.value)
			if err != nil || int64(binary.BigEndian.Uint64(n)) < 0 {
				return nil, invalidf("default_time_to_live must be a non-negative integer")
			}
			t.defaultTTL = int64(binary.BigEndian.Uint64(n))
		}
	}
	t.gcGrace = DefaultGCGraceSeconds
	if o, ok := t.options["gc_grace_seconds"]; ok {
		n, err := encodeLiteral(mustType("bigint"), o)
		if err != nil || int64(binary.BigEndian.Uint64(n)) < 0 {
			return nil, invalidf("gc_grace_seconds must be a non-negative integer")
		}
		t.gcGrace = int64(binary.BigEndian.Uint64(n))
	}
	t.id = md5.Sum([]byte(ks + "." + st.table))
	t.id[6] = t.id[6]&0x0f | 0x30 // a version-3 (name based) UUID, as a table id looks
	t.id[8] = t.id[8]&0x3f | 0x80
	return t, nil
}

// partitionKey encodes partition key components into a map key.
func partitionKey(vals [][]byte) string {
	n := 0
	for _, v := range vals {
		n += 4 + len(v)
	}
	b := make([]byte, 0, n)
	for _, v := range vals {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return string(b)
}

// compareCK orders two rows by clustering key.
func (t *table) compareCK(a, b *row) int {
	for _, i := range t.ck {
		c := compareValues(t.cols[i].typ, a.cells[i].v, b.cells[i].v)
		if t.cols[i].desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// sortedPartitions returns all partitions in key-byte order (a full scan).
// Cassandra scans in token order; tests should not rely on either.
func (t *table) sortedPartitions() []*partition {
	keys := make([]string, 0, len(t.parts))
	for k := range t.parts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*partition, len(keys))
	for i, k := range keys {
		out[i] = t.parts[k]
	}
	return out
}

func (t *table) truncate() {
	t.mu.Lock()
	t.parts = map[string]*partition{}
	t.rows = 0
	t.mu.Unlock()
}

// lookup finds a table; ks "" means the session has no keyspace.
func (s *store) lookup(ks, name string) (*table, error) {
	if ks == "" {
		return nil, invalidf("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	k := s.keyspaces[ks]
	if k == nil {
		return nil, invalidf("Keyspace %s does not exist", ks)
	}
	t := k.tables[name]
	if t == nil {
		return nil, invalidf("unconfigured table %s", name)
	}
	return t, nil
}

func (s *store) hasKeyspace(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keyspaces[name] != nil
}

// schemaVersion is a UUID that changes with every schema change, as
// system.local.schema_version does; drivers poll it for schema agreement.
func (s *store) schemaVersion() []byte {
	s.mu.RLock()
	gen := s.schemaGen
	s.mu.RUnlock()
	id := md5.Sum(binary.BigEndian.AppendUint64([]byte("cqltest-schema"), gen))
	id[6] = id[6]&0x0f | 0x30
	id[8] = id[8]&0x3f | 0x80
	return id[:]
}

// createKeyspace applies CREATE KEYSPACE; created is false when it existed and
// IF NOT EXISTS was given.
func (s *store) createKeyspace(st *statement) (created bool, err error) {
	ks := &keyspace{name: st.keyspace, durableWrites: true, replication: map[string]string{}, tables: map[string]*table{}}
	for _, o := range st.options {
		switch o.name {
		case "replication":
			if o.value.kind != termMap {
				return false, &reqError{code: codeConfig, msg: "replication must be a map"}
			}
			for i, k := range o.value.keys {
				ks.replication[k.text] = o.value.elems[i].text
			}
		case "durable_writes":
			ks.durableWrites = o.value.text == "true"
		default:
			return false, &reqError{code: codeConfig, msg: "Unknown property '" + o.name + "'"}
		}
	}
	if cls := ks.replication["class"]; cls != "" && !strings.Contains(cls, ".") {
		ks.replication["class"] = "org.apache.cassandra.locator." + cls
	}
	ks.placement = parsePlacement(ks.replication, s.localDC)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keyspaces[st.keyspace] != nil {
		if st.ifExists {
			return false, nil
		}
		return false, &reqError{code: codeAlreadyExists, msg: "Keyspace " + st.keyspace + " already exists", ks: st.keyspace}
	}
	s.keyspaces[st.keyspace] = ks
	s.schemaGen++
	return true, nil
}

func (s *store) createTable(ks string, st *statement) (created bool, err error) {
	if ks == "" {
		return false, invalidf("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename")
	}
	t, err := newTable(ks, st)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keyspaces[ks]
	if k == nil {
		return false, invalidf("Keyspace %s doesn't exist", ks)
	}
	if k.tables[st.table] != nil {
		if st.ifExists {
			return false, nil
		}
		return false, &reqError{code: codeAlreadyExists, msg: "Table " + ks + "." + st.table + " already exists", ks: ks, table: st.table}
	}
	t.placement = k.placement
	t.purgeOK = s.purge
	k.tables[st.table] = t
	s.schemaGen++
	return true, nil
}

func (s *store) dropTable(ks, name string, ifExists bool) (dropped bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keyspaces[ks]
	if k == nil || k.tables[name] == nil {
		if ifExists {
			return false, nil
		}
		return false, invalidf("Table '%s.%s' doesn't exist", ks, name)
	}
	delete(k.tables, name)
	s.schemaGen++
	return true, nil
}

func (s *store) dropKeyspace(name string, ifExists bool) (dropped bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keyspaces[name] == nil {
		if ifExists {
			return false, nil
		}
		return false, &reqError{code: codeConfig, msg: "Cannot drop non existing keyspace '" + name + "'."}
	}
	delete(s.keyspaces, name)
	s.schemaGen++
	return true, nil
}

// snapshot lists keyspaces and their tables sorted by name, for the
// system_schema tables.
func (s *store) snapshot() []*keyspace {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*keyspace, 0, len(s.keyspaces))
	for _, k := range s.keyspaces {
		cp := *k
		cp.tables = make(map[string]*table, len(k.tables))
		for n, t := range k.tables {
			cp.tables[n] = t
		}
		out = append(out, &cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// rowCount counts live rows of a table, for tests.
func (t *table) rowCount(now int64) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for _, p := range t.parts {
		for _, r := range p.rows {
			if t.rowLive(r, now) {
				n++
			}
		}
	}
	return n
}

func bytesEqual(a, b []byte) bool { return bytes.Equal(a, b) && (a == nil) == (b == nil) }

// placementOf is a keyspace's parsed replication (nil: not placed).
func (s *store) placementOf(name string) (*placement, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k := s.keyspaces[name]
	if k == nil {
		return nil, invalidf("Keyspace %s does not exist", name)
	}
	return k.placement, nil
}
