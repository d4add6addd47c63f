package source

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRegisterPositionMetrics: the gauges read the source's position,
// and a second registration fails whole instead of panicking.
func TestRegisterPositionMetrics(t *testing.T) {
	p := filepath.Join(t.TempDir(), "in.ndjson")
	if err := os.WriteFile(p, []byte(strings.Repeat("{}\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open("file:" + p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reg := prometheus.NewPedanticRegistry()
	if err := RegisterPositionMetrics(reg, s); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP demandpipe_source_read_bytes Input bytes read from the source, as stored (compressed files: compressed bytes).
# TYPE demandpipe_source_read_bytes gauge
demandpipe_source_read_bytes 300
# HELP demandpipe_source_size_bytes The source's size in bytes as stored, -1 when unknown (pipes, the generator): lag = size - read.
# TYPE demandpipe_source_size_bytes gauge
demandpipe_source_size_bytes 300
`
	if _, err := io.ReadAll(s); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	err = RegisterPositionMetrics(reg, s)
	if err == nil || !strings.Contains(err.Error(), "demandpipe_source_read_bytes") {
		t.Fatalf("second registration: %v, want an error naming demandpipe_source_read_bytes", err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 2 {
		t.Fatalf("%d series after a failed registration, %v", n, err)
	}
	if err := RegisterPositionMetrics(nil, s); err != nil {
		t.Fatal(err)
	}
}
