package feature

import (
	"fmt"
	"strings"
)

// Aggregate is how a definition folds a target's minutes into a window:
// the temporal half of what a feature means. The spatial half is the same
// for every aggregate: D[k](t, i), the counted events (one per rider,
// product and minute) whose cell is within k rings of target t in minute
// i, summed over the disk. Then
//
//	F[k][w](t, m) = Fold over i in (m-w, m] of Map(D[k](t, i)), starting from 0
//
// with D = 0 in a minute without events near t (Map is the identity
// unless an aggregate gives one). Rows, their order, the
// count records a restart rebuilds windows from, and the counted events
// between the scale-out roles are the same whatever the aggregate: only
// the windows (package windows) apply Fold.
//
// A new aggregate over the counted events is an entry in aggregates, its
// meaning in docs/CONTRACT.md and, when the generic slide (every window
// folded again each minute) is too slow for it, a fast slide in
// windows/kinds.go. The property tests of windows and pipeline run every
// entry against Fold on its own.
type Aggregate struct {
	// Name selects it: -windows.aggregate, `aggregate:` in a definitions
	// file, ";aggregate=" in a definition's String.
	Name string
	// Doc says what a feature is under it, for help and the docs.
	Doc string
	// Fold combines the value so far with a minute's value. It must hold
	// Fold(x, 0) = x for x >= 0 (a minute without events changes nothing),
	// be monotone in both arguments and be zero only when both are: a row
	// is then all zero exactly when no minute of its longest window had
	// an event near it, which is when the windows let a target go. It is
	// the definition the fast slides are tested against, not the hot path.
	Fold func(acc, v int32) int32
	// Map, if set, turns a minute's value into what Fold takes; it must
	// keep 0 at 0, be monotone and be non-zero on non-zero values.
	Map func(v int32) int32
	// Additive: the rows of two disjoint sets of sources add up to the rows
	// of their union. Then the close merges isolated sources (kept per
	// source: kring.Config.SparseBelow) into the panes' rows by adding their
	// window sums; otherwise by adding their values minute by minute and
	// folding those (|K| x max(W) values per target they reach). Rows that
	// add over sources add over minutes too (a source per minute), so an
	// additive aggregate's Fold is the sum and its Map the identity, which
	// the history Gatherer's cheaper order relies on.
	Additive bool
}

// The aggregates, the contract's first. DefaultAggregate is used when a
// Definition names none.
var aggregates = []Aggregate{
	{
		Name:     "count",
		Doc:      "the counted events within k rings over the last w minutes (the contract's features)",
		Fold:     func(acc, v int32) int32 { return acc + v },
		Additive: true,
	},
	{
		Name: "max",
		Doc:  "the busiest single minute among the last w minutes: the most counted events within k rings in one minute",
		Fold: func(acc, v int32) int32 { return max(acc, v) },
	},
	{
		Name: "minutes",
		Doc:  "how many of the last w minutes had a counted event within k rings (demand that persists, not one burst)",
		Map: func(v int32) int32 {
			if v > 0 {
				return 1
			}
			return 0
		},
		Fold: func(acc, v int32) int32 { return acc + v },
	},
}

// Value is Map(v), or v without a Map.
func (a Aggregate) Value(v int32) int32 {
	if a.Map == nil {
		return v
	}
	return a.Map(v)
}

// DefaultAggregate is the contract's aggregate.
const DefaultAggregate = "count"

// Aggregates lists every aggregate, the default first.
func Aggregates() []Aggregate { return aggregates }

// AggregateNames is "count, max": the names, for help and errors.
func AggregateNames() string {
	names := make([]string, len(aggregates))
	for i, a := range aggregates {
		names[i] = a.Name
	}
	return strings.Join(names, ", ")
}

// LookupAggregate finds an aggregate by name ("" is the default).
func LookupAggregate(name string) (Aggregate, error) {
	if name == "" {
		name = DefaultAggregate
	}
	for _, a := range aggregates {
		if a.Name == name {
			return a, nil
		}
	}
	return Aggregate{}, fmt.Errorf("windows.aggregate=%q: unknown; one of %s", name, AggregateNames())
}

// Kind is the definition's aggregate; the definition must be valid.
func (d Definition) Kind() Aggregate {
	a, err := LookupAggregate(d.Aggregate)
	if err != nil {
		panic(err) // Validate refuses it
	}
	return a
}
