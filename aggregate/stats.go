package aggregate

import "sync/atomic"

// Stats are the count's and the close's counters, updated once per event
// batch or close; pipeline.Stats embeds them beside the ingest counters,
// and the metrics and the summary read them there.
type Stats struct {
	Counted      atomic.Int64 // events that count (the single process: first events; the aggregate role: events received)
	Rows         atomic.Int64 // rows handed to the sink
	Minutes      atomic.Int64 // minutes closed
	Closed       atomic.Int64 // last closed minute (unix minute), 0 before any
	CloseNanos   atomic.Int64 // time spent closing minutes
	Targets      atomic.Int64 // (cell, product) targets with data after the last close
	RestoreNanos atomic.Int64 // time spent restoring windows from a checkpoint
	Compactions  atomic.Int64 // renumberings of the cell index (closer.maybeCompact)
	OverBudget   atomic.Int64 // counted events shed at a close: their cell was new and the state at Config.MaxMemory
	ShedSources  atomic.Int64 // (cell, product) sources of a minute shed over the budget
	StateBytes   atomic.Int64 // the close state after the last close (closer.stateBytes)
	// SourceBytes is the part of StateBytes that scales with the sources,
	// not the targets: the cached k-ring disks (~5 KB a source at k=20)
	// and the sources kept per source (sparse). (StateBytes - SourceBytes)
	// / Targets is the state a target costs.
	SourceBytes atomic.Int64
}
