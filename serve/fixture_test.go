package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/store"
)

// The fixture: a real store with two closed minutes of rows for two
// products over a disk of cells in Manhattan, written through both the
// store and the ndjson sink, so tests can compare the API with exactly
// what the "engine" emitted.

const fixMinute = 28_600_000 // 2024-05-18T02:40:00Z

var (
	fixProducts = []string{"6f1c0a5e-2d4b-4c1e-9a7f-0b1d2c3e4f50", "0e9d8c7b-6a5f-4e3d-2c1b-a09f8e7d6c5b"}
	fixNow      = encode.MinuteStart(fixMinute + 2).Add(12500 * time.Millisecond) // 12.5 s after minute +1 ended
)

type fixture struct {
	st     *store.Store
	srv    *Server
	ts     *httptest.Server
	center uint64
	cells  []uint64 // disk of radius 8 around center
	ndjson []byte   // the same rows as the ndjson sink wrote them
	rows   map[rowKey][]int32
}

type rowKey struct {
	minute  int64
	product int
	cell    uint64
}

func fixUUID(i int) encode.UUID {
	u, _ := encode.ParseUUID([]byte(fixProducts[i]))
	return u
}

// fixValue is the feature j of a cell: grows with the ring (index/6) and
// window like real sums do; zero for a cell with no row.
func fixValue(minute int64, p, dist, j int) int32 {
	k, w := j/6, j%6
	return int32((10-dist)*(k+1)*(w+1) + int(minute%7) + p*3)
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	sc := store.DefaultConfig()
	sc.Dir = t.TempDir()
	sc.Sync = false
	sc.MemTableBytes, sc.CacheBytes = 4<<20, 8<<20
	st, err := store.Open(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, rows: map[rowKey][]int32{}}
	center, _ := h3.LatLngToCell(h3.NewLatLng(40.7580, -73.9855), 8)
	f.center = uint64(center)
	rings, _ := h3.GridDiskDistances(center, 8)
	for _, ring := range rings {
		for _, c := range ring {
			f.cells = append(f.cells, uint64(c))
		}
	}
	var out bytes.Buffer
	nd := sink.NewNDJSON(&out, nil)
	names := encode.NewProducts()
	for m := int64(fixMinute); m < fixMinute+2; m++ {
		var b encode.Batch
		b.Names = names
		b.Reset(m, 54)
		for p := range fixProducts {
			code, _ := names.Code(fixUUID(p))
			for dist, ring := range rings {
				for _, c := range ring {
					if dist == 8 || (p == 1 && dist >= 6) {
						continue // the outer ring has no rows: zero demand
					}
					b.Cells = append(b.Cells, uint64(c))
					b.Products = append(b.Products, code)
					row := make([]int32, 54)
					for j := range row {
						row[j] = fixValue(m, p, dist, j)
					}
					b.Features = append(b.Features, row...)
					f.rows[rowKey{m, p, uint64(c)}] = row
				}
			}
		}
		for _, w := range []sink.Writer{st, nd} {
			if err := w.Write(context.Background(), &b); err != nil {
				t.Fatal(err)
			}
			if err := w.CloseMinute(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	nd.Close()
	f.ndjson = out.Bytes()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return fixNow }
	}
	f.srv, err = New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.ts = httptest.NewServer(f.srv)
	t.Cleanup(func() {
		f.ts.Close()
		st.Close()
	})
	return f
}

// apiRow is a row answer as a client decodes it.
type apiRow struct {
	H3          string  `json:"h3"`
	ProductType string  `json:"product_type"`
	Minute      string  `json:"minute"`
	AgeSeconds  float64 `json:"age_seconds"`
	Found       *bool   `json:"found"`
	Features    []struct {
		K     int      `json:"k"`
		W     int      `json:"w"`
		Value int64    `json:"value"`
		Avg   *float64 `json:"avg"`
	} `json:"features"`
}

func (f *fixture) get(t testing.TB, path string) (int, []byte) {
	t.Helper()
	res, err := http.Get(f.ts.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if ct := res.Header.Get("Content-Type"); res.StatusCode != 200 && !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET %s: status %d with Content-Type %q", path, res.StatusCode, ct)
	}
	return res.StatusCode, b
}

func (f *fixture) post(t testing.TB, path, body string) (int, []byte) {
	t.Helper()
	res, err := http.Post(f.ts.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("answer is not the expected JSON: %v\n%s", err, b)
	}
	return v
}

// checkRow compares an answer with the reference row of (minute, p, cell).
func (f *fixture) checkRow(t testing.TB, r apiRow, minute int64, p int, cell uint64) {
	t.Helper()
	want, found := f.rows[rowKey{minute, p, cell}]
	if r.H3 != string(encode.AppendCell(nil, cell)) || r.ProductType != fixProducts[p] ||
		r.Minute != string(encode.AppendMinute(nil, minute)) || r.Found == nil || *r.Found != found {
		t.Fatalf("row header %+v, want cell %x product %d minute %d found %v", r, cell, p, minute, found)
	}
	def := feature.Default()
	if len(r.Features) != 54 {
		t.Fatalf("%d features", len(r.Features))
	}
	for j, ft := range r.Features {
		var w int64
		if found {
			w = int64(want[j])
		}
		if ft.K != def.Rings[j/6] || ft.W != def.Windows[j%6] || ft.Value != w {
			t.Fatalf("feature %d = %+v, want k=%d w=%d value=%d", j, ft, def.Rings[j/6], def.Windows[j%6], w)
		}
	}
}
