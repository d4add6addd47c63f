// Package naive is demandpipe's contract written the way a first streaming
// job would write it, Flink-style, with none of the engine's optimizations:
// the yardstick that bench/REPORT.md measures each technique against.
//
// On purpose, per event:
//   - no projection: encoding/json decodes the whole line into a
//     map[string]any, nested fields and all;
//   - dedup in a map[string]bool keyed by fmt.Sprintf("%s|%s|%d", rider,
//     product, minute) (one map per open minute);
//   - h3.LatLngToCell and h3.GridDiskDistances on every counted event (no
//     neighbourhood cache);
//   - cells as strings (h3.Cell.String()) and features as float64;
//   - sliding windows as Flink assigns them: one window instance per (length
//     w, end minute), each a map[string]float64 keyed "product|cell|ring",
//     and every contribution copied into each of the w instances it belongs
//     to (sum(W) = 63 instances per element for W = 1,2,4,8,16,32);
//   - rows handed to the sink one per call.
//
// Semantics are the contract's (docs/CONTRACT.md "Semantics" 1-6: minutes, watermark
// and lateness, late and duplicate events, disk sums, windows, the rows of a
// closed minute in product-then-cell order, every minute closed at the end)
// with event time as a first job takes it, Flink's bounded out-of-orderness:
// the largest ts, the engine's -windows.future-confirm-riders=1. Left out,
// because the generated inputs it runs on never need them: the rest of
// event time by riders 1a (gen makes no events ahead of the clock), line_too_long (lines are
// read whole), duplicate_field (encoding/json keeps the last value), the
// 256-active-products limit, and idle-timeout on live sources (inputs are
// finite). On such inputs its rows equal the engine's (naive_test.go). It
// computes the count aggregate (rule 4), the one the report measures;
// Run refuses a definition of another (rule 4a).
package naive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/feature"
)

// Row is one output row, as the naive job holds it: strings and float64s.
type Row struct {
	H3       string // 15 hex digits
	Product  string // lower-case UUID
	Minute   int64  // unix minute
	Features []float64
}

// Sink receives rows one at a time, in output order.
type Sink interface {
	WriteRow(ctx context.Context, r Row) error
}

// Collect is a Sink that keeps every row.
type Collect struct{ Rows []Row }

// WriteRow appends r.
func (c *Collect) WriteRow(_ context.Context, r Row) error {
	c.Rows = append(c.Rows, r)
	return nil
}

// Discard is a Sink that drops rows (the null sink); it counts them.
type Discard struct{ N int64 }

// WriteRow counts r.
func (d *Discard) WriteRow(context.Context, Row) error { d.N++; return nil }

// Stats counts what happened to the input's lines.
type Stats struct {
	Lines, Blank, Rejected, Late, Duplicates, Counted, Rows int64
}

// Job is one run's state.
type Job struct {
	def      feature.Definition
	lateness int64 // ms
	sink     Sink
	Stats    Stats

	haveMax       bool
	maxTS         int64
	closedThrough int64
	first         int64                         // earliest counted minute
	seen          map[int64]map[string]bool     // dedup, one map per open minute
	windows       map[string]map[string]float64 // "w|end" -> "product|cell|ki" -> sum
}

// New returns a job for def with the given lateness, writing to snk.
func New(def feature.Definition, lateness time.Duration, snk Sink) *Job {
	return &Job{
		def: def, lateness: lateness.Milliseconds(), sink: snk,
		closedThrough: math.MinInt64 / 2, first: math.MaxInt64,
		seen: map[int64]map[string]bool{}, windows: map[string]map[string]float64{},
	}
}

