package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/client"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/store"
)

// TestStoreServesWhatTheEngineEmitted runs the engine twice on one
// generated file, into the ndjson sink and into the store, then reads every
// ndjson row back through the HTTP API with the client package (batches of
// up to 1,000 cells): the values must be identical, every minute must have
// exactly as many rows, and cells without a row must read as explicit zeros.
func TestStoreServesWhatTheEngineEmitted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	events := filepath.Join(dir, "events.ndjson")
	rowsPath := filepath.Join(dir, "rows.ndjson")
	storeDir := filepath.Join(dir, "store")
	n := testsize.Pick("12000", "40000") // 1.5 minutes (long: 5)
	if err := genCommand([]string{"-o", events, "-events", n, "-rate", "8000", "-riders", "4000", "-products", "2", "-radius-km", "8"}); err != nil {
		t.Fatal(err)
	}
	// The default definition (k up to 20) in the long set; the short form
	// reads the same path with smaller disks (k=20 under -race was most of
	// its time).
	def := testsize.Pick(smallDef, nil)
	if err := runCommand(append([]string{"-source=file:" + events, "-sink=ndjson:" + rowsPath, "-progress=never"}, def...)); err != nil {
		t.Fatal(err)
	}
	if err := runCommand(append([]string{"-source=file:" + events, "-sink=store:" + storeDir, "-serve=", "-progress=never", "-store.retention=24h"}, def...)); err != nil {
		t.Fatal(err)
	}

	type row struct {
		H3       string  `json:"h3"`
		Product  string  `json:"product_type"`
		Minute   string  `json:"minute"`
		Features []int64 `json:"features"`
	}
	type group struct{ minute, product string }
	byGroup := map[group][]row{}
	f, err := os.Open(rowsPath)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	total := 0
	for sc.Scan() {
		var r row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		g := group{r.Minute, r.Product}
		byGroup[g] = append(byGroup[g], r)
		total++
	}
	f.Close()
	if total == 0 {
		t.Fatal("engine emitted no rows")
	}

	sc2 := store.DefaultConfig()
	sc2.Dir, sc2.ReadOnly = storeDir, true
	st, err := store.Open(sc2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := serve.New(serve.DefaultConfig(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c, err := client.New(hs.URL, client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	perMinute := map[string]int{}
	for g, rows := range byGroup {
		perMinute[g.minute] += len(rows)
		m, _ := time.Parse(time.RFC3339, g.minute)
		for start := 0; start < len(rows); start += 1000 {
			part := rows[start:min(start+1000, len(rows))]
			cells := make([]string, len(part))
			for i, r := range part {
				cells[i] = r.H3
			}
			got, err := c.Batch(ctx, client.Query{Product: g.product, Minute: m}, cells, nil)
			if err != nil {
				t.Fatalf("%v: %v", g, err)
			}
			for i, r := range part {
				if !got[i].Found || len(got[i].Features) != len(r.Features) {
					t.Fatalf("%v %s: found=%v, %d features", g, r.H3, got[i].Found, len(got[i].Features))
				}
				for j, ft := range got[i].Features {
					if ft.Value != r.Features[j] {
						t.Fatalf("%v %s feature %d (k=%d w=%d): store %d, engine %d", g, r.H3, j, ft.K, ft.W, ft.Value, r.Features[j])
					}
				}
			}
		}
	}
	mins, err := c.Minutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(mins) != len(perMinute) {
		t.Fatalf("store has %d minutes, engine emitted %d", len(mins), len(perMinute))
	}
	for _, mi := range mins {
		if want := perMinute[mi.Minute.UTC().Format(time.RFC3339)]; mi.Rows != want {
			t.Fatalf("minute %s: store %d rows, engine %d", mi.Minute, mi.Rows, want)
		}
	}
	// A cell far from the city has no row: an explicit all-zero answer.
	var any group
	for g := range byGroup {
		any = g
		break
	}
	m, _ := time.Parse(time.RFC3339, any.minute)
	zero, err := c.GetAt(ctx, client.LatLng{Lat: -33.86, Lng: 151.21}, client.Query{Product: any.product, Minute: m})
	if err != nil {
		t.Fatal(err)
	}
	if zero.Found {
		t.Fatal("a cell in Sydney has a row in a New York run")
	}
	for _, ft := range zero.Features {
		if ft.Value != 0 {
			t.Fatalf("missing row reads %v", zero.Features)
		}
	}
	t.Logf("%d rows in %d minutes compared", total, len(perMinute))
}
