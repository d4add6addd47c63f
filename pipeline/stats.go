package pipeline

import (
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/encode"
)

// Stats are the engine's plain counters, updated once per batch, read by the
// progress line, the summary and (later) a metrics layer.
type Stats struct {
	// aggregate.Stats are the count's and close's counters (Counted, Rows,
	// Minutes, Closed, StateBytes…), promoted here.
	aggregate.Stats
	Lines      atomic.Int64 // non-blank input lines
	Blank      atomic.Int64 // blank lines (skipped, not rejections)
	Bytes      atomic.Int64 // input bytes read
	Rejected   [encode.NumReasons]atomic.Int64
	Late       atomic.Int64 // valid events whose minute was already closed
	Duplicates atomic.Int64 // valid, on time, not first for (rider, product, minute)
	H3Errors   atomic.Int64 // counted events H3 could not place (never seen; counted to be sure)
	MaxTS      atomic.Int64 // largest ts seen (unix ms)
	EventTime  atomic.Int64 // T, the K-th rider's latest ts (unix ms), 0 before K riders
	DedupBytes atomic.Int64 // dedup tables after the last batch
	SeqBytes   atomic.Int64 // events kept ahead of T or held for their product, after the last batch

	// FirstMinute is the earliest minute (unix minute) of an accepted
	// event, 0 before one: the first minute to close. Stored per batch
	// from the sequencer's note of each new minute (no cost per event);
	// the server in the run's process says from it when that minute
	// closes (serve.Progress).
	FirstMinute atomic.Int64
}

// Summary is a snapshot of Stats.
type Summary struct {
	Lines, Blank, Bytes       int64
	Rejected                  map[string]int64
	RejectedTotal             int64
	Late, Duplicates, Counted int64
	H3Errors, Rows, Minutes   int64
	MaxTS, Closed             int64
	CloseSeconds              float64
	Targets                   int64
	OverBudget, ShedSources   int64
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() Summary {
	out := Summary{
		Lines: s.Lines.Load(), Blank: s.Blank.Load(), Bytes: s.Bytes.Load(),
		Rejected: map[string]int64{},
		Late:     s.Late.Load(), Duplicates: s.Duplicates.Load(), Counted: s.Counted.Load(),
		H3Errors: s.H3Errors.Load(), Rows: s.Rows.Load(), Minutes: s.Minutes.Load(),
		MaxTS: s.MaxTS.Load(), Closed: s.Closed.Load(),
		CloseSeconds: float64(s.CloseNanos.Load()) / 1e9, Targets: s.Targets.Load(),
		OverBudget: s.OverBudget.Load(), ShedSources: s.ShedSources.Load(),
	}
	for r := encode.Reason(1); r < encode.NumReasons; r++ {
		if n := s.Rejected[r].Load(); n > 0 {
			out.Rejected[r.String()] = n
			out.RejectedTotal += n
		}
	}
	return out
}

// RejectedList is "reason=N ..." in reason order.
func (s Summary) RejectedList() string {
	var parts []string
	for r := encode.Reason(1); r < encode.NumReasons; r++ {
		if n := s.Rejected[r.String()]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", r, n))
		}
	}
	return strings.Join(parts, " ")
}

// Accepted is the number of valid, on-time events (counted + duplicates).
func (s Summary) Accepted() int64 { return s.Counted + s.Duplicates }

// Write prints the summary for people.
func (s Summary) Write(w io.Writer, seconds float64) {
	rate := func(n int64) string {
		if seconds <= 0 {
			return ""
		}
		return fmt.Sprintf(" (%.0f/s)", float64(n)/seconds)
	}
	fmt.Fprintf(w, "demandpipe: summary after %.2fs\n", seconds)
	fmt.Fprintf(w, "  lines read      %12d%s  (%d blank skipped, %.1f MB)\n", s.Lines, rate(s.Lines), s.Blank, float64(s.Bytes)/1e6)
	fmt.Fprintf(w, "  rejected        %12d", s.RejectedTotal)
	if len(s.Rejected) > 0 {
		fmt.Fprintf(w, "  (%s)", s.RejectedList())
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  late            %12d\n", s.Late)
	fmt.Fprintf(w, "  duplicates      %12d\n", s.Duplicates)
	fmt.Fprintf(w, "  counted         %12d%s\n", s.Counted, rate(s.Counted))
	if s.H3Errors > 0 {
		fmt.Fprintf(w, "  h3 errors       %12d\n", s.H3Errors)
	}
	if s.OverBudget > 0 {
		fmt.Fprintf(w, "  over budget     %12d  (counted events of %d new places shed: the state reached -max-memory; their rows are understated)\n", s.OverBudget, s.ShedSources)
	}
	fmt.Fprintf(w, "  minutes closed  %12d  (%.2fs closing)\n", s.Minutes, s.CloseSeconds)
	fmt.Fprintf(w, "  rows written    %12d%s\n", s.Rows, rate(s.Rows))
}
