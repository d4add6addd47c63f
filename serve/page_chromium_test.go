package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const chromiumPath = "/usr/bin/chromium"

var updateScreenshots = flag.Bool("serve.update-screenshots", false, "copy the page tests' screenshots (when under 300 KB) to testdata/screenshots/")

// chromium runs headless Chromium on url with extra flags and returns its
// stdout. The profile directory is fresh and removed afterwards.
func chromium(t *testing.T, url string, extra ...string) []byte {
	t.Helper()
	out, _ := chromiumConsole(t, url, extra...)
	return out
}

// chromiumConsole is chromium, and returns the page's console messages
// too (Chromium's log lines of them, a CSP violation among them).
func chromiumConsole(t *testing.T, url string, extra ...string) (stdout []byte, console []string) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("headless page test skipped: %s not found (apt-get install -y chromium)", chromiumPath)
	}
	profile := t.TempDir()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--user-data-dir=" + profile,
		// Virtual time runs the page's fetches and first draw, then stops:
		// no sleeping for the refresh timer.
		"--virtual-time-budget=5000", "--window-size=1280,860",
	}, extra...)
	args = append(args, "--enable-logging=stderr", "--v=0", url)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromiumPath, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.Bytes())
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, ":CONSOLE") {
			console = append(console, l)
		}
	}
	return out, console
}

// page is the DOM of a loaded page, after its scripts ran.
type page struct {
	t   *testing.T
	dom string
}

func loadPage(t *testing.T, url string) page {
	t.Helper()
	p := page{t, string(chromium(t, url, "--dump-dom"))}
	if !strings.Contains(p.dom, `data-ready="1"`) {
		t.Fatalf("the page never finished its first view; DOM:\n%.4000s", p.dom)
	}
	return p
}

// find returns the first submatch of re (which must match).
func (p page) find(re string) []string {
	p.t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(p.dom)
	if m == nil {
		p.t.Fatalf("DOM has no match for %s; DOM:\n%.6000s", re, p.dom)
	}
	return m
}

// text is the text content of the element with id (its inner HTML with
// tags removed, entities decoded).
func (p page) text(id string) string {
	p.t.Helper()
	m := p.find(`(?s)id="` + id + `"[^>]*>(.*?)</(div|p|h2|span|tbody|section|select)>`)
	s := regexp.MustCompile(`<br>`).ReplaceAllString(m[1], " ")
	s = regexp.MustCompile(`<[^>]+>`).ReplaceAllString(s, "")
	return strings.Join(strings.Fields(html.UnescapeString(s)), " ")
}

// url is the view's query string as the page wrote it (body[data-url]).
func (p page) url() string { return html.UnescapeString(p.find(`data-url="([^"]*)"`)[1]) }

var (
	polygonRE = regexp.MustCompile(`<polygon points="[-0-9., ]+" fill="(rgb\(\d+,\d+,\d+\))" data-h3="[0-9a-f]{15}" data-v="(\d+)"`)
	topRowRE  = regexp.MustCompile(`<tr data-h3="([0-9a-f]{15})"( class="sel")?><td>(\d+)</td><td><span class="swatch"[^>]*></span>[0-9a-f]{15}</td><td class="num">(\d+)</td><td class="num">(-?\d+\.\d{4}), (-?\d+\.\d{4})</td></tr>`)
)

