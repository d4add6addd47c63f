package main

import "testing"

func TestPartitionsFlag(t *testing.T) {
	p := partitionsFlag{}
	if err := p.Set("orders=3"); err != nil || p["orders"] != 3 {
		t.Fatalf("orders=3: %v %v", p, err)
	}
	for _, bad := range []string{"orders", "orders=x"} {
		if err := p.Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
