package cqltest

import (
	"fmt"
	"sort"
	"strconv"
	"sync/atomic"
)

// The system keyspaces are ordinary tables of the store, declared in CQL below
// with the columns of Cassandra 4.0, so drivers' discovery queries (SELECT * FROM
// system.local WHERE key='local', SELECT ... FROM system_schema.columns WHERE
// keyspace_name = ?) run through the same SELECT path as user tables. The
// system_schema tables are rebuilt from the store after every schema change.

// systemKeyspaces hold the built-in tables; statements on them are not subject to
// injected faults or latency and are counted apart in Stats.
var systemKeyspaces = map[string]bool{"system": true, "system_schema": true, "system_auth": true, "system_distributed": true, "system_traces": true}

var systemDDL = []string{
	`CREATE KEYSPACE system WITH replication = {'class': 'LocalStrategy'}`,
	`CREATE KEYSPACE system_schema WITH replication = {'class': 'LocalStrategy'}`,
	`CREATE TABLE system.local (key text PRIMARY KEY, bootstrapped text, broadcast_address inet,
		broadcast_port int, cluster_name text, cql_version text, data_center text, gossip_generation int,
		host_id uuid, listen_address inet, listen_port int, native_protocol_version text,
		partitioner text, rack text, release_version text, rpc_address inet, rpc_port int,
		schema_version uuid, tokens set<text>, truncated_at map<uuid, blob>)`,
	`CREATE TABLE system.peers (peer inet PRIMARY KEY, data_center text, host_id uuid,
		preferred_ip inet, rack text, release_version text, rpc_address inet, schema_version uuid,
		tokens set<text>)`,
	`CREATE TABLE system.peers_v2 (peer inet, peer_port int, data_center text, host_id uuid,
		native_address inet, native_port int, preferred_ip inet, preferred_port int, rack text,
		release_version text, schema_version uuid, tokens set<text>, PRIMARY KEY ((peer), peer_port))`,
	`CREATE TABLE system_schema.keyspaces (keyspace_name text PRIMARY KEY, durable_writes boolean,
		replication frozen<map<text, text>>)`,
	`CREATE TABLE system_schema.tables (keyspace_name text, table_name text,
		bloom_filter_fp_chance double, caching frozen<map<text, text>>, comment text,
		compaction frozen<map<text, text>>, compression frozen<map<text, text>>,
		crc_check_chance double, default_time_to_live int, extensions frozen<map<text, blob>>,
		flags frozen<set<text>>, gc_grace_seconds int, id uuid, max_index_interval int,
		memtable_flush_period_in_ms int, min_index_interval int, read_repair text,
		speculative_retry text, PRIMARY KEY ((keyspace_name), table_name))`,
	`CREATE TABLE system_schema.columns (keyspace_name text, table_name text, column_name text,
		clustering_order text, column_name_bytes blob, kind text, position int, type text,
		PRIMARY KEY ((keyspace_name), table_name, column_name))`,
	`CREATE TABLE system_schema.views (keyspace_name text, view_name text, base_table_id uuid,
		base_table_name text, include_all_columns boolean, where_clause text,
		PRIMARY KEY ((keyspace_name), view_name))`,
	`CREATE TABLE system_schema.types (keyspace_name text, type_name text,
		field_names frozen<list<text>>, field_types frozen<list<text>>,
		PRIMARY KEY ((keyspace_name), type_name))`,
	`CREATE TABLE system_schema.functions (keyspace_name text, function_name text,
		argument_types frozen<list<text>>, argument_names frozen<list<text>>, body text,
		called_on_null_input boolean, language text, return_type text,
		PRIMARY KEY ((keyspace_name), function_name, argument_types))`,
	`CREATE TABLE system_schema.aggregates (keyspace_name text, aggregate_name text,
		argument_types frozen<list<text>>, final_func text, initcond text, return_type text,
		state_func text, state_type text, PRIMARY KEY ((keyspace_name), aggregate_name, argument_types))`,
	`CREATE TABLE system_schema.indexes (keyspace_name text, table_name text, index_name text,
		kind text, options frozen<map<text, text>>, PRIMARY KEY ((keyspace_name), table_name, index_name))`,
	`CREATE TABLE system_schema.triggers (keyspace_name text, table_name text, trigger_name text,
		options frozen<map<text, text>>, PRIMARY KEY ((keyspace_name), table_name, trigger_name))`,
}

// installSystem creates the system keyspaces. It panics on a bad built-in
// statement, which a test catches at once.
func (s *Server) installSystem() {
	for _, q := range systemDDL {
		st, err := parse(q)
		if err != nil {
			panic(fmt.Sprintf("cqltest: built-in %q: %v", q, err))
		}
		switch st.kind {
		case stmtCreateKeyspace:
			_, err = s.store.createKeyspace(st)
		case stmtCreateTable:
			_, err = s.store.createTable(st.keyspace, st)
		}
		if err != nil {
			panic(fmt.Sprintf("cqltest: built-in %q: %v", q, err))
		}
	}
	s.nodeTables()
}

