package cqltest

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The DataStax Python driver is an independent implementation of the protocol:
// rows written with gocql must read back identically through it, with each
// compression. Debian packages: python3-cassandra python3-lz4 (python3-snappy
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

	for _, comp := range []string{"none", "lz4", "snappy"} {
		t.Run(comp, func(t *testing.T) {
			switch comp {
			case "lz4":
				requirePython(t, "lz4")
			case "snappy":
				requirePython(t, "snappy")
			}
			before := s.Stats().Compression[comp]
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, python, "testdata/read_features.py", strconv.Itoa(s.Port()), comp)
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
			if rest != want.String() {
				t.Fatalf("python read:\n%s\nwant:\n%s", rest, want.String())
			}
			if after := s.Stats().Compression[comp]; after <= before {
				t.Fatalf("server saw no new %s connection (%d -> %d)", comp, before, after)
			}
		})
	}
}
