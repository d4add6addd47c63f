package serve

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/read"
)

// Reader is what the API reads (read.Reader): the embedded store and
// Cassandra implement it.
type Reader = read.Reader

// Server is the HTTP API and page over a Reader. It is an http.Handler,
// safe for concurrent use, and never blocks the store's writer.
type Server struct {
	cfg  Config
	name string // the definition's name (Definitions); "" for a server of one
	r    Reader
	def  feature.Definition
	geo  *geo
	now  func() time.Time
	mux  *http.ServeMux
	met  *serverMetrics
	page pageData
	// names are the products' names for people (Config.ProductNames).
	names productNames
	// rate measures event time's pace (with Config.Progress).
	rate rateMeter

	// featureHead[i] is the JSON of feature i up to its value:
	// `{"k":K,"w":W,"value":`, built once so a row costs appends only.
	featureHead [][]byte

	bufs sync.Pool // *reqState
}

// reqState is the per-request scratch, pooled: a steady stream of requests
// allocates almost nothing on the read path.
type reqState struct {
	out   []byte
	body  []byte
	cells []uint64
	rows  []read.Row
	feats []int32
	divs  []int
	mins  []read.MinuteInfo
	mapv  []mapCell
	q     query
}

// New builds the server. reg may be nil; metrics are registered on it
// otherwise (namespace demandpipe, subsystem serve).
func New(cfg Config, r Reader, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	def := r.Definition()
	g, err := newGeo(def, cfg.BoundaryCacheCells)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, r: r, def: def, geo: g, now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	for _, k := range def.Rings {
		for _, w := range def.Windows {
			h := []byte(`{"k":` + strconv.Itoa(k) + `,"w":` + strconv.Itoa(w) + `,"value":`)
			s.featureHead = append(s.featureHead, h)
		}
	}
	s.bufs.New = func() any { return new(reqState) }
	if s.met, err = newServerMetrics(reg); err != nil {
		return nil, err
	}
	if err := s.initPage(); err != nil {
		return nil, err
	}
	if s.names, err = loadProductNames(cfg.ProductNames); err != nil {
		return nil, err
	}
	s.mux = http.NewServeMux()
	s.route("/v1/features", "features", http.MethodGet, s.features)
	s.route("/v1/features:batch", "batch", http.MethodPost, s.batch)
	s.route("/v1/minutes", "minutes", http.MethodGet, s.minutes)
	s.route("/v1/products", "products", http.MethodGet, s.products)
	s.route("/v1/definition", "definition", http.MethodGet, s.definition)
	s.route("/v1/map", "map", http.MethodGet, s.heatMap)
	s.route("/v1/overview", "overview", http.MethodGet, s.overview)
	s.route("/healthz", "healthz", http.MethodGet, s.healthz)
	s.route("/readyz", "readyz", http.MethodGet, s.readyz)
	s.route("/{$}", "page", http.MethodGet, s.index)
	s.route("/assets/{file}", "assets", http.MethodGet, s.asset)
	s.route("/", "not_found", "", func(w http.ResponseWriter, _ *http.Request, st *reqState) int {
		return s.fail(w, st, http.StatusNotFound, "no such path; the API is /v1/features, /v1/features:batch, /v1/minutes, /v1/products, /v1/definition, /v1/map, /v1/overview, /healthz, /readyz")
	})
	return s, nil
}

// handlerFunc handles one request and returns the status it wrote.
type handlerFunc func(w http.ResponseWriter, r *http.Request, st *reqState) int

// route registers path for one method (empty: any). Other methods get a
// JSON 405; every answer is counted and timed under name.
func (s *Server) route(path, name, method string, h handlerFunc) {
	obs := s.met.handler(name)
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		st := s.bufs.Get().(*reqState)
		var code int
		defer func() {
			// Last line of defence: a bug answers 500 JSON instead of
			// dropping the connection. Fuzz tests keep this path cold.
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				code = s.fail(w, st, http.StatusInternalServerError, "internal error")
				obs.observe(code, time.Since(start))
			}
		}()
		if method != "" && r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			code = s.fail(w, st, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed, use "+method)
		} else {
			code = h(w, r, st)
		}
		obs.observe(code, time.Since(start))
		if cap(st.out) <= 4<<20 && cap(st.body) <= 4<<20 { // don't pool a giant map answer
			s.bufs.Put(st)
		}
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// writeJSON writes st.out with status code.
func (s *Server) writeJSON(w http.ResponseWriter, st *reqState, code int) int {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(st.out)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(st.out)
	return code
}

// fail answers {"error":msg} with code.
func (s *Server) fail(w http.ResponseWriter, st *reqState, code int, msg string) int {
	st.out = append(st.out[:0], `{"error":`...)
	st.out = encode.AppendJSONString(st.out, msg)
	st.out = append(st.out, "}\n"...)
	return s.writeJSON(w, st, code)
}

// failRead maps a read error: unknown product is the client's mistake
// (400), a minute that is not (or no longer) available is 404, an empty
// store is 503 (not ready yet), anything else 500.
func (s *Server) failRead(w http.ResponseWriter, st *reqState, err error) int {
	switch {
	case errors.Is(err, read.ErrUnknownProduct) && !s.hasMinute():
		w.Header().Set("Retry-After", "60")
		return s.fail(w, st, http.StatusServiceUnavailable, read.ErrNoMinute.Error())
	case errors.Is(err, read.ErrUnknownProduct):
		return s.fail(w, st, http.StatusBadRequest, "product: "+err.Error()+" (GET /v1/products lists the known ones)")
	case errors.Is(err, read.ErrMinuteNotFound):
		return s.fail(w, st, http.StatusNotFound, err.Error()+" (GET /v1/minutes lists the available ones)")
	case errors.Is(err, read.ErrNoMinute):
		w.Header().Set("Retry-After", "60")
		return s.fail(w, st, http.StatusServiceUnavailable, err.Error())
	default:
		return s.fail(w, st, http.StatusInternalServerError, err.Error())
	}
}

