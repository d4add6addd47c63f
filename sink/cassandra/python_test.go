package cassandra

import (
	"context"
	"encoding/hex"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/pipeline"
)

// collectRows keeps the engine's rows as "product minute cell features".
type collectRows struct{ rows []string }

func (c *collectRows) Write(_ context.Context, b *encode.Batch) error {
	for i := range b.Len() {
		c.rows = append(c.rows, fmt.Sprint(b.UUID(i), b.Minute, int64(b.Cells[i]), b.Row(i)))
	}
	return nil
}
func (c *collectRows) CloseMinute(context.Context, int64) error { return nil }
func (c *collectRows) Close() error                             { return nil }

// TestPythonDriverReadsWhatTheSinkWrote: the engine writes a generated
// stream through this sink into the CQL test double; the DataStax Python
// driver (an independent client) reads the feature table back, and every
// row equals the engine's own, decoded.
func TestPythonDriverReadsWhatTheSinkWrote(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import cassandra").Run(); err != nil {
		t.Skip("the DataStax Python driver is not installed (apt-get install python3-cassandra): skipping the independent-client check")
	}
	gc := gen.DefaultConfig()
	gc.EventsPerMinute, gc.Riders = 3000, 1000
	in, err := gen.Generate(gc, 9000)
	if err != nil {
		t.Fatal(err)
	}
	def := feature.Definition{Resolution: 8, Rings: []int{0, 1}, Windows: []int{1, 2}}
	run := func(snk interface {
		Write(context.Context, *encode.Batch) error
		CloseMinute(context.Context, int64) error
		Close() error
	}) {
		cfg := pipeline.DefaultConfig()
		cfg.Def = def
		e, err := pipeline.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Run(context.Background(), strings.NewReader(string(in)), snk); err != nil {
			t.Fatal(err)
		}
	}
	want := &collectRows{}
	run(want)
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	cfg.Definition = def
	s := openSink(t, cfg)
	run(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/read_all.py", fmt.Sprint(srv.Port()), "none").CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 {
			t.Fatalf("python printed %q", l)
		}
		raw, err := hex.DecodeString(f[3])
		if err != nil {
			t.Fatal(err)
		}
		feats, err := encode.DecodeRowValue(nil, raw)
		if err != nil {
			t.Fatalf("row %q: %v", l, err)
		}
		got = append(got, fmt.Sprint(f[0], " ", f[1], " ", f[2], " ", feats))
	}
	slices.Sort(got)
	slices.Sort(want.rows)
	if len(want.rows) == 0 || !slices.Equal(got, want.rows) {
		t.Fatalf("python read %d rows, the engine wrote %d; first: %q / %q", len(got), len(want.rows), first(got), first(want.rows))
	}
	t.Logf("the Python driver read all %d rows back", len(got))
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
