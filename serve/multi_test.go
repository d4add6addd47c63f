package serve

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/read"
)

// latestOnly is a Reader that knows its definition and latest minute.
type latestOnly struct {
	read.Reader
	def    feature.Definition
	latest int64
}

func (l *latestOnly) Definition() feature.Definition { return l.def }
func (l *latestOnly) LatestMinute() (int64, bool)    { return l.latest, l.latest > 0 }
func (l *latestOnly) Minutes(dst []read.MinuteInfo) []read.MinuteInfo {
	return append(dst, read.MinuteInfo{Minute: l.latest - 3}, read.MinuteInfo{Minute: l.latest})
}

// TestDefinitionsKeepOneLatestMinute: definitions that keep up answer the
// same latest minute (the earliest of theirs), so a promotion between two
// definitions' commits never answers an older minute than before; one far
// behind is backfilling and holds nobody back; GET /v1/definitions says
// which is which and how each aggregates; an unknown or doubled
// definition is refused.
func TestDefinitionsKeepOneLatestMinute(t *testing.T) {
	t.Parallel()
	def := feature.Definition{Resolution: 8, Rings: []int{0, 1}, Windows: []int{1}}
	a := &latestOnly{def: def, latest: 1000}
	b := &latestOnly{def: def, latest: 999} // one close behind a
	peak := def
	peak.Aggregate = "max"
	c := &latestOnly{def: peak, latest: 990} // backfilling
	active := "a"
	d, err := NewDefinitions(DefaultConfig(), []string{"a", "b", "c"}, []Reader{a, b, c}, func() string { return active }, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		if m, _ := d.servers[n].r.LatestMinute(); m != 999 {
			t.Errorf("%s answers latest minute %d, want 999 (the floor of those keeping up)", n, m)
		}
	}
	if m, _ := d.servers["c"].r.LatestMinute(); m != 990 {
		t.Errorf("c (backfilling) answers %d, want its own 990", m)
	}
	b.latest = 1000
	if m, _ := d.servers["a"].r.LatestMinute(); m != 1000 {
		t.Errorf("once b commits, a answers %d, want 1000", m)
	}
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/definitions", nil))
	var list struct {
		Active      string
		Definitions []struct{ Name, Status, Aggregate string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || list.Active != "a" || len(list.Definitions) != 3 ||
		list.Definitions[0].Status != "active" || list.Definitions[1].Status != "dark" || list.Definitions[2].Status != "backfilling" ||
		list.Definitions[0].Aggregate != "count" || list.Definitions[2].Aggregate != "max" {
		t.Fatalf("GET /v1/definitions: %s %v", rec.Body, err)
	}
	for q, want := range map[string]string{
		"/v1/definition?definition=zz":             `definition \"zz\": this deployment has a, b, c`,
		"/v1/definition?definition=a&definition=b": `parameter \"definition\" given twice`,
		"/v1/definition?definition=":               `definition= is empty`,
	} {
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, q, nil))
		if rec.Code < 400 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d %s, want %q", q, rec.Code, rec.Body, want)
		}
	}
	rec = httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/definition?definition=b", nil))
	if rec.Code != 200 || rec.Header().Get("Demandpipe-Definition") != "b" {
		t.Errorf("definition=b: %d, answered by %q", rec.Code, rec.Header().Get("Demandpipe-Definition"))
	}
	active = "c"
	rec = httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/definition", nil))
	if rec.Header().Get("Demandpipe-Definition") != "c" {
		t.Errorf("after promoting c, an unnamed request went to %q", rec.Header().Get("Demandpipe-Definition"))
	}
}
