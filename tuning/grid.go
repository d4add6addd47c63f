package tuning

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// A Grid is the values one knob takes in a sweep, ascending and without
// repeats. It is written as a comma-separated list of items, each one of
//
//	N         the value N
//	A..B      A, A+1, ..., B
//	A..B+S    A, A+S, A+2S, ... up to B (S >= 1)
//	A..BxF    A, A*F, A*F^2, ... up to B (F >= 2)
//
// so "1,50,200", "4..64x2" (4,8,16,32,64) and "1..4,8..32+8"
// (1,2,3,4,8,16,24,32) are grids. A range stops at the last value not
// above B (4..50x2 is 4,8,16,32); B below A is an error. Values are sorted
// and repeats removed; a grid holds at most MaxGridValues values, each in
// the knob's range.
type Grid []int

// MaxGridValues bounds one grid: 64 values of one knob already make a
// sweep of an hour at a few seconds per point.
const MaxGridValues = 64

// Errors of ParseGrid; the returned error wraps one and names the flag
// and the item.
var (
	ErrGridEmpty    = errors.New("empty grid")
	ErrGridSyntax   = errors.New("not an integer, A..B, A..B+S or A..BxF")
	ErrGridRange    = errors.New("value out of range")
	ErrGridBackward = errors.New("range end below its start")
	ErrGridStep     = errors.New("bad step")
	ErrGridTooMany  = errors.New("too many values")
)

// ParseGrid reads s (the syntax on Grid) for the flag called name, whose
// values must lie in lo..hi.
func ParseGrid(name, s string, lo, hi int) (Grid, error) {
	whole := func(err error, format string, args ...any) error {
		return fmt.Errorf("-%s=%q: %w: %s", name, s, err, fmt.Sprintf(format, args...))
	}
	bad := func(item string, err error, format string, args ...any) error {
		return fmt.Errorf("-%s=%q: item %q: %w: %s", name, s, item, err, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(s) == "" {
		return nil, whole(ErrGridEmpty, "want e.g. 1,2,4 or 4..64x2")
	}
	var out Grid
	num := func(item, v string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, bad(item, ErrGridSyntax, "%q is not an integer", strings.TrimSpace(v))
		}
		if n < lo || n > hi {
			return 0, bad(item, ErrGridRange, "%d is not in %d..%d", n, lo, hi)
		}
		return n, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		a, rest, isRange := strings.Cut(item, "..")
		if !isRange {
			n, err := num(item, item)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
			continue
		}
		// The step follows B: "+S" adds, "xF" multiplies.
		b, step, mul := rest, 1, false
		if i := strings.IndexAny(rest, "+x"); i >= 0 {
			b, mul = rest[:i], rest[i] == 'x'
			n, err := strconv.Atoi(strings.TrimSpace(rest[i+1:]))
			if err != nil {
				return nil, bad(item, ErrGridSyntax, "step %q is not an integer", rest[i+1:])
			}
			step = n
		}
		from, err := num(item, a)
		if err != nil {
			return nil, err
		}
		to, err := num(item, b)
		if err != nil {
			return nil, err
		}
		if to < from {
			return nil, bad(item, ErrGridBackward, "%d..%d", from, to)
		}
		switch {
		case mul && step < 2:
			return nil, bad(item, ErrGridStep, "factor %d: want 2 or more", step)
		case !mul && step < 1:
			return nil, bad(item, ErrGridStep, "step %d: want 1 or more", step)
		}
		for v := from; v <= to; {
			out = append(out, v)
			if len(out) > 4*MaxGridValues {
				break // reported below, before sorting a huge list
			}
			if mul {
				if v > to/step {
					break
				}
				v *= step
			} else {
				if v > to-step {
					break
				}
				v += step
			}
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > MaxGridValues {
		return nil, whole(ErrGridTooMany, "%d or more values, at most %d", len(out), MaxGridValues)
	}
	return out, nil
}

// String writes g as a plain list ("1,50,200"), which ParseGrid reads back.
func (g Grid) String() string {
	var b strings.Builder
	for i, v := range g {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(v))
	}
	return b.String()
}

// gridFlag is a Grid as a flag.Value.
type gridFlag struct {
	g      *Grid
	name   string
	lo, hi int
}

func (f gridFlag) String() string {
	if f.g == nil {
		return ""
	}
	return f.g.String()
}

func (f gridFlag) Set(s string) error {
	g, err := ParseGrid(f.name, s, f.lo, f.hi)
	if err != nil {
		return err
	}
	*f.g = g
	return nil
}
