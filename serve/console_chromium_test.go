package serve

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/store"
)

// The page on stores the engine wrote: a synthetic live city, and a replay
// of the real NYC pickups in ../shared/data. Both take screenshots (paths
// logged) and check the DOM.

// engineStore runs the engine over events into a fresh store.
func engineStore(t *testing.T, events []byte) *store.Store {
	t.Helper()
	sc := store.DefaultConfig()
	sc.Dir = t.TempDir()
	sc.Sync = false
	sc.Retention = 24 * time.Hour
	st, err := store.Open(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e, err := pipeline.New(pipeline.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background(), bytes.NewReader(events), st); err != nil {
		t.Fatal(err)
	}
	return st
}

func serveStore(t *testing.T, cfg Config, st *store.Store) string {
	t.Helper()
	srv, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts.URL
}

// TestPageOnSyntheticCity: the generator's city (16 moving hotspots, 4
// products), 8 minutes ending now, so the store is live: the page follows
// the latest minute and shows a varied picture.
func TestPageOnSyntheticCity(t *testing.T) {
	t.Parallel() // a store, a server and a browser profile of its own
	if norace.Run(t) {
		return
	}
	if testing.Short() {
		t.Skip("engine run skipped in -short")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("headless page test skipped: %s not found (apt-get install -y chromium)", chromiumPath)
	}
	gc := gen.DefaultConfig()
	gc.EventsPerMinute = testsize.Pick(4_000, 12_000)
	gc.Riders = 30_000
	gc.Start = time.Now().UTC().Truncate(time.Minute).Add(-9 * time.Minute)
	events, err := gen.Generate(gc, 8*gc.EventsPerMinute)
	if err != nil {
		t.Fatal(err)
	}
	st := engineStore(t, events)
	url := serveStore(t, DefaultConfig(), st)
	p := loadPage(t, url+"/")
	_, colours := p.checkMap(-1)
	if colours < 8 {
		t.Errorf("the default view has %d colours, want at least 8", colours)
	}
	if s := p.text("status"); !regexp.MustCompile(`^[0-9a-f-]{36} · \d{4}-\d\d-\d\d \d\d:\d\d UTC \(\d+ (s|min) ago\) · live · k=\d+ w=\d+ · \d+ cells$`).MatchString(s) {
		t.Errorf("status %q", s)
	}
	if u := p.url(); !regexp.MustCompile(`^\?product=[0-9a-f-]{36}&k=\d+&w=\d+&scale=(log|linear)&at=[-0-9.]+,[-0-9.]+,[0-9.]+$`).MatchString(u) {
		t.Errorf("URL %q: a live view has no minute", u)
	}
	screenshot(t, url+"/", "synthetic-city")
}

// nycBases names the dispatching bases of the NYC sample as
// FiveThirtyEight's release does.
var nycBases = [][2]string{{"B02512", "Unter"}, {"B02598", "Hinter"}, {"B02617", "Weiter"}, {"B02682", "Schmecken"}, {"B02764", "Danach-NY"}}

// TestPageOnNYCPickups replays two evening hours (long: six) of the real NYC pickups
// (2-10 a minute over the whole city): the page must open on the busiest
// minute (the store is a replay), on the busiest product, shown by its
// name, with a view that is not one flat colour: the "19 identical yellow
// hexagons" of the old default (k=2, w=4 of the last minute) must not
// come back.
func TestPageOnNYCPickups(t *testing.T) {
	t.Parallel() // a store, a server and a browser profile of its own
	if norace.Run(t) {
		return
	}
	if testing.Short() {
		t.Skip("engine run skipped in -short")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("headless page test skipped: %s not found (apt-get install -y chromium)", chromiumPath)
	}
	f, err := os.Open("../../shared/data/uber-nyc-pickups-2014-04-02-to-30.csv.gz")
	if err != nil {
		t.Skipf("NYC pickups not found: %v", err)
	}
	pickups, err := gen.ReadPickups(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2014, 4, 4, 16, 0, 0, 0, time.UTC).UnixMilli()
	to := from + testsize.Pick[int64](1, 6)*time.Hour.Milliseconds() // an evening: 1 hour (long: 6)
	var events []byte
	n := 0
	for i, pk := range pickups {
		if pk.TS >= from && pk.TS < to {
			events = gen.AppendPickupEvent(events, i, pk)
			n++
		}
	}
	t.Logf("%d pickups between %s and %s", n, time.UnixMilli(from).UTC(), time.UnixMilli(to).UTC())
	st := engineStore(t, events)

	var csv strings.Builder
	csv.WriteString("uuid,name\n")
	for _, b := range nycBases {
		fmt.Fprintf(&csv, "%s,%s\n", gen.BaseProduct(b[0]), b[1])
	}
	cfg := DefaultConfig()
	cfg.ProductNames = writeFile(t, "bases.csv", csv.String())
	cfg.ReadyMaxAge = 0
	url := serveStore(t, cfg, st)
	p := loadPage(t, url+"/")

	// The busiest minute by rows, and in it the product with the most rows.
	mins := st.Minutes(nil)
	busiest := mins[0]
	for _, m := range mins {
		if m.Rows > busiest.Rows || m.Rows == busiest.Rows && m.Minute > busiest.Minute {
			busiest = m
		}
	}
	minute := time.UnixMilli(busiest.Minute * 60000).UTC().Format(time.RFC3339)
	u := p.url()
	if !strings.Contains(u, "&minute="+minute+"&") {
		t.Errorf("URL %q: want the busiest minute %s", u, minute)
	}
	product := regexp.MustCompile(`product=([0-9a-f-]{36})`).FindStringSubmatch(u)[1]
	k, w, scale := overviewOf(t, url, product, minute)
	if !strings.Contains(u, fmt.Sprintf("&k=%d&w=%d&scale=%s&", k, w, scale)) {
		t.Errorf("URL %q: want the suggested k=%d w=%d scale=%s", u, k, w, scale)
	}
	name := ""
	for _, b := range nycBases {
		u := gen.BaseProduct(b[0])
		if u.String() == product {
			name = b[1]
		}
		if st.HasProduct(u) { // two bases dispatch in early April
			p.find(`<option value="` + u.String() + `" title="` + u.String() + `">` + b[1] + `</option>`)
		}
	}
	if s := p.text("status"); !strings.HasPrefix(s, name+" · 2014-04-04 ") || !strings.Contains(s, " y ago) · replay · ") {
		t.Errorf("status %q: want the product's name, the age in years and replay", s)
	}
	if s := p.text("latest"); !strings.HasPrefix(s, "latest minute 2014-04-04 ") || !strings.HasSuffix(s, " y ago · replay") {
		t.Errorf("latest minute %q: want its date, its age in years and replay", s)
	}
	values, colours := p.checkMap(-1)
	if len(values) < 50 || colours < 6 {
		t.Errorf("default view: %d cells in %d colours; want a picture (>= 50 cells, >= 6 colours)", len(values), colours)
	}
	t.Logf("NYC default view: %s k=%d w=%d %s scale, %d cells, %d colours, %s", name, k, w, scale, len(values), colours, p.text("legend-scale"))
	screenshot(t, url+"/", "nyc-pickups")
}