// checkMap checks the drawn map against the legend and the top table: one
// polygon per cell, the legend's min and max those of the polygons, the
// table the hottest cells in order. It returns the polygons' values and
// the number of distinct colours.
func (p page) checkMap(wantCells int) (values []int, colours int) {
	p.t.Helper()
	polys := polygonRE.FindAllStringSubmatch(p.dom, -1)
	if wantCells >= 0 && len(polys) != wantCells {
		p.t.Fatalf("page drew %d hexagons, want %d", len(polys), wantCells)
	}
	if got := p.find(`data-cells="(\d+)"`)[1]; got != strconv.Itoa(len(polys)) {
		p.t.Errorf("svg data-cells = %s, %d polygons", got, len(polys))
	}
	fills := map[string]bool{}
	lo, hi := 1<<31, 0
	for _, m := range polys {
		v, _ := strconv.Atoi(m[2])
		values = append(values, v)
		fills[m[1]] = true
		lo, hi = min(lo, v), max(hi, v)
	}
	scale := p.find(`id="legend" data-scale="(log|linear)" data-min="(\d+)" data-max="(\d+)"`)
	if scale[2] != strconv.Itoa(lo) || scale[3] != strconv.Itoa(hi) {
		p.t.Errorf("legend says min %s max %s, polygons span %d..%d", scale[2], scale[3], lo, hi)
	}
	legend := p.text("legend-scale")
	if !strings.HasPrefix(legend, scale[1]+" scale · ") || (lo != hi && !strings.Contains(legend, fmt.Sprintf("min %d · max %d", lo, hi))) {
		p.t.Errorf("legend text %q does not state the scale and range", legend)
	}
	if !regexp.MustCompile(`^Colour: riders (in the cell|within 1 ring|within \d+ rings) (in the minute|over the last \d+ minutes) \(k=\d+, w=\d+\)$`).MatchString(p.text("legend-title")) {
		p.t.Errorf("legend title %q does not say what the colour means", p.text("legend-title"))
	}
	rows := topRowRE.FindAllStringSubmatch(p.dom, -1)
	if want := min(len(polys), 10); len(rows) != want {
		p.t.Fatalf("top table has %d rows, want %d", len(rows), want)
	}
	for i, r := range rows {
		v, _ := strconv.Atoi(r[4])
		if r[3] != strconv.Itoa(i+1) || (i == 0 && v != hi) {
			p.t.Errorf("top row %d = %v (max %d)", i, r[1:], hi)
		}
		if i > 0 {
			if prev, _ := strconv.Atoi(rows[i-1][4]); prev < v {
				p.t.Errorf("top rows out of order: %s then %d", rows[i-1][4], v)
			}
		}
	}
	return values, len(fills)
}

// screenshot saves a PNG of url under the test's temp dir, logs its path,
// and keeps a copy in $DEMANDPIPE_SCREENSHOT_DIR if set and, with
// -serve.update-screenshots, in testdata/screenshots when under 300 KB.
func screenshot(t *testing.T, url, name string) string {
	t.Helper()
	shot := filepath.Join(t.TempDir(), name+".png")
	chromium(t, url, "--screenshot="+shot, "--hide-scrollbars")
	st, err := os.Stat(shot)
	if err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v (size %d)", shot, err, sizeOf(st))
	}
	keepScreenshot(t, shot, name)
	return shot
}

// keepScreenshot logs the path of a screenshot and keeps a copy of it
// named name.png as screenshot says.
func keepScreenshot(t *testing.T, shot, name string) {
	t.Helper()
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the page: %s (%d bytes)", shot, len(b))
	keep := func(dir string) {
		dst := filepath.Join(dir, name+".png")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("kept a copy: %s", dst)
	}
	if dir := os.Getenv("DEMANDPIPE_SCREENSHOT_DIR"); dir != "" {
		keep(dir) // CI artifacts: outlive the test's temp dir
	}
	if *updateScreenshots && len(b) < 300<<10 {
		keep(filepath.Join("testdata", "screenshots"))
	}
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}

