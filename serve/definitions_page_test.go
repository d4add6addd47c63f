package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/store"
)

// coarseDefinition is the second definition of the picker's test: another
// resolution, windows the fixture's definition does not all have, and
// another aggregate (the picker names it).
var coarseDefinition = feature.Definition{Resolution: 7, Rings: []int{0, 1}, Windows: []int{1, 3}, Aggregate: "max"}

// newCoarseStore writes the fixture's two minutes in coarseDefinition:
// both products in the 19 cells within 2 rings of the resolution-7 cell
// holding the fixture's centre. It returns the store and that cell.
func newCoarseStore(t *testing.T) (*store.Store, uint64) {
	t.Helper()
	sc := store.DefaultConfig()
	sc.Dir = t.TempDir()
	sc.Sync = false
	sc.MemTableBytes, sc.CacheBytes = 1<<20, 1<<20
	sc.Definition = coarseDefinition
	st, err := store.Open(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	center, _ := h3.LatLngToCell(h3.NewLatLng(40.7580, -73.9855), coarseDefinition.Resolution)
	rings, _ := h3.GridDiskDistances(center, 2)
	names := encode.NewProducts()
	n := coarseDefinition.NumFeatures()
	for m := int64(fixMinute); m < fixMinute+2; m++ {
		var b encode.Batch
		b.Names = names
		b.Reset(m, n)
		for p := range fixProducts {
			code, _ := names.Code(fixUUID(p))
			for dist, ring := range rings {
				for _, c := range ring {
					b.Cells = append(b.Cells, uint64(c))
					b.Products = append(b.Products, code)
					for j := range n {
						b.Features = append(b.Features, int32((3-dist)*(j+1)+p))
					}
				}
			}
		}
		if err := st.Write(context.Background(), &b); err != nil {
			t.Fatal(err)
		}
		if err := st.CloseMinute(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	return st, uint64(center)
}

// definitionsServer is an httptest server in front of a Definitions
// handler that records the request URLs it sees (in order) and that the
// page under test can drive: /test/promote makes "coarse" active,
// /test/one swaps in a deployment of one definition, /test/mark?WHAT
// records a marker between the page's requests.
type definitionsServer struct {
	*httptest.Server
	mu     sync.Mutex
	urls   []string
	active string
	h      http.Handler
	two    http.Handler // the two definitions, unrecorded
}

func newDefinitionsServer(t *testing.T, drive string) *definitionsServer {
	t.Helper()
	f := newFixture(t, DefaultConfig())
	coarse, _ := newCoarseStore(t)
	cfg := DefaultConfig()
	cfg.Now = func() time.Time { return fixNow }
	cfg.PageRefresh = time.Second // the promotion shows at the next refresh
	s := &definitionsServer{active: "base"}
	two, err := NewDefinitions(cfg, []string{"base", "coarse"}, []Reader{f.st, coarse}, func() string {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.active
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	one, err := NewDefinitions(cfg, []string{"base"}, []Reader{f.st}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.h, s.two = two, two
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.urls = append(s.urls, r.URL.RequestURI())
		switch r.URL.Path {
		case "/test/promote":
			s.active = "coarse"
		case "/test/one":
			s.h = one
		}
		h := s.h
		s.mu.Unlock()
		switch {
		case r.URL.Path == "/drive":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, drive)
		case strings.HasPrefix(r.URL.Path, "/test/"):
			w.WriteHeader(http.StatusNoContent)
		default:
			h.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// requests are the recorded request URLs from marker from to marker to
// ("": the start, the end) whose path starts with prefix.
func (s *definitionsServer) requests(from, to, prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	on := from == ""
	for _, u := range s.urls {
		switch {
		case u == from:
			on = true
		case to != "" && u == to:
			return out
		case on && strings.HasPrefix(u, prefix):
			out = append(out, u)
		}
	}
	return out
}

// TestPageDefinitionPicker drives the page over a deployment of two
// definitions, "base" (the fixture, resolution 8, active) and "coarse"
// (resolution 7, windows 1 and 3), in one Chromium run: the picker lists
// "active (base)" and both by name and spec; choosing coarse sends
// definition=coarse with every map and cell request and puts it in the
// URL, draws resolution-7 hexagons, picks another w (2 is not coarse's),
// and re-picks the selected cell at its place at resolution 7; choosing
// "active" again drops definition= and goes back to resolution 8; a
// promotion of coarse shows at the next refresh ("active (coarse)", its
// hexagons, the status naming it); over a deployment of one definition
// the picker is hidden.
func TestPageDefinitionPicker(t *testing.T) {
	p0 := fixProducts[0]
	c8, _ := h3.LatLngToCell(h3.NewLatLng(40.7580, -73.9855), 8) // the fixture's centre
	ll, _ := c8.LatLng()
	c7, _ := h3.LatLngToCell(ll, 7) // the cell there at coarse's resolution
	center, center7 := c8.String(), c7.String()
	query := "?product=" + p0 + "&k=1&w=2&scale=linear&cell=" + center
	s := newDefinitionsServer(t, `<!doctype html><html><body><iframe id="f" width="1200" height="800"></iframe><pre id="out"></pre><script>
const out = [], fr = document.getElementById("f");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond) { for (let i = 0; i < 80 && !cond(); i++) await sleep(25); }
const doc = () => fr.contentDocument, url = () => doc().body.dataset.url || "";
const status = () => doc().getElementById("status").textContent;
const res = (h) => fr.contentWindow.demandpipe.cellRes(h);
const cellOf = () => (/cell=([0-9a-f]+)/.exec(url()) || [])[1] || "";
// The selected cell's features are drawn (the page's last request of a step).
const detailOf = (r) => cellOf() && res(cellOf()) === r && (doc().querySelector("#detail code") || {}).textContent === cellOf();
function snap(what) {
  const d = doc(), sel = d.getElementById("definition"), polys = [...d.querySelectorAll("#cells polygon")];
  out.push({ what, url: url(), status: status(), hidden: d.getElementById("definition-label").hidden, chosen: sel.value,
    options: [...sel.options].map((o) => ({ value: o.value, text: o.textContent, title: o.title })),
    cells: polys.length, res: [...new Set(polys.map((p) => res(p.dataset.h3)))],
    sel: (d.querySelector("#sel polygon") || {dataset: {}}).dataset.h3 || "" });
}
function choose(v) { const s = doc().getElementById("definition"); s.value = v; s.dispatchEvent(new Event("change")); }
const load = (src) => new Promise((r) => { fr.onload = r; fr.src = src; });
(async () => {
  await load(`+strconv.Quote("/"+query)+`);
  await until(() => doc().body.dataset.ready === "1" && detailOf(8));
  snap("load");
  await fetch("/test/mark?coarse");
  choose("coarse");
  await until(() => url().includes("definition=coarse") && status().includes("definition coarse") && detailOf(7));
  snap("coarse");
  await fetch("/test/mark?active");
  choose("");
  await until(() => !url().includes("definition=") && status().includes("definition base (active)") && detailOf(8));
  snap("active");
  await fetch("/test/promote");
  await until(() => status().includes("definition coarse (active)") && detailOf(7));
  snap("promoted");
  await fetch("/test/one");
  await load("/");
  await until(() => doc().body.dataset.ready === "1");
  snap("one");
  document.getElementById("out").textContent = JSON.stringify(out);
})();
</script></body></html>`)
	dom := string(chromium(t, s.URL+"/drive", "--dump-dom"))
	m := regexp.MustCompile(`<pre id="out">(.*)</pre>`).FindStringSubmatch(dom)
	if m == nil || m[1] == "" {
		t.Fatalf("the driver did not finish; DOM:\n%.3000s", dom)
	}
	type option struct{ Value, Text, Title string }
	var steps []struct {
		What, URL, Status, Chosen, Sel string
		Hidden                         bool
		Options                        []option
		Cells                          int
		Res                            []int
	}
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &steps); err != nil {
		t.Fatalf("%v: %s", err, m[1])
	}
	if len(steps) != 5 {
		t.Fatalf("steps %+v", steps)
	}
	load, coarse, active, promoted, one := steps[0], steps[1], steps[2], steps[3], steps[4]

	// The picker: "active (base)", then each by name and spec.
	wantOptions := []option{
		{"", "active (base)", ""},
		{"base", "base · res 8 · active", "res 8 · rings k=0,1,2,3,4,5,10,15,20 · windows w=1,2,4,8,16,32 · aggregate count · active · minutes 2024-05-18 02:40 UTC to 2024-05-18 02:41 UTC"},
		{"coarse", "coarse · res 7 · max", "res 7 · rings k=0,1 · windows w=1,3 · aggregate max · dark · minutes 2024-05-18 02:40 UTC to 2024-05-18 02:41 UTC"},
	}
	if load.Hidden || load.Chosen != "" || fmt.Sprint(load.Options) != fmt.Sprint(wantOptions) {
		t.Errorf("picker at load: hidden %v, chosen %q, options\n %q\nwant\n %q", load.Hidden, load.Chosen, load.Options, wantOptions)
	}
	if !strings.HasPrefix(load.URL, query+"&at=") || fmt.Sprint(load.Res) != "[8]" || load.Sel != center ||
		!strings.HasSuffix(load.Status, " · definition base (active)") {
		t.Errorf("at load: url %q, resolutions %v, selected %q, status %q", load.URL, load.Res, load.Sel, load.Status)
	}

	// Coarse: in the URL, resolution 7 everywhere, the cell re-picked at
	// its place, w chosen again (the server's suggestion for coarse).
	rec := httptest.NewRecorder()
	s.two.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/overview?definition=coarse&product="+p0, nil))
	var o struct{ Suggested struct{ K, W int } }
	if err := json.Unmarshal(rec.Body.Bytes(), &o); err != nil {
		t.Fatalf("coarse's overview: %v: %s", err, rec.Body)
	}
	w7 := o.Suggested.W
	if want := "?definition=coarse&product=" + p0 + "&k=1&w=" + strconv.Itoa(w7) + "&scale=linear&cell=" + center7 + "&at="; !strings.HasPrefix(coarse.URL, want) {
		t.Errorf("after choosing coarse, url %q, want %q…", coarse.URL, want)
	}
	if coarse.Chosen != "coarse" || coarse.Cells != 19 || fmt.Sprint(coarse.Res) != "[7]" || coarse.Sel != center7 ||
		!strings.HasSuffix(coarse.Status, " · definition coarse") {
		t.Errorf("coarse: chosen %q, %d hexagons of resolutions %v, selected %q (want %s), status %q", coarse.Chosen, coarse.Cells, coarse.Res, coarse.Sel, center7, coarse.Status)
	}
	// The server saw it: every map and cell request after the choice names
	// coarse, and so did the page's reads of its spec, products and minutes.
	for _, prefix := range []string{"/v1/map?", "/v1/features?", "/v1/definition?", "/v1/products?", "/v1/minutes?", "/v1/overview?"} {
		got := s.requests("/test/mark?coarse", "/test/mark?active", prefix)
		if len(got) == 0 || !strings.HasSuffix(got[len(got)-1], "definition=coarse") {
			t.Errorf("after choosing coarse, %s requests: %q, want them to name coarse", prefix, got)
		}
		if prefix == "/v1/map?" || prefix == "/v1/features?" {
			for _, u := range got {
				if !strings.Contains(u, "definition=coarse") {
					t.Errorf("after choosing coarse, %s", u)
				}
			}
		}
	}
	for _, u := range s.requests("", "/test/mark?coarse", "/v1/") {
		if strings.Contains(u, "definition=") {
			t.Errorf("before choosing a definition, %s", u)
		}
	}

	// Active again: no definition= anywhere, resolution 8.
	if strings.Contains(active.URL, "definition=") || active.Chosen != "" || fmt.Sprint(active.Res) != "[8]" || cellResolution(active.Sel) != 8 {
		t.Errorf("back to active: url %q, chosen %q, resolutions %v, selected %q", active.URL, active.Chosen, active.Res, active.Sel)
	}
	for _, u := range s.requests("/test/mark?active", "", "/v1/map") {
		if strings.Contains(u, "definition=") {
			t.Errorf("following the active definition, %s", u)
		}
	}

	// Promoted: the active choice follows it at the next refresh.
	if promoted.Options[0].Text != "active (coarse)" || promoted.Chosen != "" || strings.Contains(promoted.URL, "definition=") ||
		fmt.Sprint(promoted.Res) != "[7]" || cellResolution(promoted.Sel) != 7 || !strings.HasSuffix(promoted.Status, " · definition coarse (active)") {
		t.Errorf("after promoting coarse: first option %q, chosen %q, url %q, resolutions %v, selected %q, status %q",
			promoted.Options[0].Text, promoted.Chosen, promoted.URL, promoted.Res, promoted.Sel, promoted.Status)
	}

	// One definition: no picker, no definition in the status.
	if !one.Hidden || one.Cells == 0 || strings.Contains(one.Status, "definition") || strings.Contains(one.URL, "definition=") {
		t.Errorf("one definition: picker hidden %v, %d hexagons, status %q, url %q", one.Hidden, one.Cells, one.Status, one.URL)
	}
}

// cellResolution is the resolution of a cell in hex, -1 if it is none.
func cellResolution(s string) int {
	c := h3.CellFromString(s)
	if !c.IsValid() {
		return -1
	}
	return c.Resolution()
}

// TestDefinitionsPageForAnyName: the page is the same for every
// definition, so a link naming one the deployment does not serve (any
// more) still opens it (the page then says so and shows the active one);
// the API still refuses the name.
func TestDefinitionsPageForAnyName(t *testing.T) {
	t.Parallel()
	def := feature.Definition{Resolution: 8, Rings: []int{0, 1}, Windows: []int{1}}
	d, err := NewDefinitions(DefaultConfig(), []string{"a", "b"}, []Reader{&latestOnly{def: def, latest: 1000}, &latestOnly{def: def, latest: 1000}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/?definition=gone&k=1": 200, "/assets/app.js?definition=gone": 200, "/v1/definition?definition=gone": 404} {
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s: %d %.200s, want %d", path, rec.Code, rec.Body, want)
		}
	}
}
