package serve

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/client"
)

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
