package serve

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/demandpipe/demandpipe/feature"
)

type overviewAnswer struct {
	ProductType string  `json:"product_type"`
	Minute      string  `json:"minute"`
	AgeSeconds  float64 `json:"age_seconds"`
	Rows        int     `json:"rows"`
	Features    []struct {
		K, W, Cells, Max, Levels int
		Sum                      int64
	} `json:"features"`
	Suggested struct {
		K, W  int
		Scale string
	} `json:"suggested"`
}

// TestOverview compares /v1/overview with the fixture's rows counted by
// hand, for both products and both minutes.
func TestOverview(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	def := feature.Default()
	for p := range fixProducts {
		for m := int64(fixMinute); m < fixMinute+2; m++ {
			minute := "2024-05-18T02:4" + string(rune('0'+m-fixMinute)) + ":00Z"
			code, b := f.get(t, "/v1/overview?product="+fixProducts[p]+"&minute="+minute)
			if code != 200 {
				t.Fatalf("%d %s", code, b)
			}
			o := decode[overviewAnswer](t, b)
			if o.ProductType != fixProducts[p] || o.Minute != minute || len(o.Features) != 54 {
				t.Fatalf("header %+v", o)
			}
			rows := 0
			for key := range f.rows {
				if key.minute == m && key.product == p {
					rows++
				}
			}
			if o.Rows != rows {
				t.Errorf("rows %d, want %d", o.Rows, rows)
			}
			for j, ft := range o.Features {
				var cells, mx int
				var sum int64
				levels := map[int32]bool{}
				for key, row := range f.rows {
					if key.minute == m && key.product == p && row[j] != 0 {
						cells++
						sum += int64(row[j])
						mx = max(mx, int(row[j]))
						levels[row[j]] = true
					}
				}
				if ft.K != def.Rings[j/6] || ft.W != def.Windows[j%6] || ft.Cells != cells || ft.Max != mx || ft.Sum != sum || ft.Levels != min(len(levels), overviewMaxLevels) {
					t.Fatalf("feature %d = %+v, want cells %d max %d sum %d levels %d", j, ft, cells, mx, sum, len(levels))
				}
			}
			// Every view of the fixture has 8 levels (one per ring
			// distance), fewer than 16: the most levels, least smoothed.
			if o.Suggested.K != 0 || o.Suggested.W != 1 || o.Suggested.Scale != "linear" {
				t.Errorf("suggested %+v, want k=0 w=1 linear", o.Suggested)
			}
		}
	}
	for _, c := range []struct{ path, want string }{
		{"/v1/overview", "product: required"},
		{"/v1/overview?product=" + fixProducts[0] + "&k=2", `unknown parameter \"k\"`},
		{"/v1/overview?product=" + fixProducts[0] + "&minute=2024-05-18T03:00:00Z", "minute"},
	} {
		code, b := f.get(t, c.path)
		if code < 400 || !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %d %s, want an error saying %q", c.path, code, b, c.want)
		}
	}
}

// TestFeatureStatLevels pins the capped distinct count against a map.
func TestFeatureStatLevels(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		var st featureStat
		ref := map[int32]bool{}
		n, span := r.IntN(400), 1+r.IntN(200)
		for range n {
			v := int32(r.IntN(span))
			if r.IntN(10) == 0 {
				v = r.Int32()
			}
			st.add(v)
			if v != 0 {
				ref[v] = true
			}
		}
		if st.levels != min(len(ref), overviewMaxLevels) {
			t.Fatalf("levels %d, distinct %d", st.levels, len(ref))
		}
	}
}

// TestSuggestView pins the rule against a plain reference over random
// stats, and on the shapes it is meant for.
func TestSuggestView(t *testing.T) {
	def := feature.Default()
	foot := func(i int) int {
		k, w := def.Rings[i/6], def.Windows[i%6]
		return (3*k*(k+1) + 1) * w
	}
	reference := func(stats []featureStat) int {
		widest := 0
		for _, s := range stats {
			widest = max(widest, s.cells)
		}
		best := -1
		for i, s := range stats { // good views: the smallest footprint, first on ties
			if s.cells > 0 && s.levels >= suggestLevels && s.cells >= min(suggestCells, widest/4) && (best < 0 || foot(i) < foot(best)) {
				best = i
			}
		}
		if best >= 0 {
			return best
		}
		for i, s := range stats { // else the most levels, smallest footprint, first
			if s.cells > 0 && (best < 0 || s.levels > stats[best].levels || s.levels == stats[best].levels && foot(i) < foot(best)) {
				best = i
			}
		}
		return max(best, 0)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		stats := make([]featureStat, 54)
		for i := range stats {
			if r.IntN(4) > 0 {
				stats[i].cells = 1 + r.IntN(300)
				stats[i].levels = 1 + r.IntN(min(stats[i].cells, 30))
				stats[i].max = int32(stats[i].levels + r.IntN(50))
				stats[i].sum = int64(stats[i].cells) * int64(1+r.IntN(int(stats[i].max)))
			}
		}
		ki, wi, scale := suggestView(def.Rings, def.Windows, stats)
		want := reference(stats)
		if ki*6+wi != want {
			t.Fatalf("suggested %d, reference %d", ki*6+wi, want)
		}
		s := stats[want]
		if wantLog := s.cells > 0 && float64(s.max) >= 4*float64(s.sum)/float64(s.cells); (scale == "log") != wantLog {
			t.Fatalf("scale %s for %+v", scale, s)
		}
	}
	// No demand at all: the smallest view.
	if ki, wi, scale := suggestView(def.Rings, def.Windows, make([]featureStat, 54)); ki != 0 || wi != 0 || scale != "linear" {
		t.Errorf("empty: %d %d %s", ki, wi, scale)
	}
}