// overviewOf fetches the server's suggestion that the page must follow.
func overviewOf(t *testing.T, base, product, minute string) (k, w int, scale string) {
	t.Helper()
	url := base + "/v1/overview?product=" + product
	if minute != "" {
		url += "&minute=" + minute
	}
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var o struct {
		Suggested struct {
			K, W  int
			Scale string
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&o); err != nil {
		t.Fatal(err)
	}
	return o.Suggested.K, o.Suggested.W, o.Suggested.Scale
}

// TestPageInChromium loads / with no view in the URL against the fixture
// (a names file names product 0 only): the page must pick the product with
// the most rows, follow the latest minute (the store is live), take k, w
// and the scale from /v1/overview, draw one polygon per non-zero cell,
// state the legend's scale and range, list the hottest cells, show the
// name (and the other product's UUID) in the picker, ages in human units,
// and write the whole view into the URL.
func TestPageInChromium(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ProductNames = writeFile(t, "names.csv", "uuid,name\n"+fixProducts[0]+",uberX\n")
	f := newFixture(t, cfg)
	p := loadPage(t, f.ts.URL+"/")

	k, w, scale := overviewOf(t, f.ts.URL, fixProducts[0], "")
	u := p.url()
	if want := fmt.Sprintf("?product=%s&k=%d&w=%d&scale=%s&at=", fixProducts[0], k, w, scale); !strings.HasPrefix(u, want) {
		t.Errorf("view in the URL %q, want it to start %q", u, want)
	}
	want := 3*7*8 + 1 // cells within radius 7 have rows for product 0
	p.checkMap(want)
	status := p.text("status")
	if wantS := fmt.Sprintf("uberX · 2024-05-18 02:41 UTC (12 s ago) · live · k=%d w=%d · %d cells", k, w, want); status != wantS {
		t.Errorf("status %q, want %q", status, wantS)
	}
	p.find(`<option value="` + fixProducts[0] + `" title="` + fixProducts[0] + `">uberX</option>`)
	p.find(`<option value="` + fixProducts[1] + `" title="` + fixProducts[1] + `">` + fixProducts[1] + `</option>`)
	if when := p.text("when"); !strings.Contains(when, "2024-05-18 02:41 UTC · 12 s ago") || !strings.Contains(when, "2 of 2 minutes") {
		t.Errorf("timeline label %q", when)
	}
	if got := strings.Count(p.find(`(?s)<svg id="spark".*?</svg>`)[0], "<rect"); got != 2 {
		t.Errorf("timeline has %d bars, want one per minute (2)", got)
	}
	p.find(`<button id="live" type="button" title="follow the latest closed minute" class="on">live</button>`)
	// The latest minute's age ticks on from the server's 12.5 s (Chromium's
	// virtual time runs a few seconds).
	if s := p.text("latest"); !regexp.MustCompile(`^latest minute 02:41 UTC, 1\d s ago · live$`).MatchString(s) {
		t.Errorf("latest minute %q", s)
	}
	p.find(`<div id="latest" role="status" title="[^"]*" class="live">`)
	screenshot(t, f.ts.URL+"/", "fixture")
}

// TestPageRestoresViewFromURL: a shared link restores product, k, w,
// scale, an older minute, the selected cell and the map's centre and zoom,
// and the page writes back exactly the same query (the round trip).
func TestPageRestoresViewFromURL(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	center := strconv.FormatUint(f.center, 16)
	q := "?product=" + fixProducts[1] + "&k=2&w=4&scale=linear&minute=2024-05-18T02:40:00Z&cell=" + center + "&at=40.75800,-73.98550,13.00"
	p := loadPage(t, f.ts.URL+"/"+q)
	if got := p.url(); got != q {
		t.Errorf("view in the URL after load:\n got %s\nwant %s", got, q)
	}
	values, _ := p.checkMap(1 + 3*5*6) // product 1 has rows within radius 5
	want := int(fixValue(fixMinute, 1, 0, feature2x4))
	if slicesMax(values) != want {
		t.Errorf("hottest cell %d, want the centre's %d", slicesMax(values), want)
	}
	if s := p.text("status"); !strings.HasPrefix(s, fixProducts[1]+" · 2024-05-18 02:40 UTC (1 min ago) · k=2 w=4 · ") {
		t.Errorf("status %q", s)
	}
	p.find(`id="legend" data-scale="linear"`)
	// The selected cell is outlined and marked in the table (it is the
	// hottest: the centre of the disk).
	p.find(`<g id="sel"><polygon points="[-0-9., ]+" data-h3="` + center + `"></polygon></g>`)
	p.find(`<tr data-h3="` + center + `" class="sel"><td>1</td>`)
	// Its 54 features, the current one marked.
	grid := p.find(`(?s)<table id="grid">.*?</table>`)[0]
	if n := strings.Count(grid, "<td "); n != 54 {
		t.Errorf("feature grid has %d values, want 54", n)
	}
	if !strings.Contains(grid, fmt.Sprintf(`<td data-k="2" data-w="4" class="cur">%d</td>`, want)) {
		t.Errorf("feature grid does not mark k=2 w=4 = %d:\n%s", want, grid)
	}
	// Zoom 13 at the given centre: 256·2^13/360 px per degree.
	scale := p.find(`<g id="world" transform="translate\([-0-9.]+ [-0-9.]+\) scale\(([0-9.]+)\)`)[1]
	if s, _ := strconv.ParseFloat(scale, 64); s < 5.825 || s > 5.826 {
		t.Errorf("map scale %s, want zoom 13 (5.8254)", scale)
	}
}

const feature2x4 = 2*6 + 2 // k=2 (index 2), w=4 (index 2) in the default definition

func slicesMax(v []int) int {
	m := 0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// TestPageHelpersInChromium runs the page's pure helpers in Chromium (a
// test page loads app.js without starting it): ages in human units, the
// view's URL form both ways, the legend's ticks.
func TestPageHelpersInChromium(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	mux := http.NewServeMux()
	mux.Handle("/", f.srv)
	mux.HandleFunc("/selftest", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><body data-refresh-ms="1000">
<script>window.DEMANDPIPE_NO_MAIN = true;</script><script src="/assets/app.js"></script>
<pre id="out"></pre><script>
const d = window.demandpipe;
const ages = [0, 12.5, 59.9, 60, 179, 3599, 3600, 7300, 172799, 172800, 400000, 63115200, 3.4e8, -5, -7200];
const views = ["", "?definition=fine_2&product=6f1c0a5e-2d4b-4c1e-9a7f-0b1d2c3e4f50&k=2&w=16&scale=log&minute=2014-04-02T18:41:00Z&cell=882a100d65fffff&at=40.75800,-73.98550,12.50"];
document.getElementById("out").textContent = JSON.stringify({
  ages: ages.map(d.ago),
  views: views.map((v) => d.formatView(d.parseView(v))),
  bad: d.formatView(d.parseView("?k=x&scale=cubic&at=91,0,3&w=4&definition=Fine")),
  res: ["882a100d65fffff", "872a100d6ffffff", "08f2a100d6ffffff", "8f2a100d6ffffff", "x", "0", "a82a100d65fffff"].map(d.cellRes),
  withDef: [d.withDefinition("/v1/map?k=1", "fine"), d.withDefinition("/v1/minutes", "fine"), d.withDefinition("/v1/definitions", "fine"), d.withDefinition("/v1/map?k=1", null)],
  logTicks: d.ticks("log", 1, 37), linTicks: d.ticks("linear", 3, 97), oneTick: d.ticks("log", 5, 5),
  live: [d.isLive(42), d.isLive(180), d.isLive(181), d.isLive(NaN)],
  latest: [d.latestText("2024-06-01T10:07:00Z", 42.5), d.latestText("2014-04-30T23:59:00Z", 3.8e8)],
  merc: [d.mercY(0), d.mercY(85.0511287798), d.mercY(89), d.latOfMercY(d.mercY(40.758))],
  tiles: [d.tilesFor({lat: 40.758, lng: -73.9855, z: 12}, 800, 600), d.tilesFor({lat: 40.758, lng: -73.9855, z: 12.4}, 800, 600),
    d.tilesFor({lat: -33.9, lng: 179.99, z: 5.6}, 640, 480)],
  texts: [d.featureText(2, 16, "count"), d.featureText(0, 1, undefined), d.featureText(2, 16, "max"), d.featureText(0, 1, "max"), d.featureText(1, 8, "minutes"), d.featureText(3, 1, "minutes")],
  tileURL: d.tileURL("https://t.example/{z}/{x}/{y}.png?zoom={z}", {z: 3, x: 1, y: 2}),
  waiting: (() => {
    const fc = {minute: "2024-06-01T10:07:00Z", event_time: "2024-06-01T10:07:48.250Z", lateness_seconds: 30, riders: 16, rate: 20, rate_measured: true, eta_seconds: 2.0875};
    return [d.waitingText(null, 0) === d.waitingText(null, 99) && d.waitingText(null, 0).startsWith("waiting for the first minute to close: ") ? "WAITING" : d.waitingText(null, 0),
      d.waitingText({...fc, eta_seconds: 41.75, rate: 1, rate_measured: false}, 0), d.waitingText({...fc, eta_seconds: 41.75, rate: 1}, 10.2),
      d.waitingText(fc, 0), d.waitingText(fc, 1.7), d.waitingText({...fc, eta_seconds: 0}, 0),
      d.waitingText({...fc, eta_seconds: 150, rate: 0.5}, 0), d.waitingText({...fc, eta_seconds: null, rate: 0}, 0),
      d.waitingText({...fc, event_time: null, eta_seconds: null, rate: 1, rate_measured: false}, 0),
      d.waitingText({...fc, minute: null, event_time: null, eta_seconds: null, rate: 1, rate_measured: false, riders: 4}, 0),
      d.waitingText({...fc, minute: null, eta_seconds: null}, 0)];
  })(),
});
</script></body></html>`)
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	dom := string(chromium(t, ts.URL+"/selftest", "--dump-dom"))
	m := regexp.MustCompile(`<pre id="out">(.*)</pre>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no output; DOM:\n%s", dom)
	}
	var got struct {
		Ages, Views                 []string
		Bad                         string
		Res                         []int
		WithDef                     []string
		LogTicks, LinTicks, OneTick []int
		Live                        []bool
		Latest                      []string
		Merc                        []float64
		Tiles                       [][]jsTile
		TileURL                     string
		Waiting                     []string
		Texts                       []string
	}
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &got); err != nil {
		t.Fatalf("%v: %s", err, m[1])
	}
	wantAges := []string{"0 s ago", "12 s ago", "59 s ago", "1 min ago", "2 min ago", "59 min ago", "1 h ago", "2 h ago", "47 h ago", "2 d ago", "4 d ago", "2 y ago", "10 y ago", "in 5 s", "in 2 h"}
	if fmt.Sprint(got.Ages) != fmt.Sprint(wantAges) {
		t.Errorf("ages:\n got %q\nwant %q", got.Ages, wantAges)
	}
	wantViews := []string{"", "?definition=fine_2&product=6f1c0a5e-2d4b-4c1e-9a7f-0b1d2c3e4f50&k=2&w=16&scale=log&minute=2014-04-02T18:41:00Z&cell=882a100d65fffff&at=40.75800,-73.98550,12.50"}
	if fmt.Sprint(got.Views) != fmt.Sprint(wantViews) {
		t.Errorf("views do not round-trip:\n got %q\nwant %q", got.Views, wantViews)
	}
	if got.Bad != "?w=4" {
		t.Errorf("a URL with a bad k, scale, centre and definition name keeps %q, want only ?w=4", got.Bad)
	}
	if fmt.Sprint(got.Res) != "[8 7 15 15 -1 -1 -1]" {
		t.Errorf("cellRes: %v, want [8 7 15 15 -1 -1 -1]", got.Res)
	}
	if want := []string{"/v1/map?k=1&definition=fine", "/v1/minutes?definition=fine", "/v1/definitions", "/v1/map?k=1"}; fmt.Sprint(got.WithDef) != fmt.Sprint(want) {
		t.Errorf("withDefinition:\n got %q\nwant %q", got.WithDef, want)
	}
	if fmt.Sprint(got.LogTicks) != "[1 2 5 10 20 37]" || fmt.Sprint(got.LinTicks) != "[3 20 40 60 80 97]" || fmt.Sprint(got.OneTick) != "[5]" {
		t.Errorf("ticks: log %v, linear %v, one value %v", got.LogTicks, got.LinTicks, got.OneTick)
	}
	if fmt.Sprint(got.Live) != "[true true false false]" {
		t.Errorf("isLive(42, 180, 181, NaN) = %v: live is a latest minute at most 3 min old", got.Live)
	}
	wantLatest := []string{"latest minute 10:07 UTC, 42 s ago · live", "latest minute 2014-04-30 23:59 UTC, 12 y ago · replay"}
	if fmt.Sprint(got.Latest) != fmt.Sprint(wantLatest) {
		t.Errorf("latest:\n got %q\nwant %q", got.Latest, wantLatest)
	}
	if len(got.Merc) != 4 || math.Abs(got.Merc[0]) > 1e-9 || math.Abs(got.Merc[1]-180) > 1e-6 || math.Abs(got.Merc[2]-180) > 1e-6 || math.Abs(got.Merc[3]-40.758) > 1e-9 {
		t.Errorf("mercY(0, 85.0511, 89 (clamped)), latOfMercY(mercY(40.758)) = %v, want [0 180 180 40.758]", got.Merc)
	}
	if len(got.Tiles) != 3 {
		t.Fatalf("tiles: %v", got.Tiles)
	}
	checkTiles(t, got.Tiles[0], 40.758, -73.9855, 12, 800, 600)
	checkTiles(t, got.Tiles[1], 40.758, -73.9855, 12.4, 800, 600)
	checkTiles(t, got.Tiles[2], -33.9, 179.99, 5.6, 640, 480) // across the antimeridian
	if got.TileURL != "https://t.example/3/1/2.png?zoom=3" {
		t.Errorf("tileURL: %q", got.TileURL)
	}
	wantTexts := []string{"riders within 2 rings over the last 16 minutes", "riders in the cell in the minute",
		"riders within 2 rings in the busiest of the last 16 minutes", "riders in the cell in the minute",
		"minutes of the last 8 with riders within 1 ring", "whether riders were within 3 rings in the minute"}
	if strings.Join(got.Texts, "\n") != strings.Join(wantTexts, "\n") {
		t.Errorf("featureText (count, max, minutes):\n got %q\nwant %q", got.Texts, wantTexts)
	}
	wantWaiting := []string{
		"WAITING", // without first_close, whatever the time
		"the first minute (10:07 UTC) closes in about 42 s · event time 10:07:48 UTC · lateness 30 s", // pace assumed
		"the first minute (10:07 UTC) closes in about 32 s · event time 10:07:48 UTC, real time · lateness 30 s",
		"the first minute (10:07 UTC) closes in about 2 s · event time 10:07:48 UTC, 20× real time · lateness 30 s",
		"the first minute (10:07 UTC) is due to close now · event time 10:07:48 UTC, 20× real time · lateness 30 s",
		"the first minute (10:07 UTC) is due to close now · event time 10:07:48 UTC, 20× real time · lateness 30 s",
		"the first minute (10:07 UTC) closes in about 3 min · event time 10:07:48 UTC, 0.5× real time · lateness 30 s",
		"the first minute (10:07 UTC) closes once event time reaches 10:08:30 UTC (lateness 30 s); event time (10:07:48 UTC) is not advancing",
		"waiting for event time: fewer than 16 riders seen; the first minute (10:07 UTC) closes once event time reaches 10:08:30 UTC (lateness 30 s)",
		"waiting for event time: fewer than 4 riders seen",
		"waiting for the first counted event · event time 10:07:48 UTC",
	}
	if strings.Join(got.Waiting, "\n") != strings.Join(wantWaiting, "\n") {
		t.Errorf("waitingText:\n got %q\nwant %q", got.Waiting, wantWaiting)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPageControlsInChromium drives the real page inside a same-origin
// iframe (headless Chromium cannot click from the command line): step to
// the next minute, select a cell from the top table, step back, play to
// the end, go live. After each, the view in the URL and the status must
// follow.
func TestPageControlsInChromium(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	mux := http.NewServeMux()
	mux.Handle("/", f.srv)
	start := "/?product=" + fixProducts[0] + "&k=1&w=2&scale=linear&minute=2024-05-18T02:40:00Z"
	mux.HandleFunc("/drive", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><body><iframe id="f" src="`+start+`" width="1200" height="800"></iframe><pre id="out"></pre><script>
const out = [], fr = document.getElementById("f");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond) { for (let i = 0; i < 100 && !cond(); i++) await sleep(50); }
function snap(what) {
  const d = fr.contentDocument;
  out.push({ what, url: d.body.dataset.url, status: d.getElementById("status").textContent,
    sel: (d.querySelector("#sel polygon") || {dataset: {}}).dataset.h3 || "", play: d.getElementById("play").textContent });
}
(async () => {
  await until(() => fr.contentDocument && fr.contentDocument.body && fr.contentDocument.body.dataset.ready === "1");
  const d = fr.contentDocument, $ = (id) => d.getElementById(id);
  snap("load");
  $("next").click(); await until(() => d.body.dataset.url.includes("02:41")); snap("next");
  const row = d.querySelectorAll("#top tbody tr")[2]; row.click(); await until(() => d.body.dataset.url.includes("cell=")); snap("cell " + row.dataset.h3);
  $("prev").click(); await until(() => d.body.dataset.url.includes("02:40")); snap("prev");
  $("play").click(); await sleep(100); snap("playing");
  await until(() => $("play").textContent === "▶"); snap("played");
  $("live").click(); await until(() => !d.body.dataset.url.includes("minute=")); snap("live");
  document.getElementById("out").textContent = JSON.stringify(out);
})();
</script></body></html>`)
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	dom := string(chromium(t, ts.URL+"/drive", "--dump-dom"))
	m := regexp.MustCompile(`<pre id="out">(.*)</pre>`).FindStringSubmatch(dom)
	if m == nil || m[1] == "" {
		t.Fatalf("the driver did not finish; DOM:\n%.3000s", dom)
	}
	var steps []struct{ What, URL, Status, Sel, Play string }
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &steps); err != nil {
		t.Fatalf("%v: %s", err, m[1])
	}
	if len(steps) != 7 {
		t.Fatalf("steps %+v", steps)
	}
	base := "?product=" + fixProducts[0] + "&k=1&w=2&scale=linear"
	cell := strings.TrimPrefix(steps[2].What, "cell ")
	want := []struct{ url, status, sel, play string }{
		{base + "&minute=2024-05-18T02:40:00Z&at=", "02:40 UTC (1 min ago) · k=1 w=2", "", "▶"},
		{base + "&minute=2024-05-18T02:41:00Z&at=", "02:41 UTC (12 s ago) · k=1 w=2", "", "▶"},
		{base + "&minute=2024-05-18T02:41:00Z&cell=" + cell + "&at=", "02:41 UTC", cell, "▶"},
		{base + "&minute=2024-05-18T02:40:00Z&cell=" + cell + "&at=", "02:40 UTC", cell, "▶"},
		{base + "&minute=2024-05-18T02:41:00Z&cell=" + cell + "&at=", "02:41 UTC", cell, "❚❚"}, // one step on, still playing
		{base + "&minute=2024-05-18T02:41:00Z&cell=" + cell + "&at=", "02:41 UTC", cell, "▶"},
		{base + "&cell=" + cell + "&at=", "02:41 UTC (12 s ago) · live", cell, "▶"},
	}
	for i, w := range want {
		s := steps[i]
		if !strings.HasPrefix(s.URL, w.url) || !strings.Contains(s.Status, w.status) || s.Sel != w.sel || s.Play != w.play {
			t.Errorf("after %q: url %q status %q selected %q play %q\nwant url %q… status …%q… selected %q play %q", s.What, s.URL, s.Status, s.Sel, s.Play, w.url, w.status, w.sel, w.play)
		}
	}
}

// TestPageWithToken: behind a token file the page itself is open and reads
// the API with the token of its link's #token=…, which it then drops from
// the address; without a token it says what the API said and shows the
// token field.
func TestPageWithToken(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	cfg := DefaultConfig()
	cfg.TokenFile = writeFile(t, "tokens", tokA+"\n")
	g, err := NewGuard(cfg, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(g.Handler(f.srv))
	defer ts.Close()
	p := loadPage(t, ts.URL+"/#token="+tokA)
	if strings.Contains(p.dom, tokA) || strings.Contains(p.url(), "token") {
		t.Errorf("the token is still in the page's address: %q", p.url())
	}
	p.find(`<form id="tokenform" hidden="">`)
	p = page{t, string(chromium(t, ts.URL+"/", "--dump-dom"))}
	if strings.Contains(p.dom, `data-ready="1"`) || !strings.Contains(p.text("status"), "a bearer token is needed") {
		t.Errorf("without a token: status %q", p.text("status"))
	}
	p.find(`<form id="tokenform">`)
}

// TestPageBeforeFirstMinute: on a store with no closed minute yet the page
// says when the first should close, and claims neither live nor replay.
// A standalone server knows neither the run's lateness nor its event time:
// the default lateness's estimate. A server in the run's process
// (Progress) knows both: the page counts down the server's estimate.
func TestPageBeforeFirstMinute(t *testing.T) {
	st := emptyStore(t)
	check := func(t *testing.T, url string, status *regexp.Regexp) page {
		t.Helper()
		p := page{t, string(chromium(t, url+"/", "--dump-dom"))}
		s := p.text("status")
		if !status.MatchString(s) {
			t.Errorf("status %q, want %s", s, status)
		}
		if e := p.text("empty"); e != s {
			t.Errorf("the map says %q, the status %q", e, s)
		}
		if s := p.text("latest"); s != "no closed minute yet" {
			t.Errorf("latest minute %q", s)
		}
		p.find(`<button id="live" type="button" title="follow the latest closed minute">live</button>`) // not on
		return p
	}
	t.Run("standalone", func(t *testing.T) {
		const want = "waiting for the first minute to close: a minute closes once event time passes its end plus the lateness; with the default lateness (30 s), about 90 s after a live run starts (an estimate: this server does not see the run)"
		check(t, serveStore(t, DefaultConfig(), st), regexp.MustCompile(`^`+regexp.QuoteMeta(want)+`$`))
	})
	t.Run("in the run", func(t *testing.T) {
		// First minute 10:07, lateness 30 s: it closes at event time
		// 10:08:30. The server saw T at 10:07:00, and 10 s later (its
		// fake clock) at 10:07:20: event time runs at 2x, 70 s of it are
		// left, 35 s. Chromium's virtual time then runs ~5 s, and the page
		// counts down.
		run := &fakeRun{first: runMinute, t: runClose - 90_000, wall: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		cfg := DefaultConfig()
		cfg.Progress = run.progress()
		url := serveStore(t, cfg, st)
		res, err := http.Get(url + "/v1/minutes")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		run.set(runClose-70_000, run.wall.Add(10*time.Second))
		p := check(t, url, regexp.MustCompile(`^the first minute \(10:07 UTC\) closes in about \d+ s · event time 10:07:20 UTC, 2\.0× real time · lateness 30 s$`))
		if n, _ := strconv.Atoi(p.find(`closes in about (\d+) s`)[1]); n < 28 || n > 34 {
			t.Errorf("%d s to go, want 35 s counted down by the ~5 s of virtual time", n)
		}
	})
}
