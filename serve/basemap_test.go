package serve

import (
	"bytes"
	"fmt"
	"html"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"
)

// TestBasemapConfig: -serve.basemap takes an http(s) template of one host
// with {z}, {x} and {y}, and wants its attribution; each mistake is
// refused naming the flag.
func TestBasemapConfig(t *testing.T) {
	const osm = "© OpenStreetMap contributors"
	for _, tc := range []struct {
		tmpl, attr, err string // err: "" for valid, else a part of the message
	}{
		{"", "", ""},
		{"https://tile.example/{z}/{x}/{y}.png", osm, ""},
		{"http://127.0.0.1:8081/tiles/{z}/{x}/{y}.png?key=abc", osm, ""},
		{"HTTPS://[::1]:99/{z}/{x}/{y}", osm, ""},
		{"https://tile.example/{z}/{y}/{x}/{x}.png", osm, ""}, // any order, repeats
		{"", osm, "serve.basemap-attribution: needs -serve.basemap"},
		{"https://tile.example/{z}/{x}/{y}.png", "", "serve.basemap-attribution: required with -serve.basemap"},
		{"https://tile.example/{z}/{x}/{y}.png", "  ", "required with -serve.basemap"},
		{"https://tile.example/{z}/{x}/{y}.png", strings.Repeat("é", 301), "301 characters, at most 300"},
		{"ftp://tile.example/{z}/{x}/{y}.png", osm, "want an http:// or https://"},
		{"tile.example/{z}/{x}/{y}.png", osm, "want an http:// or https://"},
		{"https://{s}.tile.example/{z}/{x}/{y}.png", osm, "{s} subdomains are not supported"},
		{"https://tile.example/{z}/{x}.png", osm, "no {y}"},
		{"https://tile.example/{x}/{y}.png", osm, "no {z}"},
		{"https://tile.example/{z}/{x}/{y}@{r}.png", osm, "placeholder {r}"},
		{"https://user:pw@tile.example/{z}/{x}/{y}.png", osm, "no user:password@"},
		{"https:///{z}/{x}/{y}.png", osm, `host ""`},
		{"https://tile.example;x/{z}/{x}/{y}.png", osm, "host"},
	} {
		cfg := DefaultConfig()
		cfg.Basemap, cfg.BasemapAttribution = tc.tmpl, tc.attr
		err := cfg.Validate()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q %q: %v", tc.tmpl, tc.attr, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "serve.basemap")):
			t.Errorf("%q %q: error %v, want one naming the flag and saying %q", tc.tmpl, tc.attr, err, tc.err)
		}
	}
}

// TestBasemapPageHeaders: the page's Content-Security-Policy admits images
// from the tile server only when a basemap is set; the template and the
// attribution reach the page escaped.
func TestBasemapPageHeaders(t *testing.T) {
	st := newFixture(t, DefaultConfig()).st
	for _, tc := range []struct {
		tmpl, attr, img string
	}{
		{"", "", "img-src 'self';"},
		{"https://tiles.example:8443/a/{z}/{x}/{y}.png?k=1&v=\"2\"", `© <b>OSM</b> & "friends"`, "img-src 'self' https://tiles.example:8443;"},
	} {
		cfg := DefaultConfig()
		cfg.Basemap, cfg.BasemapAttribution = tc.tmpl, tc.attr
		srv, err := New(cfg, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, tc.img) || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self';") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("basemap %q: CSP %q, want %q and nothing else from elsewhere", tc.tmpl, csp, tc.img)
		}
		body := rec.Body.String()
		want := `data-basemap="` + html.EscapeString(tc.tmpl) + `" data-basemap-attribution="` + html.EscapeString(tc.attr) + `"`
		if !strings.Contains(body, want) {
			t.Errorf("page does not carry %s", want)
		}
		if strings.Contains(body, "<b>OSM") || strings.Contains(body, "{{") {
			t.Errorf("page has unescaped or unfilled values:\n%.600s", body)
		}
		if strings.Contains(body, "onsubmit=") || strings.Contains(body, "<script>") {
			t.Errorf("page has inline script, which its CSP refuses")
		}
	}
}

