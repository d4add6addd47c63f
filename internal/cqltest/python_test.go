package cqltest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http/httptest"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The DataStax Python driver is an independent implementation of the protocol:
// rows written with gocql must read back identically through it, with each
// compression, in v4 and in v5 (its own segment codec and CRCs). Debian packages: python3-cassandra python3-lz4 (python3-snappy
// for the snappy case).
const python = "/usr/bin/python3"

func requirePython(t *testing.T, modules ...string) {
	t.Helper()
	if err := exec.Command(python, "-c", "import cassandra").Run(); err != nil {
		t.Skipf("%s cannot import cassandra (apt-get install -y python3-cassandra python3-lz4 python3-snappy): %v", python, err)
	}
	for _, m := range modules {
		if err := exec.Command(python, "-c", "import "+m).Run(); err != nil {
			t.Skipf("%s cannot import %s: %v", python, m, err)
		}
	}
}

func TestPythonDriverReadsGocqlRows(t *testing.T) {
	requirePython(t)
	s := startServer(t, Config{})
	sess := newSession(t, s, nil, nil)
	createSchema(t, sess)
	rows := featureRows(40)
	writeBatches(t, sess, rows)
	if err := sess.Query(`INSERT INTO demandpipe.checkpoints (name, minute, state) VALUES (?, ?, ?)`, "sink", int64(29_000_001), []byte{0xca, 0xfe}).Exec(); err != nil {
		t.Fatal(err)
	}

	// Expected output, from the reference model.
	parts := map[[3]int64][]featureRow{}
	for _, r := range rows {
		k := [3]int64{int64(r.product), r.minute, r.reg}
		parts[k] = append(parts[k], r)
	}
	keys := make([][3]int64, 0, len(parts))
	for k := range parts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	var stdin, want strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&stdin, "%d %d %d\n", k[0], k[1], k[2])
		for _, r := range dedupSorted(parts[k]) {
			fmt.Fprintf(&want, "%d %d %d %d %x\n", r.product, r.minute, r.reg, r.cell, r.f)
		}
	}
	fmt.Fprintf(&want, "checkpoint sink 29000001 cafe\n")

	for _, tc := range []struct {
		comp    string
		version int
	}{{"none", 4}, {"lz4", 4}, {"snappy", 4}, {"none", 5}, {"lz4", 5}} {
		comp := tc.comp
		t.Run(fmt.Sprintf("v%d/%s", tc.version, comp), func(t *testing.T) {
			switch comp {
			case "lz4":
				requirePython(t, "lz4")
			case "snappy":
				requirePython(t, "snappy")
			}
			before := s.Stats().Compression[comp]
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			before5 := s.Stats().ProtocolVersions[5]
			cmd := exec.CommandContext(ctx, python, "testdata/read_features.py", strconv.Itoa(s.Port()), comp, strconv.Itoa(tc.version))
			cmd.Stdin = strings.NewReader(stdin.String())
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("python: %v\n%s", err, stderr.String())
			}
			got := string(out)
			first, rest, _ := strings.Cut(got, "\n")
			if first != "compressor "+comp {
				t.Fatalf("python connection compression: %q, want %q", first, "compressor "+comp)
			}
			second, rest, _ := strings.Cut(rest, "\n")
			if second != fmt.Sprintf("protocol %d", tc.version) {
				t.Fatalf("python connection: %q, want protocol %d", second, tc.version)
			}
			if after5 := s.Stats().ProtocolVersions[5]; tc.version == 5 && after5 <= before5 {
				t.Fatal("server saw no new v5 connection")
			}
			if rest != want.String() {
				t.Fatalf("python read:\n%s\nwant:\n%s", rest, want.String())
			}
			if after := s.Stats().Compression[comp]; after <= before {
				t.Fatalf("server saw no new %s connection (%d -> %d)", comp, before, after)
			}
		})
	}
}

