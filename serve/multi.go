package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fastjson"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/read"
)

// Definitions serves the feature definitions of one deployment (issue 23):
// a request names one with `definition=NAME` (a query parameter, or the
// batch body's "definition"), else it gets the active one. Each
// definition has its own Server over its own Reader; a request is answered
// by exactly one of them (the answer's Demandpipe-Definition header names
// it), so no answer mixes definitions, and the active definition is read
// once per request, so a promotion reaches every reader at its next
// request. GET /v1/definitions lists them.
//
// The latest minute (what a request without minute= reads) is the same
// for every definition that keeps up: the earliest latest minute of those
// within LagMinutes of the newest. Definitions written by one run close
// the same minutes one after the other, so without this a promotion
// landing between their commits could answer a minute older than the one
// before it.
type Definitions struct {
	names   []string
	servers map[string]*Server
	readers map[string]Reader
	active  func() string
	maxBody int64 // Config.MaxBodyBytes: a batch body peeked at is read to it and no further
}

// LagMinutes is how far behind the newest definition's latest minute a
// definition may be and still count as keeping up; one further behind is
// "backfilling", and does not hold the others' latest minute back.
const LagMinutes = 2

// NewDefinitions builds the server of the definitions names, whose rows
// readers hold (in the same order); active names the active definition at
// each request (nil: the first). With more than one definition the
// metrics carry a definition label.
func NewDefinitions(cfg Config, names []string, readers []Reader, active func() string, reg prometheus.Registerer) (*Definitions, error) {
	if len(names) == 0 || len(names) != len(readers) {
		return nil, fmt.Errorf("serve: %d definition names and %d stores", len(names), len(readers))
	}
	d := &Definitions{names: names, servers: map[string]*Server{}, readers: map[string]Reader{}, active: active, maxBody: cfg.MaxBodyBytes}
	if d.active == nil {
		d.active = func() string { return names[0] }
	}
	for i, n := range names {
		if err := feature.ValidateName(n); err != nil {
			return nil, err
		}
		r := readers[i]
		if len(names) > 1 {
			r = &keepingUp{Reader: r, d: d}
		}
		sreg := reg
		if reg != nil && len(names) > 1 {
			sreg = prometheus.WrapRegistererWith(prometheus.Labels{"definition": n}, reg)
		}
		s, err := New(cfg, r, sreg)
		if err != nil {
			return nil, fmt.Errorf("definition %s: %w", n, err)
		}
		s.name = n
		d.servers[n], d.readers[n] = s, readers[i]
	}
	return d, nil
}

// ServeHTTP picks the definition and hands the request to its server.
func (d *Definitions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/definitions" {
		d.list(w, r)
		return
	}
	active := d.active()
	name, r, err := pickDefinition(r, len(d.names) > 1, d.maxBody)
	if err != "" {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if name == "" || r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/assets/") {
		// The page is the same for every definition: a link naming one
		// this deployment no longer serves still opens it (on the active one).
		name = active
	}
	s, ok := d.servers[name]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("definition %q: this deployment has %s (GET /v1/definitions)", name, strings.Join(d.names, ", ")))
		return
	}
	w.Header().Set("Demandpipe-Definition", name)
	s.ServeHTTP(w, r)
}

// pickDefinition takes the definition a request names out of its query
// (definition=NAME) and, for a batch, out of its body ("definition"), and
// returns the request without it in the query. peekBody: read a batch's
// body for it, at most maxBody+1 bytes (the server's own limit then
// refuses a longer one), only worth it with several definitions (a server
// of one checks the body's "definition" itself).
func pickDefinition(r *http.Request, peekBody bool, maxBody int64) (name string, out *http.Request, msg string) {
	raw := r.URL.RawQuery
	if strings.Contains(raw, "definition=") {
		var keep []string
		for _, kv := range strings.Split(raw, "&") {
			if v, ok := strings.CutPrefix(kv, "definition="); ok {
				if name != "" {
					return "", r, `query: parameter "definition" given twice`
				}
				name = v
				continue
			}
			keep = append(keep, kv)
		}
		if name == "" {
			return "", r, "query: definition= is empty (GET /v1/definitions lists the names)"
		}
		r2 := r.Clone(r.Context())
		r2.URL.RawQuery = strings.Join(keep, "&")
		r = r2
	}
	if peekBody && r.Method == http.MethodPost && r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			return "", r, "body: " + err.Error()
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		if v := fastjson.GetString(b, "definition"); v != "" {
			if name != "" && v != name {
				return "", r, fmt.Sprintf("definition %q in the query and %q in the body", name, v)
			}
			name = v
		}
	}
	return name, r, ""
}

// definitionInfo is one entry of GET /v1/definitions.
type definitionInfo struct {
	Name        string `json:"name"`
	Status      string `json:"status"` // active, dark or backfilling
	Resolution  int    `json:"resolution"`
	Rings       []int  `json:"rings"`
	Windows     []int  `json:"windows"`
	Aggregate   string `json:"aggregate"` // how a window folds its minutes: count, max
	FirstMinute string `json:"first_minute,omitempty"`
	LastMinute  string `json:"last_minute,omitempty"`
}

func (d *Definitions) list(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed, use GET")
		return
	}
	active := d.active()
	newest, _ := d.newest()
	out := struct {
		Active      string           `json:"active"`
		Definitions []definitionInfo `json:"definitions"`
	}{Active: active}
	for _, n := range d.names {
		rd := d.readers[n]
		def := rd.Definition()
		e := definitionInfo{Name: n, Status: "dark", Resolution: def.Resolution, Rings: def.Rings, Windows: def.Windows, Aggregate: def.Kind().Name}
		last, ok := rd.LatestMinute()
		switch {
		case n == active:
			e.Status = "active"
		case !ok || last < newest-LagMinutes:
			e.Status = "backfilling"
		}
		if ok {
			e.LastMinute = minuteText(last)
			if ms := rd.Minutes(nil); len(ms) > 0 {
				e.FirstMinute = minuteText(slices.MinFunc(ms, func(a, b read.MinuteInfo) int { return int(a.Minute - b.Minute) }).Minute)
			}
		}
		out.Definitions = append(out.Definitions, e)
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(b, '\n'))
}

func minuteText(m int64) string { return encode.MinuteStart(m).Format(time.RFC3339) }

// newest is the newest latest minute of all definitions.
func (d *Definitions) newest() (int64, bool) {
	var newest int64
	have := false
	for _, rd := range d.readers {
		if m, ok := rd.LatestMinute(); ok && (!have || m > newest) {
			newest, have = m, true
		}
	}
	return newest, have
}

// floor is the latest minute every definition that keeps up has.
func (d *Definitions) floor() (int64, bool) {
	newest, ok := d.newest()
	if !ok {
		return 0, false
	}
	floor := newest
	for _, rd := range d.readers {
		if m, ok := rd.LatestMinute(); ok && m >= newest-LagMinutes {
			floor = min(floor, m)
		}
	}
	return floor, true
}

// keepingUp is a definition's Reader whose latest minute is the floor of
// the definitions that keep up (Definitions).
type keepingUp struct {
	Reader
	d *Definitions
}

func (k *keepingUp) LatestMinute() (int64, bool) {
	own, ok := k.Reader.LatestMinute()
	if !ok {
		return own, ok
	}
	if f, fok := k.d.floor(); fok && f < own {
		return f, true
	}
	return own, true
}

// writeError answers {"error":msg} outside any one definition's server.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(encode.AppendJSONString([]byte(`{"error":`), msg), "}\n"...))
}