func (s *Server) hasMinute() bool { _, ok := s.r.LatestMinute(); return ok }

// ageSeconds is how long ago minute m ended.
func (s *Server) ageSeconds(m int64) float64 {
	return float64(s.now().UnixMilli()-(m+1)*60000) / 1000
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, st *reqState) int {
	st.out = append(st.out[:0], `{"status":"ok"}`+"\n"...)
	return s.writeJSON(w, st, http.StatusOK)
}

// readyz is ready once the store has a closed minute to answer from.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request, st *reqState) int {
	m, ok := s.r.LatestMinute()
	if !ok {
		w.Header().Set("Retry-After", "60")
		st.out = append(st.out[:0], `{"status":"no closed minute yet"}`+"\n"...)
		return s.writeJSON(w, st, http.StatusServiceUnavailable)
	}
	age := s.ageSeconds(m)
	status, code := "ready", http.StatusOK
	if maxAge := s.cfg.ReadyMaxAge.Seconds(); maxAge > 0 {
		// A minute ends before it closes, so a negative age means the
		// store holds the future: a bad clock somewhere, not fresh data.
		if age > maxAge {
			status, code = "stale: latest minute older than -serve.ready-max-age="+s.cfg.ReadyMaxAge.String(), http.StatusServiceUnavailable
		} else if age < -60 {
			status, code = "latest minute is in the future: check the clocks", http.StatusServiceUnavailable
		}
	}
	if code != http.StatusOK {
		w.Header().Set("Retry-After", "60")
	}
	st.out = append(st.out[:0], `{"status":`...)
	st.out = encode.AppendJSONString(st.out, status)
	st.out = append(st.out, `,"latest_minute":"`...)
	st.out = encode.AppendMinute(st.out, m)
	st.out = append(st.out, `","age_seconds":`...)
	st.out = strconv.AppendFloat(st.out, age, 'f', 3, 64)
	st.out = append(st.out, "}\n"...)
	return s.writeJSON(w, st, code)
}

// minutes lists the closed minutes, latest first; before the first
// closes, with Config.Progress, when it should (progress.go).
func (s *Server) minutes(w http.ResponseWriter, r *http.Request, st *reqState) int {
	if msg := st.q.parse(r.URL.RawQuery); msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	if msg := st.q.only(); msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	st.mins = s.r.Minutes(st.mins[:0])
	st.out = append(st.out[:0], `{"minutes":[`...)
	for i, mi := range st.mins {
		if i > 0 {
			st.out = append(st.out, ',')
		}
		st.out = append(st.out, `{"minute":"`...)
		st.out = encode.AppendMinute(st.out, mi.Minute)
		st.out = append(st.out, `","rows":`...)
		st.out = strconv.AppendInt(st.out, int64(mi.Rows), 10)
		st.out = append(st.out, `,"age_seconds":`...)
		st.out = strconv.AppendFloat(st.out, s.ageSeconds(mi.Minute), 'f', 3, 64)
		st.out = append(st.out, '}')
	}
	st.out = append(st.out, ']')
	if len(st.mins) == 0 && s.cfg.Progress != nil {
		// Before the first close, in the run's process: when it is due.
		st.out = s.firstClose().appendJSON(append(st.out, `,"first_close":`...))
	}
	st.out = append(st.out, "}\n"...)
	return s.writeJSON(w, st, http.StatusOK)
}

func (s *Server) products(w http.ResponseWriter, _ *http.Request, st *reqState) int {
	st.out = append(st.out[:0], `{"products":[`...)
	products := s.r.Products()
	for i, u := range products {
		if i > 0 {
			st.out = append(st.out, ',')
		}
		st.out = append(st.out, '"')
		st.out = u.AppendText(st.out)
		st.out = append(st.out, '"')
	}
	st.out = append(st.out, ']')
	if s.names != nil {
		st.out = s.names.appendJSON(append(st.out, `,"names":`...), products)
	}
	st.out = append(st.out, "}\n"...)
	return s.writeJSON(w, st, http.StatusOK)
}

func (s *Server) definition(w http.ResponseWriter, _ *http.Request, st *reqState) int {
	st.out = append(st.out[:0], `{"name":`...)
	st.out = encode.AppendJSONString(st.out, s.def.String())
	st.out = append(st.out, `,"resolution":`...)
	st.out = strconv.AppendInt(st.out, int64(s.def.Resolution), 10)
	st.out = append(st.out, `,"rings":[`...)
	st.out = append(st.out, feature.JoinInts(s.def.Rings)...)
	st.out = append(st.out, `],"windows":[`...)
	st.out = append(st.out, feature.JoinInts(s.def.Windows)...)
	st.out = append(st.out, `],"aggregate":`...)
	st.out = encode.AppendJSONString(st.out, s.def.Kind().Name)
	st.out = append(st.out, "}\n"...)
	return s.writeJSON(w, st, http.StatusOK)
}
