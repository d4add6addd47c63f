// Package feature names what demandpipe computes: a Definition (H3 resolution,
// k-ring radii K and sliding-window lengths W) fixes the 54 (= |K|*|W| by default)
// integer features of every row, and their order.
//
// A Definition is one value so that it can be named, versioned and stored beside
// the rows it produced (see ROADMAP: safe change of feature definitions).
//
// Feature order is k-major: index = kIndex*len(Windows) + wIndex, with K and W in
// the order the user gave them (not sorted).
package feature

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Limits of a Definition. They bound state sizes: a disk of radius 30 holds
// 3*30*31+1 = 2,791 cells, and 60 minutes of per-minute state per window.
const (
	MaxResolution = 15
	MaxRing       = 30
	MaxWindow     = 60 // minutes
	MaxRings      = 16
	MaxWindows    = 16
)

// Definition is a feature definition. The zero value is not valid; use Default.
type Definition struct {
	// Resolution is the H3 resolution of the hexagons (0..15). Default 8
	// (~0.74 km² per cell, a city block cluster).
	Resolution int
	// Rings are the k-ring radii K, in output order (0..30, at most 16,
	// no repeats). Default 0,1,2,3,4,5,10,15,20.
	Rings []int
	// Windows are the sliding-window lengths W in minutes, in output order
	// (1..60, at most 16, no repeats). Default 1,2,4,8,16,32.
	Windows []int
	// Aggregate is how a window folds its minutes (aggregate.go): "" or
	// "count", the contract's sums; "max", the busiest minute; "minutes",
	// the minutes with demand.
	Aggregate string
}

// Default returns the contract's default definition.
func Default() Definition {
	return Definition{
		Resolution: 8,
		Rings:      []int{0, 1, 2, 3, 4, 5, 10, 15, 20},
		Windows:    []int{1, 2, 4, 8, 16, 32},
	}
}

// Validate reports the first out-of-range field, naming it and its range.
func (d Definition) Validate() error {
	if d.Resolution < 0 || d.Resolution > MaxResolution {
		return fmt.Errorf("h3.resolution=%d: must be in 0..%d", d.Resolution, MaxResolution)
	}
	if err := checkList("kring.rings", d.Rings, 0, MaxRing, MaxRings); err != nil {
		return err
	}
	if err := checkList("windows.minutes", d.Windows, 1, MaxWindow, MaxWindows); err != nil {
		return err
	}
	_, err := LookupAggregate(d.Aggregate)
	return err
}

func checkList(name string, v []int, lo, hi, maxLen int) error {
	if len(v) == 0 {
		return fmt.Errorf("%s: needs at least one value in %d..%d", name, lo, hi)
	}
	if len(v) > maxLen {
		return fmt.Errorf("%s: %d values, at most %d allowed", name, len(v), maxLen)
	}
	for i, x := range v {
		if x < lo || x > hi {
			return fmt.Errorf("%s: value %d out of range %d..%d", name, x, lo, hi)
		}
		for _, y := range v[:i] {
			if x == y {
				return fmt.Errorf("%s: value %d given twice", name, x)
			}
		}
	}
	return nil
}

// NumFeatures is |K|*|W|, the length of a row's feature vector.
func (d Definition) NumFeatures() int { return len(d.Rings) * len(d.Windows) }

// Index is the position of feature (K[ki], W[wi]) in a row: k-major.
func (d Definition) Index(ki, wi int) int { return ki*len(d.Windows) + wi }

// MaxRingValue is the largest radius in K.
func (d Definition) MaxRingValue() int { return maxOf(d.Rings) }

// DiskCells is the number of cells within grid distance k of a hexagon:
// 3k(k+1)+1 (1,261 at k=20; fewer next to a pentagon).
func DiskCells(k int) int { return 3*k*(k+1) + 1 }

// WindowsByLength is the indices of W, shortest window first: the order
// in which windows ending at the same minute nest.
func (d Definition) WindowsByLength() []int {
	idx := make([]int, len(d.Windows))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return d.Windows[a] - d.Windows[b] })
	return idx
}

// MaxWindowValue is the largest window in W, in minutes.
func (d Definition) MaxWindowValue() int { return maxOf(d.Windows) }

func maxOf(v []int) int {
	m := 0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// String is a stable, parseable name of the definition, e.g.
// "res=8;rings=0,1,2,3,4,5,10,15,20;windows=1,2,4,8,16,32", with
// ";aggregate=NAME" after it unless the aggregate is the default (so the
// names of count definitions, which stores, checkpoints and tables keep,
// are what they were before there were aggregates).
func (d Definition) String() string {
	s := "res=" + strconv.Itoa(d.Resolution) + ";rings=" + JoinInts(d.Rings) + ";windows=" + JoinInts(d.Windows)
	if d.Aggregate != "" && d.Aggregate != DefaultAggregate {
		s += ";aggregate=" + d.Aggregate
	}
	return s
}

// JoinInts formats v as "a,b,c".
func JoinInts(v []int) string {
	var b strings.Builder
	for i, x := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(x))
	}
	return b.String()
}

// ParseInts parses "a,b,c" (spaces allowed) into ints.
func ParseInts(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	out := make([]int, 0, len(parts))
	for _, p := range parts {
		x, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", strings.TrimSpace(p))
		}
		out = append(out, x)
	}
	return out, nil
}

// Parse reads the form produced by String.
func Parse(s string) (Definition, error) {
	var d Definition
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ";") {
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			return d, fmt.Errorf("feature definition %q: part %q is not key=value", s, part)
		}
		var err error
		switch key {
		case "res":
			d.Resolution, err = strconv.Atoi(val)
		case "rings":
			d.Rings, err = ParseInts(val)
		case "windows":
			d.Windows, err = ParseInts(val)
		case "aggregate":
			d.Aggregate = val
		default:
			return d, fmt.Errorf("feature definition %q: unknown key %q", s, key)
		}
		if err != nil {
			return d, fmt.Errorf("feature definition %q: %s: %v", s, key, err)
		}
		seen[key] = true
	}
	for _, k := range []string{"res", "rings", "windows"} {
		if !seen[k] {
			return d, fmt.Errorf("feature definition %q: missing %s", s, k)
		}
	}
	return d, d.Validate()
}
