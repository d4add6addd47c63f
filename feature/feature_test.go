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
	for _, bad := range []string{"", "res=8", "res=8;rings=1;windows=1;x=1", "res=99;rings=1;windows=1", "res=8;rings=a;windows=1", "res=8;rings=1,1;windows=1"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
