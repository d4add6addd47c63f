package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/dedup"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/gen"
)

// BenchmarkSequence measures the one sequential stage per event: event
// time, lateness, product codes, dedup and the resume points, over 200,000
// generated events (a dense city, ~2 minutes) parsed beforehand into 256 KiB
// batches. ns/op is per event.
func BenchmarkSequence(b *testing.B) {
	gc := gen.DefaultConfig()
	gc.Start = time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)
	lines, _ := genWith(b, gc, 200_000)
	text := []byte(strings.Join(lines, "\n") + "\n")
	products := encode.NewProducts()
	var batches []*batch
	var pr encode.Projector
	for len(text) > 0 {
		n := min(len(text), 256<<10)
		if n < len(text) {
			n = strings.LastIndexByte(string(text[:n]), '\n') + 1
		}
		bt := newBatch()
		bt.buf = append(bt.buf, text[:n]...)
		bt.parse(&pr, products, 1<<20, nil)
		batches = append(batches, bt)
		text = text[n:]
	}
	batches[len(batches)-1].eof = true
	cfg := DefaultConfig()
	wall := gc.Start.Add(time.Hour).UnixMilli()
	b.ReportAllocs()
	b.ResetTimer()
	events := 0
	for b.Loop() {
		b.StopTimer()
		dt, err := dedup.New(dedup.DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		s := newSequencer(cfg.Lateness.Milliseconds(), cfg.IdleTimeout.Milliseconds(), dt, cfg.Future.rule(), products, 32)
		var st Stats
		b.StartTimer()
		for _, bt := range batches {
			bt.counted, bt.minute, bt.rejects = bt.counted[:0], bt.minute[:0], bt.rejects[:0]
			s.sequence(bt, &st, wall)
			events += len(bt.ts)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
}
