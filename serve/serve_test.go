package serve

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"
	"go.uber.org/goleak"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(norace.M(m)) }

// TestMatchesNDJSON: every row the ndjson sink wrote reads back from the
// API exactly (features by k and w, in the definition's order).
func TestMatchesNDJSON(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	sc := bufio.NewScanner(bytes.NewReader(f.ndjson))
	n := 0
	for sc.Scan() {
		var line struct {
			H3          string  `json:"h3"`
			ProductType string  `json:"product_type"`
			Minute      string  `json:"minute"`
			Features    []int64 `json:"features"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		code, b := f.get(t, "/v1/features?h3="+line.H3+"&product="+line.ProductType+"&minute="+line.Minute)
		if code != 200 {
			t.Fatalf("%d %s", code, b)
		}
		r := decode[apiRow](t, b)
		if r.H3 != line.H3 || r.ProductType != line.ProductType || r.Minute != line.Minute || !*r.Found {
			t.Fatalf("API row %+v for ndjson %s", r, sc.Bytes())
		}
		for j, ft := range r.Features {
			if ft.Value != line.Features[j] {
				t.Fatalf("feature %d (k=%d w=%d): API %d, ndjson %d", j, ft.K, ft.W, ft.Value, line.Features[j])
			}
		}
		n++
	}
	if n != len(f.rows) {
		t.Fatalf("compared %d ndjson rows, the fixture wrote %d", n, len(f.rows))
	}
}

func TestFeaturesByCellAndPoint(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	cell := f.cells[3]
	code, b := f.get(t, fmt.Sprintf("/v1/features?h3=%x&product=%s", cell, fixProducts[1]))
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	r := decode[apiRow](t, b)
	f.checkRow(t, r, fixMinute+1, 1, cell) // latest minute by default
	if r.AgeSeconds != 12.5 {
		t.Errorf("age_seconds = %v, want 12.5", r.AgeSeconds)
	}
	if !bytes.Contains(b, []byte(`"features":[{"k":0,"w":1,"value":`)) {
		t.Errorf("features not named by k and w: %.200s", b)
	}
	ll, _ := h3.Cell(cell).LatLng()
	code, b = f.get(t, fmt.Sprintf("/v1/features?lat=%v&lng=%v&product=%s&minute=%s", ll.Lat, ll.Lng, fixProducts[0], encode.AppendMinute(nil, fixMinute)))
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	f.checkRow(t, decode[apiRow](t, b), fixMinute, 0, cell)
}

func TestZeroRowIsExplicit(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	outer := f.cells[len(f.cells)-1] // ring 8: no rows
	code, b := f.get(t, fmt.Sprintf("/v1/features?h3=%x&product=%s", outer, fixProducts[0]))
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	r := decode[apiRow](t, b)
	if r.Found == nil || *r.Found {
		t.Fatalf("found = %v for a cell without a row", r.Found)
	}
	f.checkRow(t, r, fixMinute+1, 0, outer)
}

func TestAvg(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	code, b := f.get(t, fmt.Sprintf("/v1/features?h3=%x&product=%s&avg=true", f.center, fixProducts[0]))
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	for _, ft := range decode[apiRow](t, b).Features {
		want := float64(ft.Value) / float64(3*ft.K*(ft.K+1)+1)
		if ft.Avg == nil || math.Abs(*ft.Avg-want) > want*1e-5 {
			t.Fatalf("k=%d w=%d value %d: avg %v, want %v", ft.K, ft.W, ft.Value, ft.Avg, want)
		}
	}
	_, b = f.get(t, fmt.Sprintf("/v1/features?h3=%x&product=%s", f.center, fixProducts[0]))
	if bytes.Contains(b, []byte(`"avg"`)) {
		t.Fatal("avg present without avg=true")
	}
}

// TestAvgNearPentagon: disks that reach a pentagon hold fewer cells, and
// avg divides by the real count.
func TestAvgNearPentagon(t *testing.T) {
	g, err := newGeo(feature.Default(), 0)
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := h3.Pentagons(8)
	sizes := g.diskSizes(nil, uint64(ps[0]))
	disk, _ := h3.GridDisk(ps[0], 20)
	if sizes[len(sizes)-1] != len(disk) || sizes[0] != 1 || sizes[1] != 6 || len(disk) >= 3*20*21+1 {
		t.Fatalf("pentagon disk sizes %v, GridDisk(20) holds %d", sizes, len(disk))
	}
	far := g.diskSizes(nil, 0x882a100d65fffff)
	if far[len(far)-1] != 3*20*21+1 {
		t.Fatalf("Manhattan disk sizes %v", far)
	}
}

func TestBatch(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	cells := f.cells[:200]
	var req strings.Builder
	req.WriteString(`{"product":"` + fixProducts[1] + `","minute":"` + string(encode.AppendMinute(nil, fixMinute)) + `","cells":[`)
	for i := len(cells) - 1; i >= 0; i-- { // reverse order: answers keep it
		fmt.Fprintf(&req, `"%x"`, cells[i])
		if i > 0 {
			req.WriteByte(',')
		}
	}
	ll, _ := h3.Cell(f.center).LatLng()
	fmt.Fprintf(&req, `],"points":[{"lat":%v,"lng":%v}]}`, ll.Lat, ll.Lng)
	code, b := f.post(t, "/v1/features:batch", req.String())
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	ans := decode[struct {
		ProductType string   `json:"product_type"`
		Minute      string   `json:"minute"`
		AgeSeconds  float64  `json:"age_seconds"`
		Rows        []apiRow `json:"rows"`
	}](t, b)
	if len(ans.Rows) != 201 || ans.ProductType != fixProducts[1] || ans.AgeSeconds != 72.5 {
		t.Fatalf("%d rows, product %s, age %v", len(ans.Rows), ans.ProductType, ans.AgeSeconds)
	}
	for i, r := range ans.Rows[:200] {
		f.checkRow(t, r, fixMinute, 1, cells[199-i])
	}
	f.checkRow(t, ans.Rows[200], fixMinute, 1, f.center)
}

func TestMinutesProductsDefinitionHealth(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	_, b := f.get(t, "/v1/minutes")
	mins := decode[struct {
		Minutes []struct {
			Minute     string  `json:"minute"`
			Rows       int     `json:"rows"`
			AgeSeconds float64 `json:"age_seconds"`
		} `json:"minutes"`
	}](t, b)
	if len(mins.Minutes) != 2 || mins.Minutes[0].Minute != "2024-05-18T02:41:00Z" || mins.Minutes[0].AgeSeconds != 12.5 || mins.Minutes[0].Rows != len(f.rows)/2 {
		t.Fatalf("minutes %s", b)
	}
	_, b = f.get(t, "/v1/products")
	if string(b) != `{"products":["`+fixProducts[0]+`","`+fixProducts[1]+`"]}`+"\n" {
		t.Fatalf("products %s", b)
	}
	_, b = f.get(t, "/v1/definition")
	if string(b) != `{"name":"res=8;rings=0,1,2,3,4,5,10,15,20;windows=1,2,4,8,16,32","resolution":8,"rings":[0,1,2,3,4,5,10,15,20],"windows":[1,2,4,8,16,32],"aggregate":"count"}`+"\n" {
		t.Fatalf("definition %s", b)
	}
	if code, b := f.get(t, "/healthz"); code != 200 || string(b) != `{"status":"ok"}`+"\n" {
		t.Fatalf("healthz %d %s", code, b)
	}
	if code, b := f.get(t, "/readyz"); code != 200 || !bytes.Contains(b, []byte(`"latest_minute":"2024-05-18T02:41:00Z"`)) {
		t.Fatalf("readyz %d %s", code, b)
	}
}

func TestEmptyStoreNotReady(t *testing.T) {
	sc := store.DefaultConfig()
	sc.Dir = t.TempDir()
	st, err := store.Open(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := New(DefaultConfig(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every read says "not ready" (503, Retry-After), never "unknown
	// product" (400): a pricing service waiting for the first minute must
	// see client.IsNotReady.
	for _, path := range []string{"/readyz", "/v1/map?product=" + fixProducts[0],
		"/v1/features?h3=882a100d67fffff&product=" + fixProducts[0]} {
		rec := httptestRecorder(srv, http.MethodGet, path, "")
		if rec.Code != 503 || rec.Body.Len() == 0 || rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s on an empty store: %d %s", path, rec.Code, rec.Body)
		}
	}
	rec := httptestRecorder(srv, http.MethodPost, "/v1/features:batch", `{"product":"`+fixProducts[0]+`","cells":["882a100d67fffff"]}`)
	if rec.Code != 503 {
		t.Errorf("batch on an empty store: %d %s", rec.Code, rec.Body)
	}
	if rec := httptestRecorder(srv, http.MethodGet, "/healthz", ""); rec.Code != 200 {
		t.Errorf("healthz %d", rec.Code)
	}
}

func TestHeatMap(t *testing.T) {
	cfg := DefaultConfig()
	f := newFixture(t, cfg)
	code, b := f.get(t, "/v1/map?product="+fixProducts[0]+"&k=2&w=4")
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	m := decode[struct {
		K, W      int
		Max       int64
		Truncated bool
		Cells     [][]json.RawMessage
	}](t, b)
	if m.K != 2 || m.W != 4 || m.Truncated || len(m.Cells) != 3*7*8+1 { // radius 7 has rows
		t.Fatalf("k=%d w=%d truncated=%v %d cells", m.K, m.W, m.Truncated, len(m.Cells))
	}
	var bd [][2]float64
	if err := json.Unmarshal(m.Cells[0][2], &bd); err != nil || len(bd) != 6 {
		t.Fatalf("boundary %s: %v", m.Cells[0][2], err)
	}
	if m.Max != int64(fixValue(fixMinute+1, 0, 0, 2*6+2)) {
		t.Fatalf("max %d", m.Max)
	}

	cfg.MapMaxCells = 10
	f2 := newFixture(t, cfg)
	_, b = f2.get(t, "/v1/map?product="+fixProducts[0])
	m = decode[struct {
		K, W      int
		Max       int64
		Truncated bool
		Cells     [][]json.RawMessage
	}](t, b)
	if !m.Truncated || len(m.Cells) != 10 {
		t.Fatalf("truncated=%v, %d cells", m.Truncated, len(m.Cells))
	}
}

func TestPageAndAssets(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PageRefresh = 7 * time.Second
	f := newFixture(t, cfg)
	res, err := http.Get(f.ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(body.String(), `data-refresh-ms="7000"`) {
		t.Fatalf("page: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for path, ctype := range map[string]string{"/assets/app.js": "text/javascript", "/assets/style.css": "text/css"} {
		res, err := http.Get(f.ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), ctype) {
			t.Errorf("%s: %d %q", path, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	if strings.Contains(body.String(), "http://") && !strings.Contains(body.String(), "http://www.w3.org/2000/svg") || strings.Contains(body.String(), "https://") {
		t.Error("the page refers to an outside URL")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.MaxBatchCells = 0 }, "serve.max-batch-cells"},
		{func(c *Config) { c.MaxBodyBytes = 10 }, "serve.max-body-bytes"},
		{func(c *Config) { c.MapMaxCells = 0 }, "serve.map-max-cells"},
		{func(c *Config) { c.BoundaryCacheCells = -1 }, "serve.boundary-cache-cells"},
		{func(c *Config) { c.PageRefresh = time.Millisecond }, "serve.page-refresh"},
		{func(c *Config) { c.TLSCert = "cert.pem" }, "serve.tls-cert"},
		{func(c *Config) { c.TLSKey = "key.pem" }, "serve.tls-key"},
		{func(c *Config) { c.MetricsAuth = true }, "serve.metrics-auth"},
		{func(c *Config) { c.AllowedHosts = []string{"ok.example", "not ok"} }, "serve.allowed-hosts"},
		{func(c *Config) { c.RateLimit = -1 }, "serve.rate-limit"},
		{func(c *Config) { c.RateLimit = math.NaN() }, "serve.rate-limit"},
		{func(c *Config) { c.RateBurst = 0 }, "serve.rate-burst"},
		{func(c *Config) { c.MaxConns = -1 }, "serve.max-conns"},
	} {
		cfg := DefaultConfig()
		c.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate = %v, want %q", err, c.want)
		}
	}
}

// TestReadyzFreshness: ready only while the latest minute is fresh; a
// store whose latest minute is hours old, or in the future, is not ready.
func TestReadyzFreshness(t *testing.T) {
	for _, tc := range []struct {
		sinceEnd time.Duration // now - end of the latest minute
		maxAge   time.Duration
		want     int
	}{
		{30 * time.Second, 3 * time.Minute, 200},
		{10 * time.Minute, 3 * time.Minute, 503},
		{-10 * time.Minute, 3 * time.Minute, 503}, // in the future
		{48 * time.Hour, 0, 200},                  // freshness off: a replay of old data
	} {
		cfg := DefaultConfig()
		cfg.ReadyMaxAge = tc.maxAge
		f := newFixture(t, cfg)
		m, _ := f.st.LatestMinute()
		end := time.Unix((m+1)*60, 0)
		f.srv.now = func() time.Time { return end.Add(tc.sinceEnd) }
		if code, b := f.get(t, "/readyz"); code != tc.want {
			t.Errorf("%v after the latest minute, max age %v: %d %s", tc.sinceEnd, tc.maxAge, code, b)
		}
	}
}
