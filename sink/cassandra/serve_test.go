package cassandra

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/read"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/store"
)

var _ serve.Reader = (*Store)(nil)

// tee writes every batch and close to each writer in turn.
type tee []sink.Writer

func (t tee) Write(ctx context.Context, b *encode.Batch) error {
	for _, w := range t {
		if err := w.Write(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

func (t tee) CloseMinute(ctx context.Context, m int64) error {
	for _, w := range t {
		if err := w.CloseMinute(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (t tee) Close() error { return nil }

// TestServeEqualsStore: serve's HTTP answers over the embedded store and
// over Cassandra (Store) are byte for byte the same, for the same engine
// output: before any minute, then after a generated city, for features
// (by cell and by point, every listed minute, absent cells, avg), batches,
// minutes, products, the definition, the map, the overview and errors.
func TestServeEqualsStore(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	cfg.Definition = resumeDef
	ctx := context.Background()
	cs := openSink(t, cfg)
	defer cs.Close()
	sc := store.DefaultConfig()
	sc.Dir, sc.Definition, sc.Sync, sc.MinFreeBytes = t.TempDir(), resumeDef, false, 0
	st, err := store.Open(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2024, 6, 1, 10, 40, 0, 0, time.UTC)
	vc := serve.DefaultConfig()
	vc.Now = func() time.Time { return now }
	servers := func() (a, b http.Handler) {
		cst, err := NewStore(ctx, cs.Session(), cfg, StoreOptions{Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		sa, err := serve.New(vc, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := serve.New(vc, cst, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sa, sb
	}
	compare := func(a, b http.Handler, method, target, body string) string {
		t.Helper()
		do := func(h http.Handler) (int, string) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, target, strings.NewReader(body)))
			b, _ := io.ReadAll(rec.Body)
			return rec.Code, string(b)
		}
		ca, ba := do(a)
		cb, bb := do(b)
		if ca != cb || ba != bb {
			t.Fatalf("%s %s %s:\nstore     %d %.600s\ncassandra %d %.600s", method, target, body, ca, ba, cb, bb)
		}
		return ba
	}
	const someProduct = "6f1c7d2a-0000-4000-8000-000000000001"
	a, b := servers()
	for _, target := range []string{"/v1/minutes", "/v1/products", "/v1/definition", "/readyz",
		"/v1/features?h3=882a100d65fffff&product=" + someProduct, "/v1/map?product=" + someProduct} {
		compare(a, b, http.MethodGet, target, "")
	}

	// A generated city through the engine into both.
	gc := gen.DefaultConfig()
	gc.EventsPerMinute, gc.Riders, gc.Hotspots = 800, 600, 3
	gc.Start = time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)
	in, err := gen.Generate(gc, 14*800)
	if err != nil {
		t.Fatal(err)
	}
	pc := pipeline.DefaultConfig()
	pc.Def, pc.Parallelism = resumeDef, 2
	e, err := pipeline.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	col := newCollector(nil)
	if err := e.Run(ctx, strings.NewReader(string(in)), tee{col, st, cs}); err != nil {
		t.Fatal(err)
	}
	a, b = servers()
	minutesJSON := compare(a, b, http.MethodGet, "/v1/minutes", "")
	products := st.Products()
	if len(products) < 2 || len(col.minutes) < 10 {
		t.Fatalf("%d products, %d minutes", len(products), len(col.minutes))
	}
	compare(a, b, http.MethodGet, "/v1/products", "")
	compare(a, b, http.MethodGet, "/v1/definition", "")
	compare(a, b, http.MethodGet, "/readyz", "")

	// Cells with rows, their neighbours (some without), and far away.
	var cells []uint64
	for c := range col.cells {
		cells = append(cells, c)
	}
	slices.Sort(cells)
	rng := rand.New(rand.NewPCG(4, 4))
	var probe []string
	for range 40 {
		c := h3.Cell(cells[rng.IntN(len(cells))])
		disk, err := h3.GridDisk(c, 1+rng.IntN(3))
		if err != nil {
			t.Fatal(err)
		}
		probe = append(probe, c.String(), disk[rng.IntN(len(disk))].String())
	}
	probe = append(probe, "882a100d65fffff", "8808866927fffff")
	found := 0
	for i, cell := range probe {
		m := col.minutes[rng.IntN(len(col.minutes))]
		p := products[rng.IntN(len(products))]
		q := fmt.Sprintf("/v1/features?h3=%s&product=%s&minute=%s", cell, p, encode.MinuteStart(m).Format(time.RFC3339))
		if i%3 == 0 {
			q = fmt.Sprintf("/v1/features?h3=%s&product=%s&avg=true", cell, p) // the latest minute
		}
		if strings.Contains(compare(a, b, http.MethodGet, q, ""), `"found":true`) {
			found++
		}
	}
	if found < 10 {
		t.Fatalf("only %d of %d probes found a row: the comparison checks little", found, len(probe))
	}
	ll := func(c uint64) (float64, float64) {
		l, _ := h3.Cell(c).LatLng()
		return l.Lat, l.Lng
	}
	lat, lng := ll(cells[len(cells)/2])
	compare(a, b, http.MethodGet, fmt.Sprintf("/v1/features?lat=%f&lng=%f&product=%s", lat, lng, products[0]), "")
	for _, p := range products {
		for _, m := range []int64{col.minutes[0], col.minutes[len(col.minutes)/2], col.minutes[len(col.minutes)-1]} {
			body := fmt.Sprintf(`{"product":"%s","minute":"%s","avg":true,"cells":["%s"],"points":[{"lat":%f,"lng":%f}]}`,
				p, encode.MinuteStart(m).Format(time.RFC3339), strings.Join(probe, `","`), lat, lng)
			compare(a, b, http.MethodPost, "/v1/features:batch", body)
			min := encode.MinuteStart(m).Format(time.RFC3339)
			compare(a, b, http.MethodGet, "/v1/map?product="+p.String()+"&k=2&w=4&minute="+min, "")
			compare(a, b, http.MethodGet, "/v1/overview?product="+p.String()+"&minute="+min, "")
		}
	}
	// Errors: an unknown product, a minute never closed.
	compare(a, b, http.MethodGet, "/v1/features?h3=882a100d65fffff&product="+someProduct, "")
	compare(a, b, http.MethodGet, fmt.Sprintf("/v1/features?h3=%s&product=%s&minute=2020-01-01T00:00:00Z", probe[0], products[0]), "")
	t.Logf("%d minutes, %d products, %d probes (%d found); /v1/minutes %.120s", len(col.minutes), len(products), len(probe), found, minutesJSON)
}

// TestStoreRefresh: the list of minutes is read again once it is older
// than Refresh, not before; a minute's products and rows come with it.
func TestStoreRefresh(t *testing.T) {
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	s := openSink(t, cfg)
	defer s.Close()
	ctx := context.Background()
	d := makeTestData(t, 5, 3, 300, 40)
	clock := time.Unix(1_700_000_000, 0)
	st, err := NewStore(ctx, s.Session(), cfg, StoreOptions{Refresh: time.Second, Now: func() time.Time { return clock }, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.LatestMinute(); ok {
		t.Fatal("a minute before any was written")
	}
	if _, err := st.Get(nil, d.minutes[0], d.products[0], d.cells[0]); !errors.Is(err, read.ErrNoMinute) {
		t.Fatalf("empty: %v", err)
	}
	if err := d.write(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.LatestMinute(); ok {
		t.Fatal("refreshed before Refresh elapsed")
	}
	clock = clock.Add(time.Second)
	if m, ok := st.LatestMinute(); !ok || m != d.minutes[len(d.minutes)-1] {
		t.Fatalf("latest %d %v, want %d", m, ok, d.minutes[len(d.minutes)-1])
	}
	mins := st.Minutes(nil)
	if len(mins) != len(d.minutes) {
		t.Fatalf("%d minutes listed, want %d", len(mins), len(d.minutes))
	}
	for i, mi := range mins {
		m := d.minutes[len(d.minutes)-1-i]
		n := 0
		for k := range d.want {
			if k.minute == m {
				n++
			}
		}
		if mi.Minute != m || mi.Rows != n || mi.ClosedMS <= 0 {
			t.Fatalf("minute %d: %+v, want %d rows", i, mi, n)
		}
	}
	if got := st.Products(); len(got) != len(d.products) || !st.HasProduct(d.products[1]) {
		t.Fatalf("products %v", got)
	}
	// Every row by Get, GetMany and Scan.
	for _, m := range d.minutes {
		for _, p := range d.products {
			rows, err := st.GetMany(nil, m, p, d.cells)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for i, r := range rows {
				w, ok := d.want[rowKey{m, p, d.cells[i]}]
				if r.Found != ok || (ok && !slices.Equal(r.Features, w)) || (!ok && len(r.Features) != testFeatures) {
					t.Fatalf("GetMany %d %s %x: %+v", m, p, d.cells[i], r)
				}
				if ok {
					n++
				}
			}
			var scanned []uint64
			if err := st.Scan(m, p, func(cell uint64, f []int32) bool {
				if !slices.Equal(f, d.want[rowKey{m, p, cell}]) {
					t.Fatalf("Scan %d %s %x: %v", m, p, cell, f)
				}
				scanned = append(scanned, cell)
				return true
			}); err != nil {
				t.Fatal(err)
			}
			if len(scanned) != n || !slices.IsSorted(scanned) {
				t.Fatalf("Scan %d %s: %d cells (sorted %v), want %d", m, p, len(scanned), slices.IsSorted(scanned), n)
			}
		}
	}
}
