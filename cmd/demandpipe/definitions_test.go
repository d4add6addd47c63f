package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/client"
	"github.com/demandpipe/demandpipe/definitions"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/cqltest"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/job"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/sink/cassandra"
	"github.com/demandpipe/demandpipe/store"
)

// TestDefinitionsFile (issue 23): run -definitions=FILE writes each
// definition's rows, the first to the -sink file and the others beside it
// under their names, each byte for byte what a run of that definition
// alone writes with the shorthand flags; the shorthand flags beside the
// file, a store sink and stdout are refused with what to do.
func TestDefinitionsFile(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	dir := t.TempDir()
	events := genEvents(t, dir, 4_000)
	defs := writeDefinitions(t, dir, `
- name: base
  resolution: 8
  rings: [0, 1, 2, 3, 5]
  windows: [1, 2, 4, 8, 16]
- name: fine
  resolution: 9
  rings: [0, 2, 7]
  windows: [3, 5, 1]
- name: peak
  resolution: 8
  rings: [0, 2]
  windows: [4, 16]
  aggregate: max
`)
	run := func(out string, args ...string) {
		t.Helper()
		if err := runCommand(append([]string{"-source=file:" + events, "-sink=ndjson:" + out, "-progress=never", "-log.level=warn"}, args...)); err != nil {
			t.Fatal(err)
		}
	}
	both := filepath.Join(dir, "rows.ndjson")
	run(both, "-definitions="+defs)
	// The first definition's file equals its run alone as the pipeline's
	// tests show for every definition; here the one written beside it.
	run(filepath.Join(dir, "fine.ndjson"), "-h3.resolution=9", "-kring.rings=0,2,7", "-windows.minutes=3,5,1")
	run(filepath.Join(dir, "peak.ndjson"), "-kring.rings=0,2", "-windows.minutes=4,16", "-windows.aggregate=max")
	for got, want := range map[string]string{"rows.fine.ndjson": "fine.ndjson", "rows.peak.ndjson": "peak.ndjson"} {
		g, err := os.ReadFile(filepath.Join(dir, got))
		if err != nil {
			t.Fatal(err)
		}
		w, _ := os.ReadFile(filepath.Join(dir, want))
		if len(w) == 0 || !bytes.Equal(g, w) {
			t.Errorf("%s (%d bytes) differs from the run of its definition alone, %s (%d bytes)", got, len(g), want, len(w))
		}
	}
	// Into stores: the first definition's in DIR, each other's in DIR.NAME,
	// each equal to a store written by its definition alone.
	st := definitionsStore(t, dir, events, defs)
	alone := filepath.Join(dir, "fine-alone")
	if err := runCommand(storeArgs("file:"+events, alone, "-h3.resolution=9", "-kring.rings=0,2,7", "-windows.minutes=3,5,1")); err != nil {
		t.Fatal(err)
	}
	compareStores(t, st+".fine", alone)

	src := "-source=file:" + events
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{src, "-sink=ndjson:" + both, "-h3.resolution=9"}, "drop -h3.resolution or put it in the file"},
		{[]string{src, "-sink=ndjson:" + both, "-windows.aggregate=max"}, "drop -windows.aggregate or put it in the file"},
		{[]string{src, "-sink=ndjson:-"}, "stdout holds one definition's rows"},
		// definition fine would write rows.fine.ndjson, the input here
		{[]string{"-source=file:" + filepath.Join(dir, "rows.fine.ndjson"), "-sink=ndjson:" + both}, "name the same file"},
	} {
		err := runCommand(append([]string{"-definitions=" + defs, "-progress=never"}, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// TestPromoteUnderLoad (issue 23): a store of two definitions served, read
// at ~200 requests a second by the Go client (GET and batch, with and
// without naming a definition) while `definitions promote` switches the
// active one back and forth: every answer is wholly one definition's (its
// features are exactly that definition's rings and windows), answers that
// name a definition always get it, both definitions answered unnamed
// requests, and no answer is of another minute than the store's latest.
func TestPromoteUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	events := genEvents(t, dir, 4_000)
	defs := writeDefinitions(t, dir, "- name: base\n  resolution: 8\n  rings: [0, 1, 2, 3, 5]\n  windows: [1, 2, 4, 8, 16]\n- name: fine\n  resolution: 9\n  rings: [0, 2, 7]\n  windows: [3, 5, 1]\n")
	st := definitionsStore(t, dir, events, defs)
	reg := job.NewRegistry()
	stores, f, err := job.OpenDefinitionStores(st, store.DefaultConfig(), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range stores {
			s.Close()
		}
	}()
	w := definitions.NewWatcher(st, f)
	sv := &job.Served{Names: f.Definitions, Readers: []serve.Reader{stores[0], stores[1]}, Active: func() string { return w.Current().Active }}
	srv, err := job.StartServer("127.0.0.1:0", serve.DefaultConfig(), sv, reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(time.Second)
	latest, _ := stores[0].LatestMinute()
	if l1, _ := stores[1].LatestMinute(); l1 != latest {
		t.Fatalf("the definitions' latest minutes differ: %d and %d", latest, l1)
	}
	product := stores[0].Products()[0].String()
	// Points, not cells: a cell names one resolution, a point any.
	pt := busiestPoint(t, stores[0], latest, product)
	shapes := map[string]string{"base": "k0,1,2,3,5;w1,2,4,8,16", "fine": "k0,2,7;w3,5,1"}
	shape := func(r client.Row) string {
		var ks, ws []string
		for _, ft := range r.Features {
			if k := strconv.Itoa(ft.K); !slices.Contains(ks, k) {
				ks = append(ks, k)
			}
			if w := strconv.Itoa(ft.W); !slices.Contains(ws, w) {
				ws = append(ws, w)
			}
		}
		if len(r.Features) != len(ks)*len(ws) {
			return "mixed"
		}
		return "k" + strings.Join(ks, ",") + ";w" + strings.Join(ws, ",")
	}
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen := map[string]int{}
	var bad []string
	var wg sync.WaitGroup
	for worker := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				q := client.Query{Product: product}
				if i%3 == 1 {
					q.Definition = []string{"base", "fine"}[worker%2]
				}
				var rows []client.Row
				var err error // this worker's
				if i%2 == 0 {
					r, err := c.GetAt(ctx, pt, q)
					if err != nil {
						if ctx.Err() == nil {
							t.Error(err)
						}
						break
					}
					rows = []client.Row{r}
				} else if rows, err = c.Batch(ctx, q, nil, []client.LatLng{pt, {Lat: 40.75, Lng: -73.98}}); err != nil {
					if ctx.Err() == nil {
						t.Error(err)
					}
					break
				}
				mu.Lock()
				for _, r := range rows {
					got := shape(r)
					switch {
					case got != shapes["base"] && got != shapes["fine"]:
						bad = append(bad, "an answer of no one definition: "+got)
					case q.Definition != "" && got != shapes[q.Definition]:
						bad = append(bad, "asked for "+q.Definition+", got "+got)
					case !r.Minute.Equal(encode.MinuteStart(latest)):
						bad = append(bad, "minute "+r.Minute.String())
					}
					if q.Definition == "" {
						seen[got]++
					}
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond) // 4 workers: ~200 requests a second
			}
		})
	}
	for i := 0; ctx.Err() == nil; i++ {
		if err := definitionsCommand([]string{"promote", "-store=" + st, []string{"fine", "base"}[i%2]}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("%d bad answers, first: %s", len(bad), bad[0])
	}
	if seen[shapes["base"]] == 0 || seen[shapes["fine"]] == 0 {
		t.Fatalf("unnamed requests answered by %v: the promotions did not reach the server", seen)
	}
	t.Logf("unnamed requests answered %v", seen)
	active, list, err := c.Definitions(context.Background())
	if err != nil || len(list) != 2 || list[0].Name != "base" || list[1].Resolution != 9 || list[0].LastMinute == "" || list[0].Aggregate != "count" {
		t.Fatalf("GET /v1/definitions: %v %+v %v", active, list, err)
	}
	if st := map[string]string{list[0].Name: list[0].Status, list[1].Name: list[1].Status}; st[active] != "active" || len(st) != 2 {
		t.Errorf("statuses %v with %s active", st, active)
	}
}

