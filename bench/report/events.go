package report

import (
	"fmt"
	"runtime"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/bench/naive"
	"github.com/demandpipe/demandpipe/dedup"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/cellindex"
	"github.com/demandpipe/demandpipe/internal/h3batch"
)

// mallocsPer runs f once and returns its heap allocations per n items.
func mallocsPer(n int, f func() error) (float64, error) {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	err := f()
	runtime.ReadMemStats(&b)
	return float64(b.Mallocs-a.Mallocs) / float64(n), err
}

// projection: the five fields pulled by encode.Projector against the whole
// line decoded into a map[string]any by encoding/json (naive.Parse), both
// validating the same fields, one goroutine each.
func (r *run) projection() error {
	lines := r.c.lines[:min(len(r.c.lines), 50_000)]
	var bytesN int
	for _, l := range lines {
		bytesN += len(l) + 1
	}
	bad := 0
	off := func() error {
		for _, l := range lines {
			if _, ok := naive.Parse(l); !ok {
				bad++
			}
		}
		return nil
	}
	var p encode.Projector
	var ev encode.Event
	on := func() error {
		for _, l := range lines {
			if p.Project(l, &ev) != encode.OK {
				bad++
			}
		}
		return nil
	}
	offA, _ := mallocsPer(len(lines), off)
	onA, _ := mallocsPer(len(lines), on)
	if bad > 0 {
		return fmt.Errorf("%d generated lines rejected", bad)
	}
	offS, onS, err := r.sideBySide(timed(off), timed(on))
	if err != nil {
		return err
	}
	n := float64(len(lines))
	x := median(offS) / median(onS)
	evs := func(s float64) string { return rate(n / s) }
	r.add("projection", summaryLine{"field projection", "events/s, one core", evs(median(offS)), evs(median(onS)), ratio(x)}, fmt.Sprintf(`
## Field projection

%d generated events (~%d bytes each, the five fields among ~20 others, nested objects and
arrays), parsed and validated on one goroutine. Off: `+"`encoding/json`"+` decodes each line into a
`+"`map[string]any`"+` (`+"`naive.Parse`"+`); on: `+"`encode.Projector`"+` scans for the five top-level
keys and skips the rest without building anything.

| | events/s (median) | slowest to fastest round | MB/s | allocations per event |
|---|---|---|---|---|
| encoding/json map (off) | %s | %s | %.0f | %.1f |
| encode.Projector (on) | %s | %s | %.0f | %.1f |
| **on vs off** | **%s** | | | |
`, len(lines), bytesN/len(lines), evs(median(offS)), spread(offS, evs), float64(bytesN)/median(offS)/1e6, offA,
		evs(median(onS)), spread(onS, evs), float64(bytesN)/median(onS)/1e6, onA, ratio(x)))
	return nil
}