// jsTile is one tile of the page's tilesFor.
type jsTile struct {
	Z, X, Y, Tx     int
	Left, Top, W, H float64
}

// slippy is the reference: the tile of zoom z holding (lat, lng), and the
// point's position in it in tile pixels (0..256), by the formula of the
// OpenStreetMap wiki (Slippy map tilenames).
func slippy(lat, lng float64, z int) (x, y int, fx, fy float64) {
	n := math.Exp2(float64(z))
	gx := (lng + 180) / 360 * n
	phi := lat * math.Pi / 180
	gy := (1 - math.Asinh(math.Tan(phi))/math.Pi) / 2 * n
	return int(math.Floor(gx)), int(math.Floor(gy)), (gx - math.Floor(gx)) * 256, (gy - math.Floor(gy)) * 256
}

// checkTiles checks the page's tiles for a W×H view centred on (lat, lng)
// at zoom z against the reference: the nearest whole zoom, every tile
// that meets the view and no other, each where the reference puts it.
func checkTiles(t *testing.T, tiles []jsTile, lat, lng, z float64, W, H int) {
	t.Helper()
	tz := int(math.Round(z))
	n, k := 1<<tz, math.Exp2(z-float64(tz))
	cx, cy, fx, fy := slippy(lat, lng, tz)
	// The centre tile's corner on the screen; tile (tx, ty) is 256k px on.
	left0, top0 := float64(W)/2-fx*k, float64(H)/2-fy*k
	want := map[[2]int]bool{}
	for ty := 0; ty < n; ty++ {
		for tx := cx - 10; tx <= cx+10; tx++ {
			l, tp := left0+float64(tx-cx)*256*k, top0+float64(ty-cy)*256*k
			if l < float64(W) && l+256*k > 0 && tp < float64(H) && tp+256*k > 0 {
				want[[2]int{tx, ty}] = true
			}
		}
	}
	if len(tiles) != len(want) {
		t.Errorf("view %v,%v z=%v %dx%d: %d tiles, want %d", lat, lng, z, W, H, len(tiles), len(want))
	}
	for _, tl := range tiles {
		if !want[[2]int{tl.Tx, tl.Y}] || tl.Z != tz || tl.X != ((tl.Tx%n)+n)%n {
			t.Errorf("view %v,%v z=%v: tile %+v not wanted (zoom %d, centre tile %d/%d)", lat, lng, z, tl, tz, cx, cy)
			continue
		}
		l, tp := left0+float64(tl.Tx-cx)*256*k, top0+float64(tl.Y-cy)*256*k
		if math.Abs(tl.Left-l) > 0.5001 || math.Abs(tl.Top-tp) > 0.5001 || math.Abs(tl.W-256*k) > 1.0001 || math.Abs(tl.H-256*k) > 1.0001 {
			t.Errorf("view %v,%v z=%v: tile %+v, want left %.2f top %.2f size %.2f", lat, lng, z, tl, l, tp, 256*k)
		}
	}
}

// tilePalette colours a test tile by (x mod 3, y mod 3): neighbours differ,
// and every colour is far from the heat map's.
var tilePalette = [9]color.RGBA{
	{0xf2, 0xe8, 0xc9, 0xff}, {0xc9, 0xe4, 0xc5, 0xff}, {0xbf, 0xd8, 0xf0, 0xff},
	{0xf0, 0xc4, 0xc4, 0xff}, {0xe2, 0xe2, 0xe2, 0xff}, {0xd9, 0xc9, 0xf0, 0xff},
	{0xf4, 0xd4, 0xa0, 0xff}, {0xb4, 0xe8, 0xe0, 0xff}, {0xe4, 0xf0, 0xa8, 0xff},
}

var tileGrid = color.RGBA{0x80, 0x88, 0x94, 0xff} // each tile's top and left edge

func tileColour(x, y int) color.RGBA { return tilePalette[(x%3)*3+y%3] }

// tileServer serves 256 px PNG tiles at /tiles/{z}/{x}/{y}.png as a tile
// server does (404 for a tile outside the world, 400 for a malformed
// address), each a solid tileColour with a grid line, and counts the
// tiles asked for.
type tileServer struct {
	*httptest.Server
	mu  sync.Mutex
	got map[[3]int]int
}

