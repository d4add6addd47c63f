package serve

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/uber/h3-go/v4"
)

func httptestRecorder(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestBadRequests: every malformed request gets its status and a JSON
// error that names what is wrong.
func TestBadRequests(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	p0 := fixProducts[0]
	cell := fmt.Sprintf("%x", f.center)
	res7, _ := h3.Cell(f.center).Parent(7)
	many := make([]string, 1001)
	for i := range many {
		many[i] = `"` + cell + `"`
	}
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string // in the error message
	}{
		{"GET", "/v1/features?h3=zz&product=" + p0, "", 400, "not hexadecimal"},
		{"GET", "/v1/features?h3=&product=" + p0, "", 400, "hex digits"},
		{"GET", "/v1/features?h3=12345678901234567&product=" + p0, "", 400, "hex digits"},
		{"GET", "/v1/features?h3=8f2a100d65fffff&product=" + p0, "", 400, "not a valid H3 cell"},
		{"GET", fmt.Sprintf("/v1/features?h3=%x&product=%s", uint64(res7), p0), "", 400, "resolution 7"},
		{"GET", "/v1/features?h3=" + cell, "", 400, "product: required"},
		{"GET", "/v1/features?h3=" + cell + "&product=nope", "", 400, "not a UUID"},
		{"GET", "/v1/features?h3=" + cell + "&product=11111111-2222-3333-4444-555555555555", "", 400, "unknown to this store"},
		{"GET", "/v1/features?h3=" + cell + "&product=" + p0 + "&minute=yesterday", "", 400, "RFC 3339"},
		{"GET", "/v1/features?h3=" + cell + "&product=" + p0 + "&minute=2024-05-18T02:41:30Z", "", 400, "start of a minute"},
		{"GET", "/v1/features?h3=" + cell + "&product=" + p0 + "&minute=1969-12-31T23:59:00Z", "", 400, "start of a minute"},
		{"GET", "/v1/features?h3=" + cell + "&product=" + p0 + "&minute=2024-05-18T02:42:00Z", "", 404, "not closed"},
		{"GET", "/v1/features?h3=" + cell + "&product=" + p0 + "&minute=2020-01-01T00:00:00Z", "", 404, "not closed"},
		{"GET", "/v1/features?h3=" + cell + "&product=" + p0 + "&avg=maybe", "", 400, "avg"},
		{"GET", "/v1/features?h3=" + cell + "&product=" + p0 + "&prodcut=x", "", 400, `unknown parameter "prodcut"`},
		{"GET", "/v1/features?h3=" + cell + "&h3=" + cell + "&product=" + p0, "", 400, "given twice"},
		{"GET", "/v1/features?h3=" + cell + "&product=%zz", "", 400, "malformed escape"},
		{"GET", "/v1/features?a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9", "", 400, "too many"},
		{"GET", "/v1/features?product=" + p0, "", 400, "give a cell"},
		{"GET", "/v1/features?h3=" + cell + "&lat=1&lng=2&product=" + p0, "", 400, "not both"},
		{"GET", "/v1/features?lat=91&lng=2&product=" + p0, "", 400, "lat 91"},
		{"GET", "/v1/features?lat=1&lng=-180.5&product=" + p0, "", 400, "lng -180.5"},
		{"GET", "/v1/features?lat=NaN&lng=2&product=" + p0, "", 400, "lat NaN"},
		{"GET", "/v1/features?lat=x&lng=2&product=" + p0, "", 400, "decimal degrees"},
		{"GET", "/v1/features?lat=1&product=" + p0, "", 400, "give a cell"},
		{"POST", "/v1/features", "", 405, "not allowed"},
		{"GET", "/v1/features:batch", "", 405, "use POST"},
		{"GET", "/v2/nothing", "", 404, "no such path"},
		{"GET", "/assets/nothing.js", "", 404, "no such asset"},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `","cells":[` + strings.Join(many, ",") + `]}`, 400, "batch too large: 1001 cells, at most 1000"},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `","cells":["` + strings.Repeat("a", 300<<10) + `"]}`, 400, "over 262144 bytes"},
		{"POST", "/v1/features:batch", `{"product":`, 400, "not valid JSON"},
		{"POST", "/v1/features:batch", ``, 400, "not valid JSON"},
		{"POST", "/v1/features:batch", `[1,2]`, 400, "want a JSON object"},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `"}`, 400, `give "cells"`},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `","cells":"x"}`, 400, "cells: wrong type"},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `","cells":[1]}`, 400, "cells[0]: want a string"},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `","cells":["` + cell + `","xyz"]}`, 400, "cells[1]: h3"},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `","points":[{"lat":1}]}`, 400, "points[0]"},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `","points":[[1,2]]}`, 400, "points[0]"},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `","points":[{"lat":100,"lng":0}]}`, 400, "points[0]: lat 100"},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `","cells":[],"colour":1}`, 400, `unknown key "colour"`},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `","product":"` + p0 + `","cells":[]}`, 400, "given twice"},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `","avg":"yes","cells":[]}`, 400, "avg: wrong type"},
		{"POST", "/v1/features:batch", `{"cells":["` + cell + `"]}`, 400, "product: required"},
		{"POST", "/v1/features:batch", `{"product":"` + p0 + `","minute":"2024-05-18T02:41:01Z","cells":[]}`, 400, "start of a minute"},
		{"GET", "/v1/map?product=" + p0 + "&k=7", "", 400, "k \"7\": not in the definition (one of 0,1,2,3,4,5,10,15,20)"},
		{"GET", "/v1/map?product=" + p0 + "&w=x", "", 400, "w \"x\""},
		{"GET", "/v1/map", "", 400, "product: required"},
		{"GET", "/v1/minutes?x=1", "", 400, "unknown parameter"},
	} {
		rec := httptestRecorder(f.srv, c.method, c.path, c.body)
		var e struct{ Error string }
		err := json.Unmarshal(rec.Body.Bytes(), &e)
		path := c.path
		if len(path) > 90 {
			path = path[:90] + "…"
		}
		if rec.Code != c.code || err != nil || !strings.Contains(e.Error, c.want) || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %.300s, want %d with %q", c.method, path, rec.Code, rec.Body, c.code, c.want)
		}
	}
}

