package gen

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestDeterministicAndRealistic(t *testing.T) {
	c := DefaultConfig()
	c.EventsPerMinute = 6000
	make := func() []byte {
		g, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		var b []byte
		for range 12000 {
			b = g.Append(b)
		}
		return b
	}
	a, b := make(), make()
	if !bytes.Equal(a, b) {
		t.Fatal("same config, different output")
	}
	lines := bytes.Split(bytes.TrimSpace(a), []byte("\n"))
	if n := len(a) / len(lines); n < 400 || n > 600 {
		t.Fatalf("%d bytes per event, want about 450-550", n)
	}
	type key struct {
		rider, product string
		minute         int64
	}
	seen := map[key]bool{}
	dups := 0
	var prev int64
	for _, l := range lines {
		var ev struct {
			TS      int64   `json:"ts"`
			Rider   string  `json:"rider_id"`
			Lat     float64 `json:"lat"`
			Lng     float64 `json:"lng"`
			Product string  `json:"product_type"`
		}
		if err := json.Unmarshal(l, &ev); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		k := key{ev.Rider, ev.Product, ev.TS / 60000}
		if seen[k] {
			dups++
		}
		seen[k] = true
		if ev.TS < prev-int64(2*c.JitterMs) {
			t.Fatalf("ts went back more than the jitter: %d after %d", ev.TS, prev)
		}
		prev = max(prev, ev.TS)
	}
	if share := float64(dups) / float64(len(lines)); share < 0.2 || share > 0.8 {
		t.Fatalf("duplicate share %.2f: dedup would not matter", share)
	}
}

func TestMalformedAndLate(t *testing.T) {
	c := DefaultConfig()
	c.MalformedFraction, c.LateFraction = 0.5, 0.2
	g, _ := New(c)
	bad := 0
	for range 1000 {
		if !json.Valid(bytes.TrimSpace(g.Append(nil))) {
			bad++
		}
	}
	if bad < 100 || bad > 400 {
		t.Fatalf("%d invalid JSON lines of 1000", bad)
	}
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("zero config accepted")
	}
}
