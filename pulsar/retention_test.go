package pulsar

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/demandpipe/demandpipe/internal/pulsartest"
)

// publishEntries sends n lines {"i":I}, one entry each.
func publishEntries(t *testing.T, s *pulsartest.Server, topic string, n int) {
	t.Helper()
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf(`{"i":%d}`, i)
	}
	publishUnbatched(t, s, topic, lines, nil)
}

// TestPulsarUntilEndOverTrimmedRetention (issue 22 P4): a broker with the
// default retention (0) deletes a topic's closed ledgers once no durable
// subscription needs them, so an until=end replay from "earliest" reaches
// only a tail. Where the broker exposes entry indexes the run fails at
// start, naming what is gone (allow-trimmed=true reads the tail and says
// so in the summary); without indexes it warns that it cannot tell; a
// whole topic reads whole with neither. The Pulsar double trims as the
// broker does (ledgers of 10 entries here, rolled over at once).
func TestPulsarUntilEndOverTrimmedRetention(t *testing.T) {
	for _, c := range []struct {
		name       string
		cfg        pulsartest.Config
		query      string
		err        string // "" : reads want lines
		want       int
		warn, summ string
	}{
		{name: "trimmed/indexed", cfg: pulsartest.Config{ExposeEntryIndex: true},
			err: "no longer has its first 30 messages"},
		{name: "trimmed/indexed/allowed", cfg: pulsartest.Config{ExposeEntryIndex: true}, query: "&allow-trimmed=true",
			want: 5, warn: "starts at message index 30", summ: "NOT READ: 30 messages"},
		{name: "trimmed/unindexed", cfg: pulsartest.Config{},
			want: 5, warn: "exposes no entry indexes"},
		{name: "kept/indexed", cfg: pulsartest.Config{ExposeEntryIndex: true, RetentionTime: -1},
			want: 35},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := c.cfg
			cfg.LedgerMaxEntries, cfg.LedgerMinRollover = 10, -1
			s, err := pulsartest.Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			topic := testTopic(t)
			publishEntries(t, s, topic, 35) // no subscription: every closed ledger goes
			p := openPulsar(t, s, topic, "subscription=replay&until=end"+c.query)
			var logs bytes.Buffer
			p.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
			if c.err != "" {
				_, err := p.Read(make([]byte, 100))
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "allow-trimmed=true") {
					t.Fatalf("Read: %v; want an error saying %q and how to go on", err, c.err)
				}
				return
			}
			lines, _ := readLines(t, p, -1)
			if len(lines) != c.want || (c.want > 0 && lines[0] != fmt.Sprintf(`{"i":%d}`, 35-c.want)) {
				t.Fatalf("read %d lines from %q, want %d", len(lines), lines[0], c.want)
			}
			if got := logs.String(); (c.warn == "") != (got == "") || !strings.Contains(got, c.warn) {
				t.Fatalf("log %q, want %q", got, c.warn)
			}
			if got := p.Summary(); (c.summ == "") == strings.Contains(got, "NOT READ") || !strings.Contains(got, c.summ) {
				t.Fatalf("summary %q, want %q", got, c.summ)
			}
		})
	}
}