func newTileServer(t *testing.T) *tileServer {
	ts := &tileServer{got: map[[3]int]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /tiles/{z}/{x}/{file}", func(w http.ResponseWriter, r *http.Request) {
		z, err1 := strconv.Atoi(r.PathValue("z"))
		x, err2 := strconv.Atoi(r.PathValue("x"))
		ys, ok := strings.CutSuffix(r.PathValue("file"), ".png")
		y, err3 := strconv.Atoi(ys)
		if err1 != nil || err2 != nil || err3 != nil || !ok || z < 0 || z > 22 {
			http.Error(w, "bad tile address", http.StatusBadRequest)
			return
		}
		if x < 0 || y < 0 || x >= 1<<z || y >= 1<<z {
			http.NotFound(w, r)
			return
		}
		ts.mu.Lock()
		ts.got[[3]int{z, x, y}]++
		ts.mu.Unlock()
		img := image.NewRGBA(image.Rect(0, 0, 256, 256))
		c := tileColour(x, y)
		for py := range 256 {
			for px := range 256 {
				if px == 0 || py == 0 {
					img.SetRGBA(px, py, tileGrid)
				} else {
					img.SetRGBA(px, py, c)
				}
			}
		}
		var b bytes.Buffer
		enc := png.Encoder{CompressionLevel: png.BestSpeed}
		if err := enc.Encode(&b, img); err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "image/png")
		w.Write(b.Bytes())
	})
	ts.Server = httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tileServer) requested() map[[3]int]int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := map[[3]int]int{}
	for k, v := range ts.got {
		out[k] = v
	}
	return out
}

var (
	hexRE       = regexp.MustCompile(`<polygon points="([-0-9., ]+)" fill="(rgb\(\d+,\d+,\d+\))" data-h3="([0-9a-f]{15})"`)
	tileImageRE = regexp.MustCompile(`<image [^>]*>`)
	attrRE      = regexp.MustCompile(`([a-zA-Z-]+)="([^"]*)"`)
)

// domTile is a tile the page drew: its address and its square in the map.
type domTile struct {
	z, x, y                  int
	left, top, width, height float64
	href                     string
}

func domTiles(t *testing.T, dom string) []domTile {
	t.Helper()
	var out []domTile
	for _, tag := range tileImageRE.FindAllString(dom, -1) {
		a := map[string]string{}
		for _, m := range attrRE.FindAllStringSubmatch(tag, -1) {
			a[m[1]] = html.UnescapeString(m[2])
		}
		var d domTile
		_, err := fmt.Sscanf(a["data-tile"], "%d/%d/%d", &d.z, &d.x, &d.y)
		num := func(k string) float64 {
			v, e := strconv.ParseFloat(a[k], 64)
			if e != nil {
				err = e
			}
			return v
		}
		d.left, d.top, d.width, d.height, d.href = num("x"), num("y"), num("width"), num("height"), a["href"]
		if err != nil || a["visibility"] != "" {
			t.Fatalf("tile %s: %v (a tile that failed to load is hidden)", tag, err)
		}
		out = append(out, d)
	}
	return out
}