// busiestPoint is the centre of a cell with a row in minute m for product.
func busiestPoint(t *testing.T, st *store.Store, m int64, product string) client.LatLng {
	t.Helper()
	u, ok := encode.ParseUUID([]byte(product))
	if !ok {
		t.Fatalf("product %q", product)
	}
	var cell uint64
	if err := st.Scan(m, u, func(c uint64, _ []int32) bool { cell = c; return false }); err != nil || cell == 0 {
		t.Fatalf("no row in minute %d: %v", m, err)
	}
	ll, err := h3.Cell(cell).LatLng()
	if err != nil {
		t.Fatal(err)
	}
	return client.LatLng{Lat: ll.Lat, Lng: ll.Lng}
}

// TestDefinitionsDiff: two definitions of one spec (a build run dark
// beside the one it replaces) match row for row and diff says so; two of
// different specs get a summary of each shared feature; a row changed in
// one of the same spec is found (definitions.Diff on readers).
// (Not parallel: it swaps os.Stdout.)
func TestDefinitionsDiff(t *testing.T) {
	if norace.Run(t) {
		return
	}
	dir := t.TempDir()
	events := genEvents(t, dir, 4_000)
	defs := writeDefinitions(t, dir, "- name: base\n  resolution: 8\n  rings: [0, 1, 2, 3, 5]\n  windows: [1, 2, 4, 8, 16]\n- name: again\n  resolution: 8\n  rings: [0, 1, 2, 3, 5]\n  windows: [1, 2, 4, 8, 16]\n- name: fine\n  resolution: 9\n  rings: [0, 2, 7]\n  windows: [3, 5, 1]\n"+
		"- name: peak\n  resolution: 8\n  rings: [0, 1, 2, 3, 5]\n  windows: [1, 2, 4, 8, 16]\n  aggregate: max\n")
	st := definitionsStore(t, dir, events, defs)
	out := string(captureStdout(t, func() error {
		return definitionsCommand([]string{"diff", "-store=" + st, "-minutes=0", "base", "again"})
	}))
	if !strings.Contains(out, "base and again: the same definition, and every row identical") {
		t.Errorf("same spec: %s", out)
	}
	out = string(captureStdout(t, func() error {
		return definitionsCommand([]string{"diff", "-store=" + st, "base", "fine"})
	}))
	// shared: k in {0, 2} x w = 1
	if !strings.Contains(out, "different definitions; 2 shared features") || strings.Count(out, "\n") != 4 {
		t.Errorf("different specs: %s", out)
	}
	// Another aggregate of the same rings and windows: every feature shared
	// by place, the report says they mean different things, and w = 1
	// (where max is the count) does not differ.
	out = string(captureStdout(t, func() error {
		return definitionsCommand([]string{"diff", "-store=" + st, "base", "peak"})
	}))
	if !strings.Contains(out, "different definitions; 25 shared features") || !strings.Contains(out, "base folds its windows by count, peak by max") ||
		!regexp.MustCompile(`\n +0 +1 +\d+ +0\.000 +0 +0 +0\n`).MatchString(out) || regexp.MustCompile(`\n +5 +16 +\d+ +0\.000 `).MatchString(out) {
		t.Errorf("another aggregate: %s", out)
	}
	stores, _, err := job.OpenDefinitionStores(st, store.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range stores {
			s.Close()
		}
	}()
	rep, err := definitions.Diff(stores[0], &oneRowOff{Reader: stores[1]}, 0)
	if err != nil || rep.Identical || !rep.SameSpec || !strings.Contains(rep.First, "cell") {
		t.Errorf("a changed row: %+v %v", rep, err)
	}
}