// Run processes r to its end and closes every minute up to the minute of
// the largest ts.
func (j *Job) Run(ctx context.Context, r io.Reader) error {
	if a, err := feature.LookupAggregate(j.def.Aggregate); err != nil || a.Name != feature.DefaultAggregate {
		return fmt.Errorf("naive: windows.aggregate=%q: the naive job computes count only", j.def.Aggregate)
	}
	br := bufio.NewReader(r)
	firstLine := true
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if firstLine {
				line = bytes.TrimPrefix(line, []byte("\ufeff"))
			}
			firstLine = false
			if err := j.event(ctx, line); err != nil {
				return err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if !j.haveMax {
		return nil
	}
	return j.closeThrough(ctx, floorDiv(j.maxTS, 60000))
}

// event handles one raw line.
func (j *Job) event(ctx context.Context, line []byte) error {
	if len(bytes.TrimSpace(line)) == 0 {
		j.Stats.Blank++
		return nil
	}
	j.Stats.Lines++
	ev, ok := Parse(line)
	if !ok {
		j.Stats.Rejected++
		return nil
	}
	m := floorDiv(ev.TS, 60000)
	if m <= j.closedThrough {
		j.Stats.Late++
		return nil
	}
	key := fmt.Sprintf("%s|%s|%d", ev.Rider, ev.Product, m)
	if j.seen[m] == nil {
		j.seen[m] = map[string]bool{}
	}
	if j.seen[m][key] {
		j.Stats.Duplicates++
	} else {
		j.seen[m][key] = true
		j.Stats.Counted++
		j.first = min(j.first, m)
		if err := j.count(ev, m); err != nil {
			return err
		}
	}
	if !j.haveMax || ev.TS > j.maxTS {
		j.haveMax, j.maxTS = true, ev.TS
	}
	return j.closeThrough(ctx, floorDiv(j.maxTS-j.lateness, 60000)-1)
}

// count scatters one counted event over its disk and copies the
// contribution into every window instance it belongs to.
func (j *Job) count(ev Event, m int64) error {
	cell, err := h3.LatLngToCell(h3.LatLng{Lat: ev.Lat, Lng: ev.Lng}, j.def.Resolution)
	if err != nil {
		return fmt.Errorf("naive: LatLngToCell: %w", err)
	}
	rings, err := h3.GridDiskDistances(cell, j.def.MaxRingValue())
	if err != nil {
		return fmt.Errorf("naive: GridDiskDistances: %w", err)
	}
	// The window instances this event belongs to: w of them per length w.
	var insts []map[string]float64
	for wi, w := range j.def.Windows {
		for end := m; end < m+int64(w); end++ {
			name := windowName(wi, end)
			st := j.windows[name]
			if st == nil {
				st = map[string]float64{}
				j.windows[name] = st
			}
			insts = append(insts, st)
		}
	}
	for dist, ring := range rings {
		for _, t := range ring {
			if t == 0 {
				continue
			}
			for ki, k := range j.def.Rings {
				if dist > k {
					continue
				}
				key := ev.Product + "|" + t.String() + "|" + strconv.Itoa(ki)
				for _, st := range insts { // one copy per window instance
					st[key] += 1.0
				}
			}
		}
	}
	return nil
}

func windowName(wi int, end int64) string { return strconv.Itoa(wi) + "|" + strconv.FormatInt(end, 10) }

// closeThrough closes every minute up to through: fires the window
// instances ending there, merges them into rows and writes them.
func (j *Job) closeThrough(ctx context.Context, through int64) error {
	for m := max(j.closedThrough+1, j.first); m <= through; m++ {
		if len(j.windows) == 0 {
			break // no window holds anything: skip the stretch
		}
		if err := j.fire(ctx, m); err != nil {
			return err
		}
	}
	if through > j.closedThrough {
		j.closedThrough = through
		for m := range j.seen {
			if m <= through {
				delete(j.seen, m)
			}
		}
	}
	return nil
}

func (j *Job) fire(ctx context.Context, m int64) error {
	nf := j.def.NumFeatures()
	rows := map[string][]float64{} // "product|cell" -> features
	for wi := range j.def.Windows {
		inst := windowName(wi, m)
		for key, v := range j.windows[inst] {
			parts := strings.Split(key, "|")
			ki, _ := strconv.Atoi(parts[2])
			rk := parts[0] + "|" + parts[1]
			f := rows[rk]
			if f == nil {
				f = make([]float64, nf)
				rows[rk] = f
			}
			f[j.def.Index(ki, wi)] += v
		}
		delete(j.windows, inst)
	}
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	slices.Sort(keys) // product, then cell: fixed-width lower-case hex both
	for _, k := range keys {
		product, cell, _ := strings.Cut(k, "|")
		if err := j.sink.WriteRow(ctx, Row{H3: cell, Product: product, Minute: m, Features: rows[k]}); err != nil {
			return err
		}
		j.Stats.Rows++
	}
	return nil
}

// Event is a parsed event: the five fields, the rest of the line decoded
// and thrown away.
type Event struct {
	TS       int64
	Rider    string
	Product  string // lower case
	Lat, Lng float64
}

const maxTS = 253402300799999

// Parse decodes the whole line into a map[string]any (no projection) and
// validates the five fields as the contract does.
func Parse(line []byte) (Event, bool) {
	var obj map[string]any
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	if err := d.Decode(&obj); err != nil || obj == nil {
		return Event{}, false
	}
	if _, err := d.Token(); err != io.EOF { // one JSON value per line
		return Event{}, false
	}
	var ev Event
	tsn, ok := obj["ts"].(json.Number)
	if !ok {
		return ev, false
	}
	ts, err := strconv.ParseInt(string(tsn), 10, 64)
	if err != nil || ts < 0 || ts > maxTS {
		return ev, false
	}
	ev.TS = ts
	rider, ok := obj["rider_id"].(string)
	if !ok || rider == "" || len(rider) > 256 {
		return ev, false
	}
	ev.Rider = rider
	var okLat, okLng bool
	ev.Lat, okLat = number(obj["lat"], 90)
	ev.Lng, okLng = number(obj["lng"], 180)
	if !okLat || !okLng {
		return ev, false
	}
	p, ok := obj["product_type"].(string)
	if !ok || !isUUID(p) {
		return ev, false
	}
	ev.Product = strings.ToLower(p)
	return ev, true
}

func number(v any, bound float64) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	return f, err == nil && f >= -bound && f <= bound
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
