package conn

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
)

// clientLog is the Pulsar client's log handler: lines at warn and above go
// to stderr (prefixed "pulsar client: ") and to the refusal watcher
// (refusal.go; after a refusal, the client's retries are not logged), and
// the client's info line for a consumer that reconnected is counted (the
// client has no other hook for it; Client.Reconnects).
type clientLog struct {
	out        slog.Handler
	reconnects *atomic.Int64
	refused    *refusal
	attrs      []slog.Attr // the logger's fields, for refused
}

func newClientLog(reconnects *atomic.Int64, refused *refusal) *clientLog {
	return &clientLog{out: slog.NewTextHandler(prefixed{}, &slog.HandlerOptions{Level: slog.LevelWarn}), reconnects: reconnects, refused: refused}
}

func (h *clientLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *clientLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "Reconnected consumer to broker" {
		h.reconnects.Add(1)
	}
	if r.Level < slog.LevelWarn {
		return nil
	}
	if h.refused.refused() != nil {
		return nil // the refusal was said; the client's retries would repeat it
	}
	h.refused.note(r.Message, h.attrs)
	return h.out.Handle(ctx, r)
}

func (h *clientLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &clientLog{out: h.out.WithAttrs(as), reconnects: h.reconnects, refused: h.refused, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *clientLog) WithGroup(name string) slog.Handler {
	return &clientLog{out: h.out.WithGroup(name), reconnects: h.reconnects, refused: h.refused, attrs: h.attrs}
}

// prefixed writes the client's lines to stderr, told apart from the run's.
type prefixed struct{}

func (prefixed) Write(b []byte) (int, error) {
	return os.Stderr.Write(append([]byte("pulsar client: "), b...))
}