// oneRowOff is a reader whose first scanned row of each scan has its
// first feature one higher.
type oneRowOff struct{ serve.Reader }

func (o *oneRowOff) Scan(m int64, p encode.UUID, fn func(uint64, []int32) bool) error {
	first := true
	return o.Reader.Scan(m, p, func(c uint64, f []int32) bool {
		if first {
			f = slices.Clone(f)
			f[0]++
			first = false
		}
		return fn(c, f)
	})
}

// TestDefinitionAddedToAStore: a store run with one definition, run again
// with a definitions file that adds one: the added definition's store is
// filled from the first's count records at once (the log says so), listed
// in the definitions file and served.
func TestDefinitionAddedToAStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	events := genEvents(t, dir, 4_000)
	st := filepath.Join(dir, "st")
	if err := runCommand(storeArgs("file:"+events, st, smallDef...)); err != nil {
		t.Fatal(err)
	}
	defs := writeDefinitions(t, dir, "- name: default\n  resolution: 8\n  rings: [0, 1, 2, 3, 5]\n  windows: [1, 2, 4, 8, 16]\n- name: added\n  resolution: 8\n  rings: [0, 4]\n  windows: [2, 3]\n")
	_, stderr, done := runSubprocess(t, storeArgs("file:"+events, st, "-definitions="+defs))
	if err := <-done; err != nil || !strings.Contains(stderr.String(), "definition added: its history written from another definition's count records") {
		t.Fatalf("second run: %v\n%s", err, lastLines(stderr.String(), 8))
	}
	f, err := definitions.Load(st)
	if err != nil || !slices.Equal(f.Definitions, []string{"default", "added"}) || f.Active != "default" {
		t.Fatalf("definitions file: %+v %v", f, err)
	}
	c := store.DefaultConfig()
	c.Dir, c.ReadOnly = st+".added", true
	added, err := store.Open(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer added.Close()
	if ms := added.Minutes(nil); len(ms) == 0 || ms[0].Rows == 0 || added.Definition().String() != "res=8;rings=0,4;windows=2,3" {
		t.Fatalf("the added definition's store: %v minutes, definition %s", ms, added.Definition())
	}
}

