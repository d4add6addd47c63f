package tuning

import (
	"math"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/sink"
)

func TestSteady(t *testing.T) {
	for _, c := range []struct {
		name  string
		rates []float64
		n     int
		tol   float64
		want  bool
		mean  float64
	}{
		{"flat", []float64{100, 100, 100}, 3, 0.1, true, 100},
		{"only the last n count", []float64{5, 1000, 100, 105, 95}, 3, 0.1, true, 100},
		{"ramp", []float64{60, 80, 100, 120}, 3, 0.1, false, 100},
		{"ramp, looser", []float64{90, 100, 110}, 3, 0.1, true, 100},
		{"just outside", []float64{89, 100, 111}, 3, 0.1, false, 100},
		{"too few windows", []float64{100, 100}, 3, 0.1, false, 0},
		{"stalled", []float64{0, 0, 0}, 3, 0.1, false, 0},
		{"one window is never steady", []float64{100}, 1, 0.1, false, 0},
		{"bursty minute closes", []float64{150, 50, 150, 50}, 4, 0.1, false, 100},
		{"bursts averaged by longer windows", []float64{100, 98, 103, 101}, 4, 0.05, true, 100.5},
	} {
		ok, mean := Steady(c.rates, c.n, c.tol)
		if ok != c.want || math.Abs(mean-c.mean) > 1e-9 {
			t.Errorf("%s: Steady(%v, %d, %g) = %v, %g; want %v, %g", c.name, c.rates, c.n, c.tol, ok, mean, c.want, c.mean)
		}
	}
}

// A slowly converging series becomes steady once its last windows settle,
// and never while it still climbs by more than the tolerance.
func TestSteadyOnConvergingSeries(t *testing.T) {
	var rates []float64
	first := -1
	for i := range 40 {
		rates = append(rates, 1000*(1-math.Exp(-float64(i)/4)))
		if ok, _ := Steady(rates, 3, 0.05); ok && first < 0 {
			first = i
		}
	}
	// Three windows within ±5%: once a window's growth is under ~5%, i.e.
	// e^(-i/4)/4 < 0.05 at i ~ 7.
	if first < 6 || first > 12 {
		t.Fatalf("steady first at window %d, want about 8", first)
	}
}

func TestQuantileBound(t *testing.T) {
	bounds := []float64{0.001, 0.002, 0.004, 0.008}
	h := func(counts ...uint64) sink.Histogram {
		var n uint64
		for _, c := range counts {
			n += c
		}
		return sink.Histogram{Bounds: bounds, Counts: counts, Count: n}
	}
	for _, c := range []struct {
		h    sink.Histogram
		want time.Duration
	}{
		{h(0, 0, 0, 0, 0), 0},
		{h(0, 100, 0, 0, 0), 2 * time.Millisecond},
		{h(0, 99, 1, 0, 0), 2 * time.Millisecond},        // the 99th of 100 is in (1, 2] ms
		{h(0, 98, 2, 0, 0), 4 * time.Millisecond},        // ... now in (2, 4] ms
		{h(0, 0, 0, 0, 5), time.Duration(math.MaxInt64)}, // past the last bucket
	} {
		if got := quantileBound(c.h, 0.99); got != c.want {
			t.Errorf("quantileBound(%v) = %v, want %v", c.h.Counts, got, c.want)
		}
	}
	a := sink.Histogram{Bounds: bounds, Counts: []uint64{1, 2, 3, 4, 5}, Count: 15, Sum: 1}
	b := sink.Histogram{Bounds: bounds, Counts: []uint64{1, 12, 3, 4, 5}, Count: 25, Sum: 1.5}
	d := histDelta(a, b)
	if d.Count != 10 || d.Sum != 0.5 || d.Counts[1] != 10 || d.Counts[0] != 0 || quantileBound(d, 0.99) != 2*time.Millisecond {
		t.Fatalf("histDelta = %+v", d)
	}
}
