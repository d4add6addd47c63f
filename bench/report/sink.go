package report

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/demandpipe/demandpipe/bench"
	"github.com/demandpipe/demandpipe/bench/naive"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/doubles"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink/cassandra"
)

// serviceTime is the CQL test double's time per statement in the batch
// size and writer pool comparisons (CASSANDRA.md's grid uses the same).
const serviceTime = 2 * time.Millisecond

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sink: the Cassandra sink (sink/cassandra, through sink.Queue) against
// the CQL test double (internal/cqltest) in this process. Batch size and
// writer pool at a fixed 2 ms service time per statement; compression with
// no service time (it costs CPU and saves bytes).
func (r *run) sink() error {
	full := r.rows
	if full == nil || full.Len() == 0 {
		return fmt.Errorf("no engine rows")
	}
	n := min(r.cfg.SinkRows, full.Len())
	sub := &encode.Batch{Minute: full.Minute, NumFeatures: full.NumFeatures, Names: full.Names,
		Cells: full.Cells[:n], Products: full.Products[:n], Features: full.Features[:n*full.NumFeatures]}
	slow, err := doubles.StartCQL(serviceTime)
	if err != nil {
		return err
	}
	defer slow.Close()
	fast, err := doubles.StartCQL(0)
	if err != nil {
		return err
	}
	defer fast.Close()
	ctx := context.Background()
	var sinks []*cassandra.Sink
	defer func() {
		for _, s := range sinks {
			s.Close()
		}
	}()
	open := func(srv doubles.Server, batch, writers int, codec string) (*cassandra.Sink, error) {
		cfg := cassandra.DefaultConfig()
		cfg.Hosts, cfg.Port, cfg.CreateSchema, cfg.ReplicationFactor = []string{"127.0.0.1"}, srv.Port(), true, 1
		cfg.Table = fmt.Sprintf("features_b%d_w%d_%s", batch, writers, codec)
		cfg.Compression, cfg.Queue.BatchRows, cfg.Queue.Writers, cfg.NumConns = codec, batch, writers, 2
		s, err := cassandra.Open(ctx, cfg, cassandra.Options{Logf: func(string, ...any) {}})
		if err == nil {
			sinks = append(sinks, s)
		}
		return s, err
	}
	write := func(s *cassandra.Sink, b *encode.Batch) func() error {
		return func() error {
			if err := s.Write(ctx, b); err != nil {
				return err
			}
			return s.CloseMinute(ctx, b.Minute)
		}
	}
	b1w16, err := open(slow, 1, 16, "snappy")
	if err != nil {
		return err
	}
	b50w16, err := open(slow, 50, 16, "snappy")
	if err != nil {
		return err
	}
	b50w1, err := open(slow, 50, 1, "snappy")
	if err != nil {
		return err
	}
	s, err := r.alternate(timed(write(b1w16, sub)), timed(write(b50w1, sub)), timed(write(b50w16, sub)))
	if err != nil {
		return err
	}
	rows := func(sec float64) string { return rate(float64(n) / sec) }
	batchX := median(s[0]) / median(s[2])
	poolX := median(s[1]) / median(s[2])

	none, err := open(fast, 50, 16, "none")
	if err != nil {
		return err
	}
	snappy, err := open(fast, 50, 16, "snappy")
	if err != nil {
		return err
	}
	var wire [2][]float64
	var cpu [2][]float64
	measure := func(i int, s *cassandra.Sink) func() (float64, error) {
		return func() (float64, error) {
			fast.ResetStats()
			c0, t0 := cpuTime(), time.Now()
			err := write(s, full)()
			sec := time.Since(t0).Seconds()
			wire[i] = append(wire[i], float64(fast.BytesReceived())/float64(full.Len()))
			cpu[i] = append(cpu[i], float64((cpuTime()-c0).Nanoseconds())/float64(full.Len()))
			return sec, err
		}
	}
	cs, err := r.alternate(measure(0, none), measure(1, snappy))
	if err != nil {
		return err
	}
	fullRows := func(sec float64) string { return rate(float64(full.Len()) / sec) }
	wireX := median(wire[0]) / median(wire[1])
	r.add("sink", summaryLine{"batch size", "rows/s, 16 writers, 2 ms", rows(median(s[0])) + " (1 row)", rows(median(s[2])) + " (50 rows)", ratio(batchX)}, fmt.Sprintf(`
## Writes: batch size, writer pool, compression

The Cassandra sink (`+"`sink/cassandra`"+`: one-partition unlogged batches through the bounded
`+"`sink.Queue`"+`) writing the engine's rows to the CQL test double (`+"`internal/cqltest`"+`) over
loopback TCP in this process: the first %d rows of the engine's densest minute over the
corpus (%d rows). The double answers every statement after a fixed %s, as a loaded cluster
would; it is not a real Cassandra (CASSANDRA.md), so these rank designs and do not predict a
cluster. One op = Write then CloseMinute (every row acknowledged).

| rows per batch | writers | rows/s (median) | slowest to fastest round | |
|---|---|---|---|---|
| 1, a plain INSERT per row (off, naive) | 16 | %s | %s | |
| 50 | 1 | %s | %s | writer pool off |
| 50 (on, default) | 16 (on, default) | %s | %s | |
| **batch 50 vs 1** (16 writers) | | **%s** | | |
| **16 writers vs 1** (batch 50) | | **%s** | | |

Compression of CQL frames, the densest minute whole (%d rows), batch 50, 16 writers, no
service time. Rows/s and CPU per row are the whole process's: the client and the test double's
own Snappy decoding share these 2 cores, so they overstate the client's cost; the client's
codec alone is CASSANDRA.md's table (`+"`go test ./sink/cassandra -bench Codec`"+`, ~150 ns a row to
compress). The bytes are the point: they are what a cluster's network and commit log carry.

| frames | wire bytes per row | rows/s (median) | slowest to fastest round | CPU per row |
|---|---|---|---|---|
| uncompressed (off) | %.1f | %s | %s | %.1f us |
| Snappy (S2 encoder; on, default) | %.1f | %s | %s | %.1f us |
| **on vs off** | **%.1fx fewer bytes** | %.2fx | | %.2fx |
`, n, full.Len(), serviceTime,
		rows(median(s[0])), spread(s[0], rows), rows(median(s[1])), spread(s[1], rows), rows(median(s[2])), spread(s[2], rows),
		ratio(batchX), ratio(poolX),
		full.Len(), median(wire[0]), fullRows(median(cs[0])), spread(cs[0], fullRows), median(cpu[0])/1e3,
		median(wire[1]), fullRows(median(cs[1])), spread(cs[1], fullRows), median(cpu[1])/1e3,
		wireX, median(cs[0])/median(cs[1]), median(cpu[1])/median(cpu[0])))
	r.summary = append(r.summary,
		summaryLine{"writer pool", "rows/s, batch 50, 2 ms", rows(median(s[1])) + " (1 writer)", rows(median(s[2])) + " (16)", ratio(poolX)},
		summaryLine{"compression", "wire bytes per row", fmt.Sprintf("%.0f", median(wire[0])), fmt.Sprintf("%.1f", median(wire[1])), fmt.Sprintf("%.1fx fewer", wireX)})
	return nil
}

