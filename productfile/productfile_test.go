package productfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/demandpipe/demandpipe/encode"
)

var fixProducts = []string{"6f1c0a5e-2d4b-4c1e-9a7f-0b1d2c3e4f50", "0e9d8c7b-6a5f-4e3d-2c1b-a09f8e7d6c5b"}

func fixUUID(i int) encode.UUID {
	u, _ := encode.ParseUUID([]byte(fixProducts[i]))
	return u
}

func TestParse(t *testing.T) {
	p0, p1 := fixProducts[0], fixProducts[1]
	good := map[string]string{
		"csv":         p0 + ",uberX\n" + p1 + ",Comfort\n",
		"csv header":  "uuid,name\r\n" + p0 + ",uberX\r\n" + p1 + ",Comfort",
		"csv quoted":  "product_type,name\n# a comment\n" + p0 + ",uberX\n\n" + strings.ToUpper(p1) + `, "Comfort"` + "\n",
		"json object": ` {"` + p0 + `":"uberX","` + p1 + `":"Comfort"}` + "\n",
		"json array":  `[{"uuid":"` + p0 + `","name":"uberX"},{"name":"Comfort","uuid":"` + p1 + `"}]`,
		"bom":         "\xef\xbb\xbf" + p0 + ",uberX\n" + p1 + ",Comfort\n",
	}
	for name, in := range good {
		got, err := Parse([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(got) != 2 || got[fixUUID(0)] != "uberX" || got[fixUUID(1)] != "Comfort" {
			t.Errorf("%s: %v", name, got)
		}
	}
	got, _ := Parse([]byte(p0 + `,"Comfort, quiet"` + "\n"))
	if got[fixUUID(0)] != "Comfort, quiet" {
		t.Errorf("quoted comma: %v", got)
	}

	bad := map[string]string{
		"":                                "empty",
		" \n":                             "empty",
		"uuid,name\n":                     "no product named",
		p0 + ",uberX\nnot-a-uuid,Pool\n":  `line 2: "not-a-uuid": not a product type UUID`,
		p0 + ",uberX\n" + p0 + ",Pool\n":  "line 2: product " + p0 + ` named twice ("uberX" and "Pool")`,
		p0 + ",uberX\n" + p1 + ",uberX\n": `line 2: name "uberX" is also the name of ` + p0,
		p0 + ",\n":                        "line 1: " + p0 + " has an empty name",
		p0 + ",uberX,extra\n":             "line 1: 3 fields, want 2",
		p0 + "\n":                         "line 1: 1 fields, want 2",
		p0 + ",\"uber\tX\"\n":             "line 1: name \"uber\\tX\" holds a control character",
		p0 + ",\"uberX \"\n":              "starts or ends with a space",
		p0 + "," + strings.Repeat("x", 65) + "\n":  "is 65 bytes, at most 64",
		p0 + ",\"uberX\n":                          "line 1: extraneous or missing \" in quoted-field",
		"\xff\xfe":                                 "not UTF-8",
		`{"` + p0 + `":"uberX",}`:                  "JSON at byte",
		`{"` + p0 + `":3}`:                         "JSON entry 1",
		`{"` + p0 + `":"a","` + p0 + `":"b"}`:      "JSON entry 2: product " + p0 + " named twice",
		`[{"uuid":"` + p0 + `"}]`:                  `JSON entry 1: want both "uuid" and "name"`,
		`[{"uuid":"` + p0 + `","name":"a","x":1}]`: `unknown field "x"`,
		`{"` + p0 + `":"a"} {}`:                    "text after the end",
	}
	for in, want := range bad {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to say %q", in, err, want)
		}
	}
}

// TestLoad: a file is read whole and parsed; errors name the path.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "products.csv")
	if err := os.WriteFile(f, []byte(fixProducts[0]+",uberX\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := Load(f); err != nil || n[fixUUID(0)] != "uberX" {
		t.Fatalf("%v %v", n, err)
	}
	if _, err := Load(f + ".missing"); err == nil || !strings.HasPrefix(err.Error(), f+".missing: ") {
		t.Fatalf("missing file: %v", err)
	}
	if err := os.WriteFile(f, []byte(strings.Repeat("#", MaxFileBytes+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(f); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("large file: %v", err)
	}
}

// FuzzParse: the parser never panics, and whatever it accepts
// satisfies the rules it states.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fixProducts[0] + ",uberX\n"))
	f.Add([]byte(`{"` + fixProducts[0] + `":"uberX"}`))
	f.Add([]byte(`[{"uuid":"` + fixProducts[0] + `","name":"uberX"}]`))
	f.Add([]byte("uuid,name\n" + fixProducts[0] + `,"a,b"` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		names, err := Parse(b)
		if err != nil {
			return
		}
		if len(names) == 0 {
			t.Fatal("accepted a file that names nothing")
		}
		seen := map[string]bool{}
		for u, n := range names {
			if u == (encode.UUID{}) && !strings.Contains(strings.ToLower(string(b)), "00000000-0000-0000-0000-000000000000") {
				t.Fatalf("zero UUID from %q", b)
			}
			if n == "" || len(n) > MaxNameBytes || seen[n] || strings.TrimSpace(n) != n || strings.IndexFunc(n, unicode.IsControl) >= 0 {
				t.Fatalf("accepted name %q", n)
			}
			seen[n] = true
		}
	})
}
