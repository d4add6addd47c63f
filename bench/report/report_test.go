package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/demandpipe/demandpipe/internal/norace"
)

// TestRunSmall runs every section on tiny inputs, one round: the report
// has every technique of issue 15, a ratio for each, and the command.
func TestRunSmall(t *testing.T) {
	if norace.Run(t) {
		return
	}
	cfg := Config{Rounds: 1, Events: 10_000, Rate: 1_000, DiskEvents: 200, SinkRows: 300, NaiveEvents: 40, Log: testLog{t}}
	var buf bytes.Buffer
	if err := Run(&buf, cfg); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		Command, "## Summary", "field projection", "dedup before H3", "dedup state", "integer cell keys",
		"int32 features", "neighbourhood caching", "window panes", "batch size", "writer pool",
		"compression", "end to end", "Go | go1.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out, "NaN") || strings.Contains(out, "Inf") || strings.Contains(out, "%!") {
		t.Errorf("report has a bad figure:\n%s", out)
	}
	if t.Failed() {
		t.Log(out)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{{}, {Rounds: 1, Events: 10}, {Rounds: 3, Events: 2000, Rate: 1000}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
