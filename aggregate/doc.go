// Package aggregate is the engine after the counted event: it counts
// Counted events per open minute (count.go), closes minutes (close.go:
// place the sources, smooth over the k-rings, slide the windows, emit the
// merged rows, commit them with their state), keeps isolated sources on a
// cheaper path (sparse.go), and restores its windows from the per-minute
// count records a durable sink keeps (counts.go).
//
// Two drivers use it. A single process (package pipeline) counts on its
// count goroutine and closes on its own close goroutine (Local). A
// scale-out aggregate process (Aggregator, role.go) counts the counted
// events of several dedup processes, closes a minute once all their
// watermarks have passed it, and keeps its state per part of the cell
// space (parts.go). The counted events travel between processes in the
// CountedMessage encoding (counted_codec.go).
//
// What comes before the counted event (reading, parsing, event time,
// dedup, H3) is package pipeline's; this package knows nothing of input,
// riders or checkpoints of the input: a close is handed an opaque Resume
// that encodes the ingest side's checkpoint.
package aggregate