// FuzzFeaturesQuery: no query string makes the handler panic or answer
// anything but JSON with a known status.
func FuzzFeaturesQuery(f *testing.F) {
	fx := newFixture(f, DefaultConfig())
	f.Add("h3=" + fmt.Sprintf("%x", fx.center) + "&product=" + fixProducts[0])
	f.Add("lat=40.7&lng=-73.9&product=" + fixProducts[1] + "&avg=1&minute=2024-05-18T02:40:00Z")
	f.Add("h3=%ff&&=&product")
	f.Fuzz(func(t *testing.T, q string) {
		for _, path := range []string{"/v1/features?", "/v1/map?"} {
			req := httptest.NewRequest("GET", "/", nil)
			req.URL.Path, req.URL.RawQuery = strings.TrimSuffix(path, "?"), q
			rec := httptest.NewRecorder()
			fx.srv.ServeHTTP(rec, req)
			if rec.Code != 200 && rec.Code != 400 && rec.Code != 404 {
				t.Fatalf("%s%s: status %d %s", path, q, rec.Code, rec.Body)
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s%s: answer is not JSON: %q", path, q, rec.Body)
			}
		}
	})
}

// FuzzBatchBody: no body makes the batch handler panic or answer anything
// but JSON with 200, 400 or 404.
func FuzzBatchBody(f *testing.F) {
	fx := newFixture(f, DefaultConfig())
	f.Add(`{"product":"` + fixProducts[0] + `","cells":["` + fmt.Sprintf("%x", fx.center) + `"],"points":[{"lat":40.75,"lng":-73.98}],"avg":true}`)
	f.Add(`{"product":"` + fixProducts[1] + `","minute":"2024-05-18T02:40:00Z","cells":[]}`)
	f.Add(`{"cells":[null,{},[]]}`)
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptestRecorder(fx.srv, "POST", "/v1/features:batch", body)
		if rec.Code != 200 && rec.Code != 400 && rec.Code != 404 {
			t.Fatalf("%q: status %d %s", body, rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%q: answer is not JSON: %q", body, rec.Body)
		}
	})
}
