package job

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/internal/syncbuf"
)

// TestRoleReportsProgress: a role logs a progress line with its counters
// every interval (the roles printed nothing for their first 90 s), and
// stops when told.
func TestRoleReportsProgress(t *testing.T) {
	t.Parallel()
	var buf syncbuf.Buffer
	j := &Job{log: slog.New(slog.NewTextHandler(&buf, nil))}
	n := 0
	stop := j.report(context.Background(), time.Now(), 5*time.Millisecond, func() []any { n++; return []any{"messages", n} })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(buf.String(), "messages=2"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no second progress line after 10 s:\n%s", buf.String())
		}
	}
	stop()
	if got := buf.String(); !strings.Contains(got, `msg=progress elapsed=`) {
		t.Fatalf("progress line: %s", got)
	}
	after := buf.String()
	time.Sleep(20 * time.Millisecond)
	if buf.String() != after {
		t.Fatal("a progress line after stop")
	}
}
