package report

import (
	"bytes"
	"fmt"

	"github.com/cespare/xxhash/v2"

	"github.com/demandpipe/demandpipe/dedup"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/h3batch"
)

// corpus is the generated city every section reads, and what the engine's
// stages make of it, computed once: projected events, dedup's verdicts and
// every event's cell.
type corpus struct {
	def   feature.Definition
	data  []byte
	lines [][]byte // without '\n'
	evs   []cev    // valid events, arrival order
	first []bool   // per evs: the first for (rider, product, minute)
	cells []uint64 // per evs: its resolution-8 cell
	names *encode.Products
}

// cev is a projected event.
type cev struct {
	minute   int64
	lat, lng float64
	product  byte
	hash     uint64 // dedup.Mix(xxhash(rider), product)
	check    uint64 // dedup.Mix(dedup.CheckOf(rider), product)
	rider    []byte // aliases data
	uuid     encode.UUID
}

func newCorpus(cfg Config) (*corpus, error) {
	gc := gen.DefaultConfig()
	gc.EventsPerMinute = cfg.Rate
	data, err := gen.Generate(gc, cfg.Events)
	if err != nil {
		return nil, err
	}
	c := &corpus{def: feature.Default(), data: data, names: encode.NewProducts()}
	for l := range bytes.Lines(data) {
		c.lines = append(c.lines, bytes.TrimSuffix(l, []byte("\n")))
	}
	var p encode.Projector
	var ev encode.Event
	for _, l := range c.lines {
		if p.Project(l, &ev) != encode.OK {
			continue
		}
		code, err := c.names.Code(ev.Product)
		if err != nil {
			return nil, err
		}
		rider := ev.Rider
		if i := bytes.Index(l, rider); i >= 0 { // alias the line, not the projector's scratch
			rider = l[i : i+len(rider)]
		} else {
			rider = bytes.Clone(rider)
		}
		c.evs = append(c.evs, cev{minute: floorDiv(ev.TS, 60000), lat: ev.Lat, lng: ev.Lng, product: code,
			hash: dedup.Mix(xxhash.Sum64(rider), code), check: dedup.Mix(dedup.CheckOf(rider), code), rider: rider, uuid: ev.Product})
	}
	if len(c.evs) == 0 {
		return nil, fmt.Errorf("no valid events generated")
	}
	// Dedup's verdicts. Generated events arrive within seconds of their ts
	// (no late events by default), so every one is on time.
	t, err := dedup.New(dedup.DefaultConfig())
	if err != nil {
		return nil, err
	}
	c.first = make([]bool, len(c.evs))
	for i, e := range c.evs {
		c.first[i] = t.Add(e.minute, e.hash, e.check) == dedup.First
	}
	lat, lng := make([]float64, len(c.evs)), make([]float64, len(c.evs))
	for i, e := range c.evs {
		lat[i], lng[i] = e.lat, e.lng
	}
	var loc h3batch.Locator
	var failed int
	if c.cells, failed = loc.Cells(lat, lng, c.def.Resolution, nil); failed > 0 {
		return nil, fmt.Errorf("%d events could not be located", failed)
	}
	return c, nil
}

// counted returns the cells of the first n counted events, in arrival order.
func (c *corpus) counted(n int) []uint64 {
	var out []uint64
	for i, f := range c.first {
		if f {
			out = append(out, c.cells[i])
			if len(out) == n {
				break
			}
		}
	}
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