// TestBasemapInChromium loads the page with -serve.basemap pointing at a
// local tile server, on a store whose latest minute is a year old by the
// server's clock (a replay), in one headless Chromium run that dumps the
// DOM and takes a screenshot:
//   - the tiles asked for are those the page drew, at one zoom, and cover
//     every cell with demand; the page's CSP let them in, and refused
//     nothing (the console is empty);
//   - the centre hexagon sits on the screen where the reference Mercator
//     formula puts its centre in the tile drawn under it (to 2 px);
//   - the attribution is shown; the page says "replay", not "live";
//   - the screenshot shows tile colours, and hexagon colours blended over
//     them, the hottest hexagon over the tile that holds its centre.
func TestBasemapInChromium(t *testing.T) {
	tiles := newTileServer(t)
	cfg := DefaultConfig()
	cfg.Basemap = tiles.URL + "/tiles/{z}/{x}/{y}.png"
	cfg.BasemapAttribution = "© test tiles & friends"
	cfg.Now = func() time.Time { return fixNow.Add(400 * 24 * time.Hour) }
	cfg.ProductNames = writeFile(t, "names.csv", fixProducts[0]+",uberX\n")
	f := newFixture(t, cfg)
	url := f.ts.URL + "/?product=" + fixProducts[0] + "&k=1&w=2&scale=log" // no minute: follow the latest
	shot := t.TempDir() + "/page-basemap.png"
	dom, console := chromiumConsole(t, url, "--dump-dom", "--screenshot="+shot, "--hide-scrollbars")
	p := page{t, string(dom)}
	for _, l := range console {
		t.Errorf("console: %s", l) // a CSP violation, a script error
	}
	if !strings.Contains(p.dom, `data-ready="1"`) {
		t.Fatalf("the page never finished its first view; DOM:\n%.4000s", p.dom)
	}
	p.checkMap(3*7*8 + 1)

	// Replay, not live.
	if s := p.text("status"); !regexp.MustCompile(`^uberX · 2024-05-18 02:41 UTC \(40\d d ago\) · replay · k=1 w=2 · 169 cells$`).MatchString(s) {
		t.Errorf("status %q: want the age and replay", s)
	}
	if s := p.text("latest"); !regexp.MustCompile(`^latest minute 2024-05-18 02:41 UTC, 40\d d ago · replay$`).MatchString(s) {
		t.Errorf("latest minute %q", s)
	}
	p.find(`<div id="latest" role="status" title="[^"]*">`) // not class="live"
	p.find(`<button id="live" type="button" title="go to the latest closed minute \(the store is not live[^"]*" class="on">latest</button>`)
	if a := p.text("attribution"); a != cfg.BasemapAttribution {
		t.Errorf("attribution %q, want %q", a, cfg.BasemapAttribution)
	}

	// The tiles asked for are those drawn, all at one zoom, around the data.
	drawn := domTiles(t, p.dom)
	got := tiles.requested()
	if len(drawn) == 0 || len(drawn) > 40 {
		t.Fatalf("%d tiles drawn; requests %v", len(drawn), got)
	}
	tz := drawn[0].z
	for _, d := range drawn {
		if d.z != tz || got[[3]int{d.z, d.x, d.y}] == 0 || d.href != fmt.Sprintf("%s/tiles/%d/%d/%d.png", tiles.URL, d.z, d.x, d.y) {
			t.Errorf("tile %+v drawn: zoom %d, requested %d times", d, tz, got[[3]int{d.z, d.x, d.y}])
		}
	}
	if len(got) != len(drawn) {
		t.Errorf("%d tiles requested, %d drawn: %v", len(got), len(drawn), got)
	}
	byAddr := map[[2]int]domTile{}
	for _, d := range drawn {
		byAddr[[2]int{d.x, d.y}] = d
	}
	need := map[[2]int]bool{}
	for c, row := range f.rows {
		if row == nil || c.product != 0 {
			continue
		}
		ll, _ := h3.Cell(c.cell).LatLng()
		x, y, _, _ := slippy(ll.Lat, ll.Lng, tz)
		need[[2]int{x, y}] = true
	}
	for a := range need {
		if _, ok := byAddr[a]; !ok {
			t.Errorf("no tile %d/%d/%d under a cell with demand; drawn %v", tz, a[0], a[1], got)
		}
	}
	t.Logf("zoom %d: %d tiles drawn, %d under cells with demand", tz, len(drawn), len(need))

	// Every hexagon on the screen, from its polygon and the map's
	// transform, against its cell's centre in the tile drawn under it.
	tr := p.find(`<g id="world" transform="translate\(([-0-9.]+) ([-0-9.]+)\) scale\(([0-9.e-]+)\) translate\(([-0-9.]+) ([-0-9.]+)\)"`)
	v := make([]float64, 5)
	for i := range v {
		v[i], _ = strconv.ParseFloat(tr[i+1], 64)
	}
	var sx, sy float64 // the centre hexagon's
	worst, worstCell := 0.0, ""
	polys := hexRE.FindAllStringSubmatch(p.dom, -1)
	for _, m := range polys {
		var x, y float64
		xy := strings.Fields(m[1])
		for _, q := range xy {
			a, b, _ := strings.Cut(q, ",")
			wx, _ := strconv.ParseFloat(a, 64)
			wy, _ := strconv.ParseFloat(b, 64)
			x += v[0] + v[2]*(wx+v[3])
			y += v[1] + v[2]*(wy+v[4])
		}
		x, y = x/float64(len(xy)), y/float64(len(xy))
		cell, _ := strconv.ParseUint(m[3], 16, 64)
		ll, _ := h3.Cell(cell).LatLng()
		tx, ty, fx, fy := slippy(ll.Lat, ll.Lng, tz)
		under, ok := byAddr[[2]int{tx, ty}]
		if !ok {
			t.Errorf("no tile drawn under cell %s (%d/%d/%d)", m[3], tz, tx, ty)
			continue
		}
		wantX, wantY := under.left+fx/256*under.width, under.top+fy/256*under.height
		if d := math.Hypot(x-wantX, y-wantY); d > worst {
			worst, worstCell = d, m[3]
		}
		if cell == f.center {
			sx, sy = x, y
			if m[2] != "rgb(253,231,37)" {
				t.Errorf("centre hexagon %s, want the top of the ramp", m[2])
			}
		}
	}
	if len(polys) != 169 || worst > 2 {
		t.Errorf("%d hexagons; the farthest from its place over the tiles is %s, %.2f px off, want at most 2", len(polys), worstCell, worst)
	}
	t.Logf("%d hexagons within %.2f px of their places over the tiles", len(polys), worst)
	centre, _ := h3.Cell(f.center).LatLng()
	cx, cy, _, _ := slippy(centre.Lat, centre.Lng, tz)

	box := p.find(`<svg id="map"[^>]* viewBox="0 0 ([0-9.]+) ([0-9.]+)"`)
	mw, _ := strconv.ParseFloat(box[1], 64)
	mh, _ := strconv.ParseFloat(box[2], 64)
	checkBasemapShot(t, shot, mw, sx-mw/2, sy-mh/2, tileColour(cx, cy))
	keepScreenshot(t, shot, "page-basemap")
}