// dedup: the share of events that never pay for H3 because dedup runs
// before locating, the time of the two orders, and the dedup state itself
// (integer hash and an open-addressed table against a fmt.Sprintf key in a
// map[string]bool).
func (r *run) dedup() error {
	c := r.c
	n := len(c.evs)
	firsts := 0
	for _, f := range c.first {
		if f {
			firsts++
		}
	}
	dups := n - firsts
	lat, lng := make([]float64, 0, 1024), make([]float64, 0, 1024)
	var cells []uint64
	var loc h3batch.Locator
	locate := func(keep func(i int) bool) {
		lat, lng = lat[:0], lng[:0]
		for i := range c.evs {
			if !keep(i) {
				continue
			}
			lat, lng = append(lat, c.evs[i].lat), append(lng, c.evs[i].lng)
			if len(lat) == cap(lat) {
				cells, _ = loc.Cells(lat, lng, c.def.Resolution, cells[:0])
				lat, lng = lat[:0], lng[:0]
			}
		}
		cells, _ = loc.Cells(lat, lng, c.def.Resolution, cells[:0])
	}
	dedupAll := func() ([]bool, error) {
		t, err := dedup.New(dedup.DefaultConfig())
		if err != nil {
			return nil, err
		}
		first := make([]bool, n)
		for i, e := range c.evs {
			first[i] = t.Add(e.minute, e.hash, e.check) == dedup.First
		}
		return first, nil
	}
	off := func() error { // locate every event, then dedup
		locate(func(int) bool { return true })
		_, err := dedupAll()
		return err
	}
	on := func() error { // dedup, then locate the first events only
		first, err := dedupAll()
		if err != nil {
			return err
		}
		locate(func(i int) bool { return first[i] })
		return nil
	}
	offS, onS, err := r.sideBySide(timed(off), timed(on))
	if err != nil {
		return err
	}
	x := median(offS) / median(onS)
	evs := func(s float64) string { return rate(float64(n) / s) }

	// The dedup state: engine table vs map[string]bool with a Sprintf key.
	var uuids [256]string
	for i := range c.names.Len() {
		uuids[i] = c.names.Name(byte(i))
	}
	mapOff := func() error {
		seen := map[string]bool{}
		for _, e := range c.evs {
			k := fmt.Sprintf("%s|%s|%d", e.rider, uuids[e.product], e.minute)
			if !seen[k] {
				seen[k] = true
			}
		}
		return nil
	}
	tabOn := func() error { _, err := dedupAll(); return err }
	mOffS, mOnS, err := r.sideBySide(timed(mapOff), timed(tabOn))
	if err != nil {
		return err
	}
	mx := median(mOffS) / median(mOnS)
	share := float64(dups) / float64(n)
	r.add("dedup", summaryLine{"dedup before H3", "events located", fmt.Sprint(n), fmt.Sprint(firsts), fmt.Sprintf("%.0f%% never pay for H3; %s faster", 100*share, ratio(x))}, fmt.Sprintf(`
## Dedup before H3

Of %d on-time events, %d (%.1f%%) repeat a (rider, product, minute) already seen: dedup drops
them before they are located, so they never pay for H3. Off: locate every event
(`+"`h3batch`"+`, batches of 1,024), then dedup; on: dedup, then locate the first events only. Same
dedup table both ways.

| | events/s (median) | slowest to fastest round | events located |
|---|---|---|---|
| locate, then dedup (off) | %s | %s | %d |
| dedup, then locate (on) | %s | %s | %d |
| **on vs off** | **%s** | | %.2fx fewer |

The dedup state alone, the same %d probes: off, a `+"`fmt.Sprintf(\"%%s|%%s|%%d\")`"+` key in a
`+"`map[string]bool`"+` (naive); on, `+"`dedup.Table`"+` (a 128-bit key: xxhash of the rider and a
seeded maphash, product folded in; an open-addressed table of 16-byte slots per minute).

| | probes/s (median) | slowest to fastest round |
|---|---|---|
| map[string]bool, Sprintf key (off) | %s | %s |
| dedup.Table (on) | %s | %s |
| **on vs off** | **%s** | |
`, n, dups, 100*share, evs(median(offS)), spread(offS, evs), n, evs(median(onS)), spread(onS, evs), firsts, ratio(x),
		float64(n)/float64(firsts), n, evs(median(mOffS)), spread(mOffS, evs), evs(median(mOnS)), spread(mOnS, evs), ratio(mx)))
	r.summary = append(r.summary, summaryLine{"dedup state", "probes/s", evs(median(mOffS)), evs(median(mOnS)), ratio(mx)})
	return nil
}