// TestPythonDriverSeesTimestampsAndTombstones: the Python driver, over
// v5, sees the highest timestamp win and a delete win a tie, a tombstone
// warning and a READ_FAILURE (READ_TOO_MANY_TOMBSTONES, 0x0001),
// prepares again after the server forgot its statements
// (POST /prepared/forget), gets INVALID with Cassandra's message
// (Int32Type: "Expected 4 or 0 byte int (3)") for a 3-byte int bound as
// raw bytes, nothing written, and a WRITE_TIMEOUT for a write that was
// applied (POST /fault?kind=timeout-applied; issue 22 C4, C9).
func TestPythonDriverSeesTimestampsAndTombstones(t *testing.T) {
	requirePython(t)
	s := startServer(t, Config{TombstoneWarnThreshold: 20, TombstoneFailureThreshold: 50})
	newKS(t, s)
	mustExec(t, s, `CREATE TABLE k.t (p int, c int, v int, PRIMARY KEY (p, c))`)
	ctl := httptest.NewServer(s.ControlHandler())
	defer ctl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "testdata/semantics.py", strconv.Itoa(s.Port()), ctl.URL)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	want := "older write ignored: 10\n" +
		"delete wins the tie: None\n" +
		"warning: ['Read 31 live rows and 30 tombstone cells']\n" +
		"read failure: ReadFailure [1]\n" +
		"after forget: 2\n" +
		"wrong size: Expected 4 or 0 byte int (3) None\n" +
		"timeout applied: WriteTimeout 7\n"
	if string(out) != want {
		t.Fatalf("python driver saw:\n%s\nwant:\n%s", out, want)
	}
	if st := s.Stats(); st.Errors["Unprepared"] == 0 || st.ProtocolVersions[5] == 0 {
		t.Fatalf("errors %v, versions %v", st.Errors, st.ProtocolVersions)
	}
}

// TestPythonDriverTokenMap: the Python driver, connected to node 0 of a
// three-node double, builds a token map of three hosts from system.local
// and system.peers_v2, and its replicas for keys of keyspaces of
// replication factor 1, 2 (NetworkTopologyStrategy) and 3, simple and
// composite partition keys (the driver builds the routing key itself from
// the prepared statement's partition key indexes), are the double's
// (Server.Replicas), in the same order; its TokenAwarePolicy then writes
// every key through a replica.
func TestPythonDriverTokenMap(t *testing.T) {
	requirePython(t)
	s := startServer(t, Config{Nodes: 3})
	ringSchema(t, s)
	const n = 30
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "testdata/token_map.py", strconv.Itoa(s.Port()), strconv.Itoa(n))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if lines[0] != "hosts 3 tokens 3" {
		t.Fatalf("python token map: %q, want 3 hosts and 3 tokens", lines[0])
	}
	if len(lines) != 1+3*2*n {
		t.Fatalf("python printed %d key lines, want %d", len(lines)-1, 3*2*n)
	}
	primaries := map[string]bool{}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		ks, table := f[0], f[1]
		k, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("line %q", line)
		}
		key := [][]byte{binary.BigEndian.AppendUint32(nil, uint32(k))}
		if table == "c" {
			key = append(key, []byte("b"+f[2]))
		}
		want, err := s.Replicas(ks, key...)
		if err != nil {
			t.Fatal(err)
		}
		if got := f[3:]; !slices.Equal(got, want) {
			t.Errorf("%s.%s key %d: python driver replicas %v, double's %v", ks, table, k, got, want)
		}
		primaries[want[0]] = true
	}
	if len(primaries) != 3 {
		t.Errorf("keys owned by %d nodes, want all 3", len(primaries))
	}
	if r, _, nr := sumWrites(s.Stats()); r != 3*2*n || nr != 0 {
		t.Fatalf("python writes: %d by replicas, %d by non-replicas, want %d and 0", r, nr, 3*2*n)
	}
}

// TestPythonDriverSeesPerCellTTL: the Python driver writes cells with
// their own TTLs and, 11 s later on the server's clock, reads what
// Cassandra keeps: row 1 without its b (TTL 10) but with c (TTL 100), row
// 2 (an UPDATE alone, no row marker) gone, row 3 on its INSERT's marker
// with nulls (issue 22 C6).
func TestPythonDriverSeesPerCellTTL(t *testing.T) {
	requirePython(t)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s := startServer(t, Config{Now: clock.Now})
	newKS(t, s)
	mustExec(t, s, `CREATE TABLE k.t (a int PRIMARY KEY, b int, c int)`)
	run := func(phase string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, python, "testdata/ttl.py", strconv.Itoa(s.Port()), phase)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("python %s: %v\n%s", phase, err, stderr.String())
		}
		return string(out)
	}
	if out := run("write"); out != "written\n" {
		t.Fatalf("python write: %q", out)
	}
	if out := run("read"); out != "1 2 1\n2 3 None\n3 4 None\n" {
		t.Fatalf("python read before the TTLs: %q", out)
	}
	clock.Advance(11 * time.Second)
	if out, want := run("read"), "1 None 1\n3 None None\n"; out != want {
		t.Fatalf("python driver read after 11 s:\n%s\nwant:\n%s", out, want)
	}
}
