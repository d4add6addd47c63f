package serve

import (
	"net/http"
	"strconv"

	"github.com/demandpipe/demandpipe/feature"
)

// GET /v1/overview?product=UUID[&minute=RFC3339] describes one minute of
// one product feature by feature, for the page to choose a view that shows
// something (and for people deciding which k and w to look at):
//
//	{"product_type":…,"minute":…,"age_seconds":…,"rows":R,
//	 "features":[{"k":0,"w":1,"cells":C,"max":M,"sum":S,"levels":L},…],
//	 "suggested":{"k":K,"w":W,"scale":"log"|"linear"}}
//
// cells is the number of cells with a non-zero value, levels the number of
// distinct non-zero values (counted up to overviewMaxLevels, which means
// "at least that many"). One scan of the minute's rows.
//
// The suggested view is the least smoothed picture that still has colours
// and area to show. Sparse data (the real NYC pickups: 2-10 riders a minute
// over the city) has, at k=0 w=1, a handful of cells of value 1: one
// colour, a few dots. At the largest k and w every rider is smeared over
// 1,261 cells and 32 minutes: many levels but one blob the size of the
// city. Between the two, each (k,w) has a footprint, the cell-minutes that
// feed one value, (3k(k+1)+1)·w, and the suggestion is the pair of smallest
// footprint whose picture has at least suggestLevels distinct values over
// at least suggestCells cells (or a quarter of the widest view's cells, for
// a small town); if none has, the pair with the most levels (smallest
// footprint first). A dense live city gets k=0 w=1 (raw counts are already
// varied); six evening hours of NYC get k=1 w=8 (142 cells, 21 levels)
// where the old fixed default, k=2 w=4 of the latest minute, drew 19
// identical hexagons. Scale: log when the hottest cell is at least 4 times
// the mean of the non-zero cells (a linear ramp would paint most cells in
// its bottom quarter), linear otherwise.

const (
	// overviewMaxLevels caps the distinct values counted per feature:
	// the counting set is a fixed array, so a metro minute (15,000 rows,
	// 54 features) costs 810,000 probes of a 128-slot table, no allocation.
	overviewMaxLevels = 64
	// suggestLevels: 16 distinct values, twice the ~8 steps of a viridis
	// ramp the eye tells apart, so that a log scale still has a value per
	// step.
	suggestLevels = 16
	// suggestCells: 100 cells of resolution 8 (~74 km²) is a district
	// with a shape, not a few dots.
	suggestCells = 100
)

// featureStat is one feature's summary over the cells of a minute.
type featureStat struct {
	cells  int
	max    int32
	sum    int64
	levels int
	set    [2 * overviewMaxLevels]int32 // open addressing; 0 is empty (values counted are non-zero)
}

func (f *featureStat) add(v int32) {
	if v == 0 {
		return
	}
	f.cells++
	f.sum += int64(v)
	f.max = max(f.max, v)
	if f.levels >= overviewMaxLevels {
		return
	}
	i := uint32(v) * 2654435761 % uint32(len(f.set))
	for f.set[i] != 0 {
		if f.set[i] == v {
			return
		}
		i = (i + 1) % uint32(len(f.set))
	}
	f.set[i] = v
	f.levels++
}

// suggestView picks (ki, wi) and a scale from per-feature stats (k-major,
// as the definition orders them); see the comment above.
func suggestView(rings, windows []int, stats []featureStat) (ki, wi int, scale string) {
	widest := 0
	for i := range stats {
		widest = max(widest, stats[i].cells)
	}
	minCells := min(suggestCells, widest/4)
	best, bestFoot, bestLevels := -1, 0, -1
	good := false
	for i := range stats {
		st := &stats[i]
		if st.cells == 0 {
			continue
		}
		k, w := rings[i/len(windows)], windows[i%len(windows)]
		foot := feature.DiskCells(k) * w
		ok := st.levels >= suggestLevels && st.cells >= minCells
		switch {
		case best < 0,
			ok && !good,
			ok && good && foot < bestFoot,
			!ok && !good && (st.levels > bestLevels || st.levels == bestLevels && foot < bestFoot):
			best, bestFoot, bestLevels, good = i, foot, st.levels, ok
		}
	}
	if best < 0 {
		// No demand at all: the definition's smallest view.
		return 0, 0, "linear"
	}
	st := &stats[best]
	scale = "linear"
	if float64(st.max) >= 4*float64(st.sum)/float64(st.cells) {
		scale = "log"
	}
	return best / len(windows), best % len(windows), scale
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, st *reqState) int {
	q := &st.q
	if msg := q.parse(r.URL.RawQuery); msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	pv, pok := q.get("product")
	mv, mok := q.get("minute")
	if msg := q.only("product", "minute"); msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	product, m, msg := s.parseProductMinute(pv, pok, mv, mok)
	if msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	m, code := s.resolveMinute(w, st, m)
	if code != 0 {
		return code
	}
	stats := make([]featureStat, s.def.NumFeatures()) // ~30 KB: once per page load, not pooled
	rows := 0
	err := s.r.Scan(m, product, func(_ uint64, f []int32) bool {
		rows++
		for i, v := range f[:min(len(f), len(stats))] {
			stats[i].add(v)
		}
		return true
	})
	if err != nil {
		return s.failRead(w, st, err)
	}
	ki, wi, scale := suggestView(s.def.Rings, s.def.Windows, stats)
	var rc rowContext
	s.initRowContext(&rc, product, m, false)
	o := rc.appendHead(append(st.out[:0], '{'))
	o = append(o, `,"rows":`...)
	o = strconv.AppendInt(o, int64(rows), 10)
	o = append(o, `,"features":[`...)
	for i := range stats {
		f := &stats[i]
		if i > 0 {
			o = append(o, ',')
		}
		o = append(o, `{"k":`...)
		o = strconv.AppendInt(o, int64(s.def.Rings[i/len(s.def.Windows)]), 10)
		o = append(o, `,"w":`...)
		o = strconv.AppendInt(o, int64(s.def.Windows[i%len(s.def.Windows)]), 10)
		o = append(o, `,"cells":`...)
		o = strconv.AppendInt(o, int64(f.cells), 10)
		o = append(o, `,"max":`...)
		o = strconv.AppendInt(o, int64(f.max), 10)
		o = append(o, `,"sum":`...)
		o = strconv.AppendInt(o, f.sum, 10)
		o = append(o, `,"levels":`...)
		o = strconv.AppendInt(o, int64(f.levels), 10)
		o = append(o, '}')
	}
	o = append(o, `],"suggested":{"k":`...)
	o = strconv.AppendInt(o, int64(s.def.Rings[ki]), 10)
	o = append(o, `,"w":`...)
	o = strconv.AppendInt(o, int64(s.def.Windows[wi]), 10)
	o = append(o, `,"scale":"`...)
	o = append(o, scale...)
	st.out = append(o, "\"}}\n"...)
	return s.writeJSON(w, st, http.StatusOK)
}