// TestHistoryEqualsTheStoreAtThoseTimes (issue 23): point-in-time answers
// for queries spread over a replay (before its first closed minute, during,
// and after its end) equal what serve answers from the store the same run
// wrote, restricted to the minutes closed at each query's ts (a minute
// closes once event time is the lateness past its end): the same minute,
// the same row or zeros; in ts order, as NDJSON and CSV.
func TestHistoryEqualsTheStoreAtThoseTimes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	events := genEvents(t, dir, 4_000)
	st := filepath.Join(dir, "st")
	if err := runCommand(storeArgs("file:"+events, st, smallDef...)); err != nil {
		t.Fatal(err)
	}
	c := store.DefaultConfig()
	c.Dir, c.ReadOnly = st, true
	s, err := store.Open(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var closed []int64
	for _, mi := range s.Minutes(nil) {
		closed = append(closed, mi.Minute)
	}
	slices.Sort(closed)
	products := s.Products()
	rng := rand.New(rand.NewPCG(testsize.Seed(t), 7))
	start := encode.MinuteStart(closed[0]).UnixMilli()
	var csvText strings.Builder
	csvText.WriteString("ts,lat,lng,product\n")
	type query struct {
		ts       int64
		lat, lng float64
		product  encode.UUID
	}
	var qs []query
	for range 400 {
		q := query{ts: start + rng.Int64N(int64(len(closed)+3)*60_000) - 30_000, lat: 40.70 + rng.Float64()*0.12, lng: -74.02 + rng.Float64()*0.1, product: products[rng.IntN(len(products))]}
		qs = append(qs, q)
		fmt.Fprintf(&csvText, "%d,%f,%f,%s\n", q.ts, q.lat, q.lng, q.product)
	}
	at := filepath.Join(dir, "queries.csv")
	if err := os.WriteFile(at, []byte(csvText.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "answers.ndjson")
	if err := historyCommand(append([]string{"-source=file:" + events, "-at=" + at, "-o=" + out}, smallDef...)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(qs) {
		t.Fatalf("%d answers for %d queries", len(lines), len(qs))
	}
	slices.SortStableFunc(qs, func(a, b query) int { return cmp.Compare(a.ts, b.ts) })
	lateness := int64(30_000)
	answered, noMinute := 0, 0
	for i, l := range lines {
		var a struct {
			TS       string  `json:"ts"`
			H3       string  `json:"h3"`
			Minute   *string `json:"minute"`
			Found    bool    `json:"found"`
			Features []int32 `json:"features"`
		}
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatal(err)
		}
		q := qs[i]
		// What serve answers at q.ts: the latest minute closed by then.
		var want int64 = -1
		for _, m := range closed {
			if encode.MinuteStart(m+1).UnixMilli()+lateness <= q.ts {
				want = m
			}
		}
		if want < 0 {
			if a.Minute != nil {
				t.Fatalf("query %d at %d: answered minute %s before any minute closed", i, q.ts, *a.Minute)
			}
			noMinute++
			continue
		}
		if a.Minute == nil || *a.Minute != encode.MinuteStart(want).Format(time.RFC3339) {
			t.Fatalf("query %d at %s: minute %v, want %s", i, a.TS, a.Minute, encode.MinuteStart(want).Format(time.RFC3339))
		}
		cell, _ := strconv.ParseUint(a.H3, 16, 64)
		row, err := s.Get(nil, want, q.product, cell)
		if err != nil {
			t.Fatal(err)
		}
		if row.Found != a.Found || !slices.Equal(row.Features, a.Features) {
			t.Fatalf("query %d: %v %v, the store has %v %v", i, a.Found, a.Features, row.Found, row.Features)
		}
		answered++
	}
	if answered < len(qs)/2 || noMinute == 0 {
		t.Errorf("%d answered from a minute, %d before the first: the queries no longer cover both", answered, noMinute)
	}
}

// TestDefinitionsIntoCassandra: with a cassandra:// sink each further
// definition gets a table of its own (TABLE_NAME) in the keyspace, whose
// rows equal a store written by that definition alone (resume from each
// definition's own checkpoint: the pipeline's tests).
func TestDefinitionsIntoCassandra(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	srv, err := cqltest.Start(cqltest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	events := genEvents(t, dir, 4_000)
	defs := writeDefinitions(t, dir, "- name: base\n  resolution: 8\n  rings: [0, 1, 2]\n  windows: [1, 4]\n- name: fine\n  resolution: 9\n  rings: [0, 2, 7]\n  windows: [3, 5, 1]\n")
	url := fmt.Sprintf("cassandra://127.0.0.1:%d/demandpipe?create=true&rf=1", srv.Port())
	if err := runCommand([]string{"-source=file:" + events, "-sink=" + url, "-definitions=" + defs, "-serve=", "-progress=never", "-log.level=warn"}); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.Rows("demandpipe", "features_fine"); err != nil || n == 0 {
		t.Fatalf("table features_fine: %d rows, %v", n, err)
	}
	alone := filepath.Join(dir, "alone")
	if err := runCommand(storeArgs("file:"+events, alone, "-h3.resolution=9", "-kring.rings=0,2,7", "-windows.minutes=3,5,1")); err != nil {
		t.Fatal(err)
	}
	cc, err := cassandra.ParseURL(url + "&table=features_fine")
	if err != nil {
		t.Fatal(err)
	}
	cst, err := cassandra.OpenStore(context.Background(), cc, cassandra.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cst.Close()
	c := store.DefaultConfig()
	c.Dir, c.ReadOnly = alone, true
	st, err := store.Open(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rep, err := definitions.Diff(cst, st, 0)
	if err != nil || !rep.Identical || rep.Rows == 0 || len(rep.Minutes) != len(st.Minutes(nil)) {
		t.Fatalf("features_fine against the definition alone: %+v %v", rep, err)
	}

	// Served from the keyspace: both definitions, the first active; a
	// promotion in the keyspace's definitions record reaches the server
	// within a second or so.
	sv, closeAll, err := job.OpenCassandraDefinitions(context.Background(), url, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	reg := job.NewRegistry()
	srv2, err := job.StartServer("127.0.0.1:0", serve.DefaultConfig(), sv, reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Shutdown(time.Second)
	c2, _ := client.New(srv2.URL)
	active, list, err := c2.Definitions(context.Background())
	if err != nil || active != "base" || len(list) != 2 || list[1].Name != "fine" || list[1].LastMinute == "" {
		t.Fatalf("GET /v1/definitions from Cassandra: %s %+v %v", active, list, err)
	}
	if err := definitionsCommand([]string{"promote", "-store=" + url, "fine"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if active, _, _ = c2.Definitions(context.Background()); active == "fine" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the promotion in the keyspace did not reach the server in 10 s")
		}
	}
}

// TestProductsNameTheProducts: run -products=FILE names the products on
// the page too, unless -serve.product-names is given, before or after it.
func TestProductsNameTheProducts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file, other := filepath.Join(dir, "products.csv"), filepath.Join(dir, "names.csv")
	for _, f := range []string{file, other} {
		if err := os.WriteFile(f, []byte("16c2d89c-4a7e-495d-9c10-b4026c87e1da,UberX\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-products=" + file}, file},
		{[]string{"-products=" + file, "-serve.product-names=" + other}, other},
		{[]string{"-serve.product-names=" + other, "-products=" + file}, other},
		{nil, ""},
	} {
		rf := newRunFlags()
		if err := rf.fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if rf.cfg.Server.ProductNames != tc.want {
			t.Errorf("%v: -serve.product-names %q, want %q", tc.args, rf.cfg.Server.ProductNames, tc.want)
		}
	}
}

// writeDefinitions writes a definitions file (YAML) into dir.
func writeDefinitions(t *testing.T, dir, yaml string) string {
	t.Helper()
	defs := filepath.Join(dir, "defs.yaml")
	if err := os.WriteFile(defs, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return defs
}

// definitionsStore runs events into a store dir/st with the definitions
// file defs and returns the store's directory.
func definitionsStore(t *testing.T, dir, events, defs string) string {
	t.Helper()
	st := filepath.Join(dir, "st")
	if err := runCommand(storeArgs("file:"+events, st, "-definitions="+defs)); err != nil {
		t.Fatal(err)
	}
	return st
}
