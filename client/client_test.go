package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"
	"go.uber.org/goleak"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	minute0 = 28_600_000
	product = "6f1c0a5e-2d4b-4c1e-9a7f-0b1d2c3e4f50"
)

// server runs the real serve handler over a store holding one closed
// minute: every cell of a radius-3 disk in Manhattan has a row whose
// feature j is dist*100+j, except the outer ring, which has none.
func server(t *testing.T, wrap func(http.Handler) http.Handler) (*httptest.Server, []h3.Cell) {
	sc := store.DefaultConfig()
	sc.Dir, sc.Sync = t.TempDir(), false
	st, err := store.Open(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	center, _ := h3.LatLngToCell(h3.NewLatLng(40.7580, -73.9855), 8)
	rings, _ := h3.GridDiskDistances(center, 3)
	names := encode.NewProducts()
	u, _ := encode.ParseUUID([]byte(product))
	code, _ := names.Code(u)
	var b encode.Batch
	b.Names = names
	b.Reset(minute0, 54)
	var cells []h3.Cell
	for d, ring := range rings {
		for _, c := range ring {
			cells = append(cells, c)
			if d == 3 {
				continue
			}
			b.Cells, b.Products = append(b.Cells, uint64(c)), append(b.Products, code)
			for j := range 54 {
				b.Features = append(b.Features, int32(d*100+j))
			}
		}
	}
	if err := st.Write(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseMinute(context.Background(), minute0); err != nil {
		t.Fatal(err)
	}
	cfg := serve.DefaultConfig()
	cfg.Now = func() time.Time { return encode.MinuteStart(minute0 + 1).Add(3 * time.Second) }
	srv, err := serve.New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = srv
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(func() { ts.Close(); st.Close() })
	return ts, cells
}

func TestGetAndGetAt(t *testing.T) {
	ts, cells := server(t, nil)
	c, err := New(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.hc.CloseIdleConnections()
	ctx := context.Background()
	row, err := c.Get(ctx, cells[0].String(), Query{Product: product})
	if err != nil {
		t.Fatal(err)
	}
	if row.Cell != cells[0].String() || row.Product != product || !row.Found || row.Age() != 3*time.Second ||
		!row.Minute.Equal(encode.MinuteStart(minute0)) || len(row.Features) != 54 {
		t.Fatalf("row %+v", row)
	}
	if v, ok := row.Value(20, 32); !ok || v != 53 {
		t.Fatalf("Value(20,32) = %d %v", v, ok)
	}
	if _, ok := row.Value(7, 7); ok {
		t.Fatal("Value of a feature outside the definition")
	}
	ll, _ := cells[1].LatLng()
	row, err = c.GetAt(ctx, LatLng{ll.Lat, ll.Lng}, Query{Product: product, Minute: encode.MinuteStart(minute0), Avg: true})
	if err != nil {
		t.Fatal(err)
	}
	if row.Cell != cells[1].String() || row.Features[6].Value != 106 || row.Features[6].Avg != 106.0/7 {
		t.Fatalf("GetAt row %s feature %+v", row.Cell, row.Features[6])
	}
	// The outer ring: no row, all zeros, said explicitly.
	row, err = c.Get(ctx, cells[len(cells)-1].String(), Query{Product: product})
	if err != nil || row.Found || row.Features[53].Value != 0 {
		t.Fatalf("outer cell: %+v %v", row, err)
	}
}

func TestBatch(t *testing.T) {
	ts, cells := server(t, nil)
	c, _ := New(ts.URL + "/")
	defer c.hc.CloseIdleConnections()
	var hex []string
	for _, cell := range cells {
		hex = append(hex, cell.String())
	}
	ll, _ := cells[0].LatLng()
	rows, err := c.Batch(context.Background(), Query{Product: product}, hex, []LatLng{{ll.Lat, ll.Lng}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(cells)+1 {
		t.Fatalf("%d rows", len(rows))
	}
	for i, r := range rows[:len(cells)] {
		if r.Cell != hex[i] || r.Found != (i < 19) {
			t.Fatalf("row %d: %s found=%v", i, r.Cell, r.Found)
		}
	}
	if rows[len(cells)].Cell != hex[0] {
		t.Fatalf("point row %s", rows[len(cells)].Cell)
	}
	if _, err := c.Batch(context.Background(), Query{Product: product}, make([]string, MaxBatch+1), nil); err == nil {
		t.Fatal("a batch over the limit succeeded")
	}
}

func TestMinutesProductsReady(t *testing.T) {
	ts, _ := server(t, nil)
	c, _ := New(ts.URL)
	defer c.hc.CloseIdleConnections()
	ctx := context.Background()
	mins, err := c.Minutes(ctx)
	if err != nil || len(mins) != 1 || !mins[0].Minute.Equal(encode.MinuteStart(minute0)) || mins[0].Rows != 19 {
		t.Fatalf("Minutes = %+v, %v", mins, err)
	}
	ps, err := c.Products(ctx)
	if err != nil || len(ps) != 1 || ps[0] != product {
		t.Fatalf("Products = %v, %v", ps, err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	ts, cells := server(t, nil)
	c, _ := New(ts.URL)
	defer c.hc.CloseIdleConnections()
	ctx := context.Background()
	_, err := c.Get(ctx, "nothex", Query{Product: product})
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || e.Message == "" {
		t.Fatalf("bad cell: %v", err)
	}
	_, err = c.Get(ctx, cells[0].String(), Query{Product: product, Minute: encode.MinuteStart(minute0 + 5)})
	if !errors.As(err, &e) || e.Status != 404 {
		t.Fatalf("open minute: %v", err)
	}
	if IsNotReady(err) {
		t.Fatal("404 taken for not ready")
	}
	if _, err := New("127.0.0.1:8080"); err == nil {
		t.Fatal("a base URL without scheme was accepted")
	}
}

// TestTimeout: a server that never answers costs the caller its deadline,
// not more.
func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	ts, cells := server(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
	})
	defer close(release)
	c, _ := New(ts.URL, WithTimeout(50*time.Millisecond))
	defer c.hc.CloseIdleConnections()
	start := time.Now()
	_, err := c.Get(context.Background(), cells[0].String(), Query{Product: product})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %v", el)
	}
	// A caller's earlier deadline wins.
	c2, _ := New(ts.URL, WithTimeout(time.Hour))
	defer c2.hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := c2.Batch(ctx, Query{Product: product}, []string{cells[0].String()}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("batch err = %v", err)
	}
}

func ExampleClient_Get() {
	c, err := New("http://127.0.0.1:8080", WithTimeout(200*time.Millisecond))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	row, err := c.Get(ctx, "882a100d65fffff", Query{Product: "6f1c0a5e-2d4b-4c1e-9a7f-0b1d2c3e4f50"})
	if err != nil {
		fmt.Println("fall back to base price:", err)
		return
	}
	demand, _ := row.Value(5, 8) // ride requests within 5 rings over the last 8 minutes
	fmt.Println(row.Minute, demand)
}