// nodeTables gives every node its own system.local, system.peers and
// system.peers_v2: node 0 the store's, the others empty tables of the same
// columns, which lookup serves to their connections.
func (s *Server) nodeTables() {
	for _, n := range s.nodes {
		for _, nt := range []struct {
			name string
			dst  **table
		}{{"local", &n.local}, {"peers", &n.peers}, {"peers_v2", &n.peersV2}} {
			live, err := s.store.lookup("system", nt.name)
			if err != nil {
				panic("cqltest: missing system table system." + nt.name)
			}
			if n.idx > 0 {
				live = emptyLike(live)
			}
			*nt.dst = live
		}
	}
}

// lookup finds a table as a client of c's node sees it (node 0 for
// Server.Exec): system.local and the peers tables are the node's own.
func (s *Server) lookup(c *conn, ks, name string) (*table, error) {
	if ks == "system" {
		n := s.nodes[0]
		if c != nil {
			n = c.node
		}
		switch name {
		case "local":
			return n.local, nil
		case "peers":
			return n.peers, nil
		case "peers_v2":
			return n.peersV2, nil
		}
	}
	return s.store.lookup(ks, name)
}

// refreshSystem rewrites every node's system.local and peers tables and the
// system_schema tables from the store. It runs at start and after each
// schema change, under s.schemaMu so two refreshes do not interleave.
func (s *Server) refreshSystem() {
	s.schemaMu.Lock()
	defer s.schemaMu.Unlock()
	schemaVersion := s.store.schemaVersion()
	for _, n := range s.nodes {
		s.writeLocal(n, schemaVersion)
		s.writePeers(n, schemaVersion)
	}
	s.writeSchema()
}

// writeLocal writes n's system.local row: its address, host id and token.
func (s *Server) writeLocal(n *node, schemaVersion []byte) {
	ip := n.ip()
	local := stagingOf(n.local)
	putRow(local, map[string][]byte{
		"key":                     encText("local"),
		"bootstrapped":            encText("COMPLETED"),
		"broadcast_address":       []byte(ip),
		"broadcast_port":          encInt(7000),
		"cluster_name":            encText(s.cfg.ClusterName),
		"cql_version":             encText(s.cfg.CQLVersion),
		"data_center":             encText(s.cfg.DataCenter),
		"gossip_generation":       encInt(1),
		"host_id":                 n.hostID,
		"listen_address":          []byte(ip),
		"listen_port":             encInt(7000),
		"native_protocol_version": encText("4"),
		"partitioner":             encText("org.apache.cassandra.dht.Murmur3Partitioner"),
		"rack":                    encText(s.cfg.Rack),
		"release_version":         encText(s.cfg.ReleaseVersion),
		"rpc_address":             []byte(ip),
		"rpc_port":                encInt(int32(n.addr.Port)),
		"schema_version":          schemaVersion,
		// One token per node (num_tokens: 1): with one node it owns the
		// whole Murmur3 ring whatever it is.
		"tokens": encTextSet(strconv.FormatInt(n.token, 10)),
	})
	local.commit()
}

// writePeers lists every node but n in n's system.peers and
// system.peers_v2, as gossip fills them (the v2 table with the native
// port, which drivers of Cassandra 4 read to reach a peer).
func (s *Server) writePeers(n *node, schemaVersion []byte) {
	peers, peersV2 := stagingOf(n.peers), stagingOf(n.peersV2)
	for _, p := range s.nodes {
		if p == n {
			continue
		}
		ip := []byte(p.ip())
		tokens := encTextSet(strconv.FormatInt(p.token, 10))
		putRow(peers, map[string][]byte{
			"peer": ip, "data_center": encText(s.cfg.DataCenter), "host_id": p.hostID,
			"preferred_ip": ip, "rack": encText(s.cfg.Rack), "release_version": encText(s.cfg.ReleaseVersion),
			"rpc_address": ip, "schema_version": schemaVersion, "tokens": tokens,
		})
		putRow(peersV2, map[string][]byte{
			"peer": ip, "peer_port": encInt(7000), "data_center": encText(s.cfg.DataCenter), "host_id": p.hostID,
			"native_address": ip, "native_port": encInt(int32(p.addr.Port)),
			"preferred_ip": ip, "preferred_port": encInt(7000), "rack": encText(s.cfg.Rack),
			"release_version": encText(s.cfg.ReleaseVersion), "schema_version": schemaVersion, "tokens": tokens,
		})
	}
	peers.commit()
	peersV2.commit()
}