// checkBasemapShot decodes the screenshot: tile colours must cover a good
// part of it, hexagon colours blended over tiles (fill-opacity .75) must
// be there too, and the pixel at the centre hexagon's centre must be the
// hottest colour over centreTile. The centre is (dx, dy) from the map's
// centre: Chromium lays the page out again for the screenshot, whose map
// is taller than the DOM's, and the page keeps its view's centre in the
// middle of the map. Its width (mapW) is the DOM's, its top and bottom
// are found as the first and last tile pixels down its left edge.
func checkBasemapShot(t *testing.T, shot string, mapW, dx, dy float64, centreTile color.RGBA) {
	t.Helper()
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	// Chromium's screenshots are opaque: read the pixels as they are.
	var pix []uint8
	stride := 0
	switch m := img.(type) {
	case *image.RGBA:
		pix, stride = m.Pix, m.Stride
	case *image.NRGBA:
		pix, stride = m.Pix, m.Stride
	default:
		t.Fatalf("screenshot %s: a %T", shot, img)
	}
	rgb := func(x, y int) [3]int {
		i := (y-img.Bounds().Min.Y)*stride + (x-img.Bounds().Min.X)*4
		return [3]int{int(pix[i]), int(pix[i+1]), int(pix[i+2])}
	}
	isTile := map[[3]int]bool{{int(tileGrid.R), int(tileGrid.G), int(tileGrid.B)}: true}
	for _, c := range tilePalette {
		isTile[[3]int{int(c.R), int(c.G), int(c.B)}] = true
	}
	// The ramp as the page computes it (color in app.js), finely sampled.
	ramp := [][3]int{{0x48, 0x28, 0x78}, {0x3e, 0x4a, 0x89}, {0x31, 0x68, 0x8e}, {0x26, 0x82, 0x8e}, {0x1f, 0x9e, 0x89}, {0x35, 0xb7, 0x79}, {0x6d, 0xcd, 0x59}, {0xb4, 0xde, 0x2c}, {0xfd, 0xe7, 0x25}}
	var samples [][3]float64
	for s := 0; s <= 512; s++ {
		tt := float64(s) / 512 * float64(len(ramp)-1)
		i := min(len(ramp)-2, int(tt))
		var c [3]float64
		for j := range c {
			c[j] = math.Round(float64(ramp[i][j]) + float64(ramp[i+1][j]-ramp[i][j])*(tt-float64(i)))
		}
		samples = append(samples, c)
	}
	blend := func(h [3]float64, tc color.RGBA) [3]float64 {
		return [3]float64{.75*h[0] + .25*float64(tc.R), .75*h[1] + .25*float64(tc.G), .75*h[2] + .25*float64(tc.B)}
	}
	// Every ramp colour over every tile colour, in buckets of 8 levels a
	// channel: a pixel is a hexagon's if one of them is within 3 of it, in
	// its bucket or the next.
	bucket := func(r, g, b int) int { return ((r>>3+1)*40+g>>3+1)*40 + b>>3 + 1 }
	blends := map[int][][3]float64{}
	for _, tc := range tilePalette {
		for _, h := range samples {
			q := blend(h, tc)
			k := bucket(int(q[0]), int(q[1]), int(q[2]))
			blends[k] = append(blends[k], q)
		}
	}
	isHex := func(p [3]int) bool {
		for r := (p[0] - 3) >> 3; r <= (p[0]+3)>>3; r++ {
			for g := (p[1] - 3) >> 3; g <= (p[1]+3)>>3; g++ {
				for b := (p[2] - 3) >> 3; b <= (p[2]+3)>>3; b++ {
					for _, q := range blends[bucket(r<<3, g<<3, b<<3)] {
						if math.Abs(float64(p[0])-q[0]) <= 3 && math.Abs(float64(p[1])-q[1]) <= 3 && math.Abs(float64(p[2])-q[2]) <= 3 {
							return true
						}
					}
				}
			}
		}
		return false
	}
	bounds := img.Bounds()
	top, bottom := -1, -1
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		if isTile[rgb(bounds.Min.X+5, y)] {
			bottom = y
			if top < 0 {
				top = y
			}
		}
	}
	if top < 0 {
		t.Fatalf("screenshot %s: no tile down the left edge", shot)
	}
	// The map: tiles, and hexagons over them.
	tilePx, hexPx := 0, 0
	hexColours := map[[3]int]bool{}
	for y := top; y <= bottom; y++ {
		for x := bounds.Min.X; x < bounds.Min.X+int(mapW); x++ {
			p := rgb(x, y)
			switch {
			case isTile[p]:
				tilePx++
			case isHex(p):
				hexPx++
				hexColours[p] = true
			}
		}
	}
	area := int(mapW) * (bottom + 1 - top)
	t.Logf("screenshot %dx%d, the map %dx%d: %d tile pixels, %d hexagon pixels in %d colours", bounds.Dx(), bounds.Dy(), int(mapW), bottom+1-top, tilePx, hexPx, len(hexColours))
	if tilePx < area/5 || hexPx < area/10 || len(hexColours) < 8 {
		t.Errorf("screenshot %s: %d tile pixels, %d hexagon pixels in %d colours of %d in the map: want tiles (20%%) and hexagons over them (10%%, 8 colours)", shot, tilePx, hexPx, len(hexColours), area)
	}
	px, py := int(math.Round(mapW/2+dx)), int(math.Round(float64(top+bottom+1)/2+dy))
	c := rgb(px, py)
	yellow := samples[len(samples)-1]
	best, bestD := -1, math.Inf(1)
	for i, tc := range tilePalette {
		bl := blend(yellow, tc)
		if d := math.Abs(float64(c[0])-bl[0]) + math.Abs(float64(c[1])-bl[1]) + math.Abs(float64(c[2])-bl[2]); d < bestD {
			best, bestD = i, d
		}
	}
	if bestD > 9 || tilePalette[best] != centreTile {
		t.Errorf("screenshot at the centre hexagon (%d, %d): %v, nearest the hottest colour over tile colour %v (off by %.0f); want it over %v", px, py, c, tilePalette[max(best, 0)], bestD, centreTile)
	}
}
