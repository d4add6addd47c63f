package definitions

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/read"
)

// Report is what Diff found.
type Report struct {
	Identical bool    // same spec, and every row of every compared minute equal
	SameSpec  bool    // the two definitions are the same value
	Minutes   []int64 // the minutes compared (in both stores), oldest first
	Rows      int     // rows compared (the union of both sides' rows)
	// First is the first difference found with the same spec, for people.
	First string
	// Features are the shared features' summaries, by (k, w) in a's order.
	Features []FeatureDiff
	// Aggregates are a's and b's (feature.Aggregate): when they differ, a
	// shared (k, w) is compared by number only, its meaning is not the same.
	Aggregates [2]string
}

// FeatureDiff summarises |a - b| of one shared feature over the rows.
type FeatureDiff struct {
	K, W          int
	N             int
	Mean          float64
	P50, P99, Max int64
}

// Diff compares two definitions' rows over the last minutes (at most
// minutes of them) that both stores hold, every product (issue 23: a new
// build run dark must match the one it replaces byte for byte).
//
// The same spec: every row is compared whole, and a row one side has and
// the other not is a difference. Different specs: each feature both have
// (the same k and w) is summarised over the rows of a, each read against
// b's row of the cell holding the centre of a's cell (the same cell at
// the same resolution; a missing row reads as zeros).
func Diff(a, b read.Reader, minutes int) (Report, error) {
	da, db := a.Definition(), b.Definition()
	rep := Report{SameSpec: da.String() == db.String(), Aggregates: [2]string{da.Kind().Name, db.Kind().Name}}
	rep.Minutes = common(a, b, minutes)
	if len(rep.Minutes) == 0 {
		return rep, fmt.Errorf("diff: no minute is in both stores (a holds %d, b %d)", len(a.Minutes(nil)), len(b.Minutes(nil)))
	}
	type pair struct{ ia, ib int }
	var shared []pair
	for ka, k := range da.Rings {
		for wa, w := range da.Windows {
			if kb, wb := slices.Index(db.Rings, k), slices.Index(db.Windows, w); kb >= 0 && wb >= 0 {
				shared = append(shared, pair{da.Index(ka, wa), db.Index(kb, wb)})
				rep.Features = append(rep.Features, FeatureDiff{K: k, W: w})
			}
		}
	}
	diffs := make([][]int64, len(shared))
	products := slices.Concat(a.Products(), b.Products())
	slices.SortFunc(products, func(x, y encode.UUID) int { return bytes.Compare(x[:], y[:]) })
	products = slices.Compact(products)
	rowB := make([]int32, db.NumFeatures())
	rep.Identical = rep.SameSpec
	for _, m := range rep.Minutes {
		for _, p := range products {
			rowsA, err := scanAll(a, m, p)
			if err != nil {
				return rep, err
			}
			rowsB, err := scanAll(b, m, p)
			if err != nil {
				return rep, err
			}
			if rep.SameSpec {
				rep.compareWhole(m, p, rowsA, rowsB)
			}
			for cell, fa := range rowsA {
				cb := cell
				if db.Resolution != da.Resolution {
					ll, err := h3.Cell(cell).LatLng()
					if err != nil {
						return rep, err
					}
					c, err := h3.LatLngToCell(ll, db.Resolution)
					if err != nil {
						return rep, err
					}
					cb = uint64(c)
				}
				fb, ok := rowsB[cb]
				if !ok {
					clear(rowB)
					fb = rowB
				}
				for i, s := range shared {
					d := int64(fa[s.ia]) - int64(fb[s.ib])
					diffs[i] = append(diffs[i], max(d, -d))
				}
			}
		}
	}
	for i := range rep.Features {
		rep.Features[i].summarise(diffs[i])
	}
	return rep, nil
}

// compareWhole compares two sides' rows of one minute and product.
func (rep *Report) compareWhole(m int64, p encode.UUID, rowsA, rowsB map[uint64][]int32) {
	cells := union(slices.Collect(maps.Keys(rowsA)), slices.Collect(maps.Keys(rowsB)))
	rep.Rows += len(cells)
	for _, c := range cells {
		fa, okA := rowsA[c]
		fb, okB := rowsB[c]
		if okA && okB && slices.Equal(fa, fb) {
			continue
		}
		if rep.Identical {
			rep.First = fmt.Sprintf("minute %s product %s cell %x: a %v, b %v", encode.MinuteStart(m).Format("2006-01-02T15:04Z"), p, c, rowText(fa, okA), rowText(fb, okB))
		}
		rep.Identical = false
	}
}

func rowText(f []int32, ok bool) string {
	if !ok {
		return "no row"
	}
	return fmt.Sprint(f)
}

func (f *FeatureDiff) summarise(d []int64) {
	f.N = len(d)
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	var sum float64
	for _, v := range d {
		sum += float64(v)
	}
	f.Mean = sum / float64(len(d))
	f.P50, f.P99, f.Max = d[len(d)/2], d[min(len(d)-1, len(d)*99/100)], d[len(d)-1]
}

// common is the last n minutes both readers hold, oldest first.
func common(a, b read.Reader, n int) []int64 {
	var out []int64
	for _, mi := range a.Minutes(nil) {
		if _, ok := b.Minute(mi.Minute); ok {
			out = append(out, mi.Minute)
		}
	}
	slices.Sort(out)
	if n > 0 && len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// scanAll is a minute's rows of one product, by cell (copies: a scan's
// slices are reused).
func scanAll(r read.Reader, m int64, p encode.UUID) (map[uint64][]int32, error) {
	out := map[uint64][]int32{}
	if !r.HasProduct(p) {
		return out, nil
	}
	err := r.Scan(m, p, func(cell uint64, f []int32) bool {
		out[cell] = slices.Clone(f)
		return true
	})
	return out, err
}

// union is the sorted distinct elements of a and b.
func union[T cmp.Ordered](a, b []T) []T {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// Write prints the report for people.
func (rep Report) Write(w io.Writer, nameA, nameB string) {
	span := fmt.Sprintf("%d minutes (%s .. %s)", len(rep.Minutes), encode.MinuteStart(rep.Minutes[0]).Format("2006-01-02T15:04Z"), encode.MinuteStart(rep.Minutes[len(rep.Minutes)-1]).Format("15:04Z"))
	switch {
	case rep.Identical:
		fmt.Fprintf(w, "%s and %s: the same definition, and every row identical: %d rows over %s\n", nameA, nameB, rep.Rows, span)
		return
	case rep.SameSpec:
		fmt.Fprintf(w, "%s and %s: the same definition, but the rows DIFFER over %s (%d rows compared); first: %s\n", nameA, nameB, span, rep.Rows, rep.First)
	default:
		fmt.Fprintf(w, "%s and %s: different definitions; %d shared features over %s, |%s - %s| per row of %s:\n", nameA, nameB, len(rep.Features), span, nameA, nameB, nameA)
		if a := rep.Aggregates; a[0] != a[1] {
			fmt.Fprintf(w, "  (%s folds its windows by %s, %s by %s: a shared k and w are the same numbers' place, not the same feature)\n", nameA, a[0], nameB, a[1])
		}
	}
	fmt.Fprintf(w, "  %4s %4s %10s %10s %8s %8s %8s\n", "k", "w", "rows", "mean", "p50", "p99", "max")
	for _, f := range rep.Features {
		fmt.Fprintf(w, "  %4d %4d %10d %10.3f %8d %8d %8d\n", f.K, f.W, f.N, f.Mean, f.P50, f.P99, f.Max)
	}
}