// writeSchema rewrites the system_schema tables from the store.
func (s *Server) writeSchema() {
	kss := staging(s.store, "system_schema", "keyspaces")
	tbls := staging(s.store, "system_schema", "tables")
	cols := staging(s.store, "system_schema", "columns")
	defer func() {
		kss.commit()
		tbls.commit()
		cols.commit()
	}()
	for _, k := range s.store.snapshot() {
		putRow(kss, map[string][]byte{
			"keyspace_name":  encText(k.name),
			"durable_writes": encBool(k.durableWrites),
			"replication":    encTextMap(sortedKeys(k.replication), k.replication),
		})
		for _, t := range k.tables {
			row := map[string][]byte{
				"keyspace_name":               encText(k.name),
				"table_name":                  encText(t.name),
				"bloom_filter_fp_chance":      encDouble(0.01),
				"comment":                     encText(""),
				"crc_check_chance":            encDouble(1),
				"default_time_to_live":        encInt(int32(t.defaultTTL)),
				"extensions":                  encTextMap(nil, nil),
				"flags":                       encTextSet("compound"),
				"gc_grace_seconds":            encInt(864000),
				"id":                          t.id[:],
				"max_index_interval":          encInt(2048),
				"memtable_flush_period_in_ms": encInt(0),
				"min_index_interval":          encInt(128),
				"read_repair":                 encText("BLOCKING"),
				"speculative_retry":           encText("99p"),
			}
			for name, v := range t.options {
				col, ok := tbls.byName[name]
				if !ok {
					continue // recorded on the table, not shown here
				}
				if b, err := optionValue(tbls.cols[col].typ, v); err == nil {
					row[name] = b
				}
			}
			putRow(tbls, row)
			for _, c := range t.cols {
				order := "none"
				if c.kind == colClustering {
					order = "asc"
					if c.desc {
						order = "desc"
					}
				}
				putRow(cols, map[string][]byte{
					"keyspace_name":     encText(k.name),
					"table_name":        encText(t.name),
					"column_name":       encText(c.name),
					"clustering_order":  encText(order),
					"column_name_bytes": []byte(c.name),
					"kind":              encText(c.kind.String()),
					"position":          encInt(int32(c.position)),
					"type":              encText(c.typ.String()),
				})
			}
		}
	}
}

// stagedTable collects a system table's new rows; commit swaps them in at once
// so concurrent readers see the old rows or the new ones, never none.
type stagedTable struct {
	*table
	live *table
}

func staging(st *store, ks, name string) stagedTable {
	live, err := st.lookup(ks, name)
	if err != nil {
		panic("cqltest: missing system table " + ks + "." + name)
	}
	return stagingOf(live)
}

func stagingOf(live *table) stagedTable { return stagedTable{table: emptyLike(live), live: live} }

// emptyLike is a table with t's columns and no rows.
func emptyLike(t *table) *table {
	return &table{ks: t.ks, name: t.name, cols: t.cols, byName: t.byName, pk: t.pk, ck: t.ck, regularIdx: t.regularIdx, gcGrace: t.gcGrace, id: t.id, parts: map[string]*partition{}}
}

func (s stagedTable) commit() {
	s.live.mu.Lock()
	s.live.parts, s.live.rows = s.table.parts, s.table.rows
	s.live.mu.Unlock()
}

// optionValue encodes a WITH option for system_schema.tables. Map options carry
// text values there, so numbers in them are rendered as text.
func optionValue(t *colType, v term) ([]byte, error) {
	if v.kind == termMap && t.base().name == "map" {
		m := map[string]string{}
		keys := make([]string, 0, len(v.keys))
		for i, k := range v.keys {
			m[k.text] = v.elems[i].text
			keys = append(keys, k.text)
		}
		sort.Strings(keys)
		return encTextMap(keys, m), nil
	}
	if t.base().name == "int" && v.kind == termNumber {
		n, err := strconv.ParseInt(v.text, 10, 32)
		if err != nil {
			return nil, err
		}
		return encInt(int32(n)), nil
	}
	return encodeLiteral(t, v)
}

// sysTimestamp orders the writes of the system tables.
var sysTimestamp atomic.Int64

// putRow writes a row given by column name into t.
func putRow(st stagedTable, vals map[string][]byte) {
	t := st.table
	cells := make([]cell, len(t.cols))
	pk := make([][]byte, len(t.pk))
	for name, v := range vals {
		i, ok := t.byName[name]
		if !ok {
			panic("cqltest: system table " + t.name + " has no column " + name)
		}
		// A later put of the same row wins (an increasing timestamp);
		// a nil value is no cell (null).
		cells[i] = cell{v: v, ts: sysTimestamp.Add(1), ok: v != nil || t.cols[i].kind <= colClustering}
	}
	for j, i := range t.pk {
		pk[j] = cells[i].v
	}
	t.mu.Lock()
	t.write(partitionKey(pk), pk, cells, cell{ok: true, ts: sysTimestamp.Add(1)}, 0)
	t.mu.Unlock()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
