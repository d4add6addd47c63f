package feature

import (
	"strings"
	"testing"
)

// TestParseDefinitions: the documented file parses to the documented
// definitions, in order; each mistake is refused with a message naming it.
func TestParseDefinitions(t *testing.T) {
	good := `
- name: default
  resolution: 8
  rings: [0, 1, 2, 3, 4, 5, 10, 15, 20]
  windows: [1, 2, 4, 8, 16, 32]
- name: fine
  resolution: 9
  rings: [0, 2, 7]
  windows: [3, 5, 1]
- name: peak
  resolution: 8
  rings: [0, 2]
  windows: [4, 16]
  aggregate: max
`
	defs, err := ParseDefinitions(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(defs) != 3 || defs[2].String() != "peak: res=8;rings=0,2;windows=4,16;aggregate=max" || defs[0].Name != "default" || defs[0].String() != "default: "+Default().String() ||
		defs[1].Name != "fine" || defs[1].Resolution != 9 || defs[1].Windows[0] != 3 || defs[1].Index(2, 1) != 7 {
		t.Fatalf("parsed %v", defs)
	}
	for in, want := range map[string]string{
		"":        "empty",
		"name: x": "want a YAML list",
		"- name: a\n  resolution: 8\n  rings: [0]\n  window: [1]\n":                                                            "field window not found",
		"- name: a\n  resolution: 8\n  rings: [0]\n":                                                                           "a has no windows",
		"- resolution: 8\n  rings: [0]\n  windows: [1]\n":                                                                      "entry 1 has no name",
		"- name: A\n  resolution: 8\n  rings: [0]\n  windows: [1]\n":                                                           `name "A"`,
		"- name: a\n  resolution: 8\n  rings: [0]\n  windows: [1]\n  aggregate: sum\n":                                         `definition a: windows.aggregate="sum": unknown; one of count, max`,
		"- name: a\n  resolution: 16\n  rings: [0]\n  windows: [1]\n":                                                          "definition a: h3.resolution=16",
		"- name: a\n  resolution: 8\n  rings: [0]\n  windows: [1]\n- name: a\n  resolution: 9\n  rings: [0]\n  windows: [1]\n": `name "a" given twice`,
	} {
		if _, err := ParseDefinitions(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", in, err, want)
		}
	}
}

// FuzzParseDefinitions: a definitions file never panics the parser, and
// what it accepts is a valid set whose definitions print and parse back.
func FuzzParseDefinitions(f *testing.F) {
	f.Add("- name: a\n  resolution: 8\n  rings: [0, 1]\n  windows: [1, 4]\n  aggregate: max\n")
	f.Add("- name: default\n  resolution: 8\n  rings: [0, 1, 2, 3, 4, 5, 10, 15, 20]\n  windows: [1, 2, 4, 8, 16, 32]\n- name: b\n  resolution: 9\n  rings: [2]\n  windows: [3]\n")
	f.Add("- {name: x, resolution: 0, rings: [30], windows: [60], aggregate: minutes}\n")
	f.Fuzz(func(t *testing.T, s string) {
		defs, err := ParseDefinitions(strings.NewReader(s))
		if err != nil {
			return
		}
		if err := ValidateSet(defs); err != nil {
			t.Fatalf("accepted an invalid set: %v", err)
		}
		for _, d := range defs {
			if p, err := Parse(d.Definition.String()); err != nil || p.String() != d.Definition.String() {
				t.Fatalf("%s does not parse back: %v", d, err)
			}
		}
	})
}
