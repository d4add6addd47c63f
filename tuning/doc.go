// Package tuning sweeps the engine's parallelism and the sink's writers and
// batch size against a store, the way Uber tuned their pricing pipeline's
// Cassandra writes: every combination of the grids is one point, run until
// its throughput is steady, and the sweep ends with a table, a CSV, a
// chart and a recommended setting. `demandpipe tune` is the command.
//
// A point: the events, generated once in memory (package gen, as bench
// does), are replayed from the start through a fresh engine
// (pipeline.New + Run, GOMAXPROCS = parallelism as in `demandpipe run`)
// into a fresh Cassandra sink (sink/cassandra) whose queue has the point's
// -sink.writers and -sink.batch-rows. The store is an in-process CQL test
// double (internal/cqltest) that adds a service time to every statement, a
// new one per point, or a real cluster (cassandra://).
//
// Measuring: from the first row the store acknowledges, rows/s is taken
// over successive windows of Config.Window, from the sink queue's counters
// (sink.QueueStats: rows acknowledged, the write-latency histogram, failed
// attempts); the engine's Stats give events/s; heap and RSS are sampled
// every 100 ms. After WarmupWindows windows, a point is steady when its
// last SteadyWindows windows are each within ±Tolerance of their mean
// (Steady); it then stops and reports that span. A point that is not
// steady stops at the end of the events or after MaxPointTime and reports
// every window after the warm-up. The p99 write latency is the upper bound
// of the histogram bucket holding the 99th percentile (buckets double, so
// it is within 2x), the mean write latency is exact.
//
// Recommending (Recommend): among points without error whose p99 is at
// most MaxP99 (250 ms), every point within Within (90%) of the best rows/s is a
// candidate, and the cheapest wins: fewest cores, then fewest rows in
// flight (writers x batch rows), then fewest writers. With the store slow
// (20 ms) more writers win; with it instant (0 ms) the engine is the
// bottleneck and a few writers do.
//
// Output: Report.WriteTable (Markdown: one line per point, then a grid of
// rows/s per parallelism, then the recommendation and its reason),
// WriteCSV (CSVHeader) and WriteSVG (a hand-written chart: rows/s against
// writers, one line per batch size, one panel per parallelism).
//
// The package registers no metrics: it reads the sink's.
package tuning
