package feature

import (
	"slices"
	"testing"
)

func TestDefaultIsTheContract(t *testing.T) {
	d := Default()
	if d.NumFeatures() != 54 || d.String() != "res=8;rings=0,1,2,3,4,5,10,15,20;windows=1,2,4,8,16,32" {
		t.Fatalf("%d %s", d.NumFeatures(), d)
	}
	if d.Index(0, 0) != 0 || d.Index(1, 0) != 6 || d.Index(8, 5) != 53 {
		t.Fatal("k-major order broken")
	}
}

func TestParseRoundTrip(t *testing.T) {
	d := Definition{Resolution: 3, Rings: []int{20, 0, 7}, Windows: []int{60, 1}}
	p, err := Parse(d.String())
	if err != nil || p.Resolution != 3 || !slices.Equal(p.Rings, d.Rings) || !slices.Equal(p.Windows, d.Windows) {
		t.Fatalf("%v %v", p, err)
	}
	d.Aggregate = "max"
	if p, err := Parse(d.String()); err != nil || p.Aggregate != "max" || p.String() != "res=3;rings=20,0,7;windows=60,1;aggregate=max" {
		t.Fatalf("%v %v", p, err)
	}
	if c := (Definition{Resolution: 3, Rings: []int{1}, Windows: []int{1}, Aggregate: DefaultAggregate}); c.String() != "res=3;rings=1;windows=1" {
		t.Errorf("count named in %s: a count definition's name must be what it was before aggregates", c)
	}
	if got := (Definition{Windows: []int{8, 1, 32, 4}}).WindowsByLength(); !slices.Equal(got, []int{1, 3, 0, 2}) {
		t.Errorf("WindowsByLength of 8,1,32,4: %v, want [1 3 0 2]", got)
	}
	for _, bad := range []string{"", "res=8", "res=8;rings=1;windows=1;aggregate=avg", "res=8;rings=1;windows=1;x=1", "res=99;rings=1;windows=1", "res=8;rings=a;windows=1", "res=8;rings=1,1;windows=1"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestAggregatesKeepTheirLaws checks, over a range of values, the laws every
// aggregate's Map and Fold must keep (Aggregate): the windows rely on them
// to skip zeros, to nest windows, and to let a target go when its row is
// zero.
func TestAggregatesKeepTheirLaws(t *testing.T) {
	vals := []int32{0, 1, 2, 3, 7, 100, 32767, 32768, 1 << 20}
	for _, a := range Aggregates() {
		f := a.Fold
		for _, x := range vals {
			for _, y := range vals {
				if v := a.Value(x); (v == 0) != (x == 0) || (x <= y && v > a.Value(y)) {
					t.Errorf("%s: Map(%d) = %d: must keep 0 at 0, be non-zero on non-zero and monotone", a.Name, x, v)
				}
			}
		}
		for _, x := range vals {
			if f(x, 0) != x || f(0, x) != x {
				t.Errorf("%s: 0 is not the identity at %d", a.Name, x)
			}
			for _, y := range vals {
				if f(x, y) != f(y, x) || (f(x, y) == 0) != (x == 0 && y == 0) || f(x, y) < max(x, y) {
					t.Errorf("%s: %d, %d: not commutative, monotone, or zero only on zeros", a.Name, x, y)
				}
				for _, z := range vals[:5] {
					if f(f(x, y), z) != f(x, f(y, z)) {
						t.Errorf("%s: %d, %d, %d: not associative", a.Name, x, y, z)
					}
				}
			}
		}
		if a.Doc == "" || a.Name == "" {
			t.Errorf("%+v: needs a name and a doc", a)
		}
	}
	if Aggregates()[0].Name != DefaultAggregate || !Aggregates()[0].Additive {
		t.Error("the default aggregate must come first and be the additive count")
	}
	for _, a := range Aggregates() {
		if a.Additive && (a.Map != nil || a.Fold(3, 4) != 7) {
			t.Errorf("%s: additive, so its Fold must be the sum and its Map the identity", a.Name)
		}
	}
}

// FuzzParse: whatever Parse accepts is valid and prints back to a string
// that parses to the same definition (stores and checkpoints keep the
// string; a definition name from disk must not change meaning).
func FuzzParse(f *testing.F) {
	for _, s := range []string{Default().String(), "res=3;rings=20,0,7;windows=60,1;aggregate=max", "res=8;rings=1;windows=1;aggregate=minutes", "res=8;rings=;windows=1", "res=8;;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("%q parsed to an invalid definition: %v", s, err)
		}
		p, err := Parse(d.String())
		if err != nil || p.String() != d.String() || p.Kind().Name != d.Kind().Name {
			t.Fatalf("%q -> %s -> %s (%v)", s, d, p, err)
		}
	})
}