// endToEnd: the naive job against the engine on the same generated input,
// default definition, into sinks that drop rows. One core each (the naive
// job is one goroutine; GOMAXPROCS 1 for both), and the engine on both
// cores as a third line.
func (r *run) endToEnd() error {
	data, err := gen.Generate(gen.DefaultConfig(), r.cfg.NaiveEvents)
	if err != nil {
		return err
	}
	cfg := pipeline.DefaultConfig()
	var naiveRows, engineRows int64
	off := func() error {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
		var d naive.Discard
		j := naive.New(cfg.Def, cfg.Lateness, &d)
		if err := j.Run(context.Background(), bytes.NewReader(data)); err != nil {
			return err
		}
		naiveRows = d.N
		return nil
	}
	engine := func(par int) func() error {
		return func() error {
			c := cfg
			c.Parallelism = par
			res, err := bench.Replay(data, c)
			engineRows = res.Rows
			return err
		}
	}
	s, err := r.alternate(timed(off), timed(engine(1)), timed(engine(2)))
	if err != nil {
		return err
	}
	// For scale, not a ratio: the engine on the whole corpus, one core.
	c1 := cfg
	c1.Parallelism = 1
	big, err := bench.Replay(r.c.data, c1)
	if err != nil {
		return err
	}
	if naiveRows != engineRows {
		return fmt.Errorf("naive job wrote %d rows, the engine %d", naiveRows, engineRows)
	}
	n := float64(r.cfg.NaiveEvents)
	evs := func(sec float64) string { return rate(n / sec) }
	x := median(s[0]) / median(s[1])
	r.add("end to end", summaryLine{"all of them: end to end", "raw events/s, one core", evs(median(s[0])), evs(median(s[1])), ratio(x)}, fmt.Sprintf(`
## End to end: the naive job vs the engine

The same %d generated events (gen defaults: a dense city at 100,000 events a minute, about half
duplicates), default definition, lateness 30 s, rows dropped by the sink (`+"`naive.Discard`"+`,
`+"`null:`"+`); both wrote the same %d rows. The naive job is one goroutine, so both run with
GOMAXPROCS 1; the engine on both cores is the third line. The input is small because the naive
job is slow; the engine's own figure on 2M events is in docs/PERFORMANCE.md (`+"`demandpipe bench`"+`).

| | raw events/s (median) | slowest to fastest round | time |
|---|---|---|---|
| bench/naive (off), one core | %s | %s | %s |
| engine, `+"`-parallelism 1`"+` | %s | %s | %s |
| engine, `+"`-parallelism 2`"+` | %s | %s | %s |
| **engine vs naive, one core each** | **%s** | | |

The engine's rate on so small an input is mostly fixed costs (the close of a minute of
isolated sources: ~1,261 rows each); for scale, on this run's %d-event corpus it ran at
%s raw events on one core (one replay, a different input: not part of the ratio).
`, r.cfg.NaiveEvents, naiveRows, evs(median(s[0])), spread(s[0], evs), ms(median(s[0])),
		evs(median(s[1])), spread(s[1], evs), ms(median(s[1])), evs(median(s[2])), spread(s[2], evs), ms(median(s[2])), ratio(x),
		big.Events, rate(big.EventsPerSecond())))
	return nil
}
