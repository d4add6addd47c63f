package source

import (
	"context"
	"log/slog"
	"os"
	"sync/atomic"
)

// clientLog is the Pulsar client's log handler: lines at warn and above go
// to stderr (prefixed "pulsar client: "), and the client's info line for a
// consumer that reconnected is counted (the client has no other hook for
// it): demandpipe_source_pulsar_reconnects_total.
type clientLog struct {
	out        slog.Handler
	reconnects *atomic.Int64 // nil: not counted
}

func newClientLog(reconnects *atomic.Int64) *clientLog {
	return &clientLog{out: slog.NewTextHandler(prefixed{}, &slog.HandlerOptions{Level: slog.LevelWarn}), reconnects: reconnects}
}

func (h *clientLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *clientLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "Reconnected consumer to broker" && h.reconnects != nil {
		h.reconnects.Add(1)
	}
	if r.Level < slog.LevelWarn {
		return nil
	}
	return h.out.Handle(ctx, r)
}

func (h *clientLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &clientLog{out: h.out.WithAttrs(as), reconnects: h.reconnects}
}

func (h *clientLog) WithGroup(name string) slog.Handler {
	return &clientLog{out: h.out.WithGroup(name), reconnects: h.reconnects}
}

// prefixed writes the client's lines to stderr, told apart from the run's.
type prefixed struct{}

func (prefixed) Write(b []byte) (int, error) {
	return os.Stderr.Write(append([]byte("pulsar client: "), b...))
}