// diskStream is the members of the disks of the first n counted events:
// the keys a scatter touches, in the order it touches them.
func (r *run) diskStream(n int) ([]uint64, error) {
	var out []uint64
	var dists []int32
	for _, cell := range r.c.counted(n) {
		var err error
		if out, dists, err = h3batch.Disk(cell, r.c.def.MaxRingValue(), out, dists); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// cellKeys: counting keyed by the cell's string (h3.Cell.String() per key,
// a map[string]int32) against the cell's uint64 in the engine's dense
// index (internal/cellindex) and a flat counts array; a map[uint64]int32
// in between.
func (r *run) cellKeys() error {
	keys, err := r.diskStream(max(r.cfg.DiskEvents/20, 20))
	if err != nil {
		return err
	}
	str := func() error {
		m := map[string]int32{}
		for _, k := range keys {
			m[h3.Cell(k).String()]++
		}
		return nil
	}
	u64 := func() error {
		m := map[uint64]int32{}
		for _, k := range keys {
			m[k]++
		}
		return nil
	}
	idx := func() error {
		x := cellindex.New(1024)
		var counts []int32
		for _, k := range keys {
			i := x.Insert(k)
			if int(i) == len(counts) {
				counts = append(counts, 0)
			}
			counts[i]++
		}
		return nil
	}
	s, err := r.alternate(timed(str), timed(u64), timed(idx))
	if err != nil {
		return err
	}
	offS, midS, onS := s[0], s[1], s[2]
	n := float64(len(keys))
	ops := func(s float64) string { return rate(n / s) }
	x := median(offS) / median(onS)
	r.add("cell keys", summaryLine{"integer cell keys", "counter updates/s", ops(median(offS)), ops(median(onS)), ratio(x)}, fmt.Sprintf(`
## Integer vs string cell keys

%d counter updates: the members of the k=%d disks of %d counted events, in scatter order
(%d distinct cells). Each update finds the cell's counter and adds one.

| key | updates/s (median) | slowest to fastest round | vs string |
|---|---|---|---|
| `+"`h3.Cell.String()`"+` in a map[string]int32 (off, naive) | %s | %s | 1x |
| uint64 in a map[uint64]int32 | %s | %s | %s |
| uint64 in `+"`cellindex.Index`"+` + flat []int32 (on, engine) | %s | %s | **%s** |
`, len(keys), r.c.def.MaxRingValue(), max(r.cfg.DiskEvents/20, 20), distinct(keys),
		ops(median(offS)), spread(offS, ops), ops(median(midS)), spread(midS, ops), ratio(median(offS)/median(midS)),
		ops(median(onS)), spread(onS, ops), ratio(x)))
	return nil
}

func distinct(v []uint64) int {
	m := map[uint64]struct{}{}
	for _, x := range v {
		m[x] = struct{}{}
	}
	return len(m)
}

// caching: every counted event scattered over its disk; off computes the
// disk with h3.GridDiskDistances per event (naive), on reads it from a
// cache of dense indices filled on first sight (what kring keeps). The
// scatter into the same per-(cell, distance) counters is equal both ways.
// A third line is the engine's whole smoothing: counts per source cell per
// minute first, then one scatter per source (kring.Smoother).
func (r *run) caching() error {
	cells := r.c.counted(r.cfg.DiskEvents)
	maxK := r.c.def.MaxRingValue()
	stride := uint32(maxK + 1)
	var acc []int32
	grow := func(n int) {
		for len(acc) < n*int(stride) {
			acc = append(acc, make([]int32, 4096*stride)...)
		}
	}
	off := func() error {
		x := cellindex.New(4096)
		clear(acc)
		for _, c := range cells {
			rings, err := h3.GridDiskDistances(h3.Cell(c), maxK)
			if err != nil {
				return err
			}
			for d, ring := range rings {
				for _, t := range ring {
					if t == 0 {
						continue
					}
					i := x.Insert(uint64(t))
					grow(int(i) + 1)
					acc[i*stride+uint32(d)]++
				}
			}
		}
		return nil
	}
	type cdisk struct{ at []uint32 } // acc offsets: member index*stride + distance
	on := func() error {
		x := cellindex.New(4096)
		cache := map[uint64]*cdisk{}
		clear(acc)
		for _, c := range cells {
			cd := cache[c]
			if cd == nil {
				rings, err := h3.GridDiskDistances(h3.Cell(c), maxK)
				if err != nil {
					return err
				}
				cd = &cdisk{}
				for d, ring := range rings {
					for _, t := range ring {
						if t != 0 {
							i := x.Insert(uint64(t))
							grow(int(i) + 1)
							cd.at = append(cd.at, i*stride+uint32(d))
						}
					}
				}
				cache[c] = cd
			}
			for _, a := range cd.at {
				acc[a]++
			}
		}
		return nil
	}
	offS, onS, err := r.sideBySide(timed(off), timed(on))
	if err != nil {
		return err
	}
	n := float64(len(cells))
	evs := func(s float64) string { return rate(n / s) }
	x := median(offS) / median(onS)
	r.add("caching", summaryLine{"neighbourhood caching", "counted events/s", evs(median(offS)), evs(median(onS)), ratio(x)}, fmt.Sprintf(`
## Neighbourhood caching

The first %d counted events of the corpus (%d distinct cells, so %.0f%% of the events hit the
cache), each scattered over its k=%d disk into per-(cell, distance) counters. Off:
`+"`h3.GridDiskDistances`"+` per event and the members looked up in the cell index (naive);
on: each cell's disk computed once and kept as counter offsets. The cached side pays its own
misses.

| | counted events/s (median) | slowest to fastest round |
|---|---|---|
| GridDisk per event (off) | %s | %s |
| cached disks (on) | %s | %s |
| **on vs off** | **%s** | |

The engine goes one step further (not measured here, see `+"`go test -bench Smooth ./kring`"+`): it
counts events per source cell per minute first and scatters each source once, so a source
with c events costs one scatter, not c.
`, len(cells), distinct(cells), 100*(1-float64(distinct(cells))/n), maxK,
		evs(median(offS)), spread(offS, evs), evs(median(onS)), spread(onS, evs), ratio(x)))
	return nil
}
