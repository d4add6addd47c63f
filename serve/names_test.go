package serve

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/demandpipe/demandpipe/client"
	"github.com/demandpipe/demandpipe/encode"
)

func TestParseProductNames(t *testing.T) {
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
		got, err := parseProductNames([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(got) != 2 || got[fixUUID(0)] != "uberX" || got[fixUUID(1)] != "Comfort" {
			t.Errorf("%s: %v", name, got)
		}
	}
	got, _ := parseProductNames([]byte(p0 + `,"Comfort, quiet"` + "\n"))
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
		_, err := parseProductNames([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to say %q", in, err, want)
		}
	}
}

// TestProductNamesFileErrorsStopNew: a bad names file stops the server at
// start, with the flag and the file in the message.
func TestProductNamesFileErrorsStopNew(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	cfg := DefaultConfig()
	cfg.ProductNames = writeFile(t, "names.csv", fixProducts[0]+",uberX\nbogus,Pool\n")
	_, err := New(cfg, f.st, nil)
	if err == nil || !strings.Contains(err.Error(), "serve.product-names="+cfg.ProductNames+": line 2: \"bogus\"") {
		t.Fatalf("error %v", err)
	}
	cfg.ProductNames = cfg.ProductNames + ".missing"
	if _, err := New(cfg, f.st, nil); err == nil || !strings.Contains(err.Error(), "serve.product-names=") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestProductsNames: with a names file /v1/products adds "names" (known
// products that have a name) and keeps "products" as it was; the Go
// client still reads the product list.
func TestProductsNames(t *testing.T) {
	cfg := DefaultConfig()
	other := "11111111-2222-4333-8444-555555555555" // named but unknown to the store: not listed
	cfg.ProductNames = writeFile(t, "names.json", `{"`+fixProducts[1]+`":"Comfort \"XL\"","`+other+`":"Pool"}`)
	f := newFixture(t, cfg)
	code, b := f.get(t, "/v1/products")
	want := `{"products":["` + fixProducts[0] + `","` + fixProducts[1] + `"],"names":{"` + fixProducts[1] + `":"Comfort \"XL\""}}` + "\n"
	if code != 200 || string(b) != want {
		t.Fatalf("products %d %s\nwant %s", code, b, want)
	}
	c, err := client.New(f.ts.URL, client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.Products(context.Background())
	if err != nil || len(list) != 2 || list[0] != fixProducts[0] || list[1] != fixProducts[1] {
		t.Fatalf("client.Products = %v, %v", list, err)
	}
}

// FuzzParseProductNames: the parser never panics, and whatever it accepts
// satisfies the rules it states.
func FuzzParseProductNames(f *testing.F) {
	f.Add([]byte(fixProducts[0] + ",uberX\n"))
	f.Add([]byte(`{"` + fixProducts[0] + `":"uberX"}`))
	f.Add([]byte(`[{"uuid":"` + fixProducts[0] + `","name":"uberX"}]`))
	f.Add([]byte("uuid,name\n" + fixProducts[0] + `,"a,b"` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		names, err := parseProductNames(b)
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
			if n == "" || len(n) > maxNameBytes || seen[n] || strings.TrimSpace(n) != n || strings.IndexFunc(n, unicode.IsControl) >= 0 {
				t.Fatalf("accepted name %q", n)
			}
			seen[n] = true
		}
	})
}
