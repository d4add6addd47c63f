package cqltest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// ControlHandler exposes fault injection and statistics over HTTP, for driving
// a cqltestd process from a script or another language's tests:
//
//	GET  /stats                         Stats as JSON
//	POST /stats/reset                   ResetStats
//	POST /fault?kind=overloaded&n=3     InjectFault (kinds: overloaded, timeout,
//	                                    unavailable, server-error, drop,
//	                                    timeout-applied)
//	POST /fault?kind=timeout&rate=0.1   SetFaultRate
//	POST /fault/clear                   ClearFaults
//	POST /latency?d=5ms                 SetLatency
//	POST /drop                          DropConnections
//	POST /down?for=5s                   Down (for=0 or absent: until /up)
//	POST /up                            Up
//	POST /nodes?live=2                  SetLiveNodes (a node dies or comes back)
//	POST /prepared/forget               ForgetPrepared (UNPREPARED, drivers re-prepare)
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Stats())
	})
	mux.HandleFunc("POST /stats/reset", func(w http.ResponseWriter, r *http.Request) { s.ResetStats() })
	mux.HandleFunc("POST /fault", func(w http.ResponseWriter, r *http.Request) {
		f, err := ParseFault(r.FormValue("kind"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if v := r.FormValue("rate"); v != "" {
			rate, err := strconv.ParseFloat(v, 64)
			if err != nil || rate < 0 || rate > 1 {
				http.Error(w, "rate: want a number in 0..1", http.StatusBadRequest)
				return
			}
			s.SetFaultRate(f, rate)
			return
		}
		n, err := strconv.Atoi(r.FormValue("n"))
		if err != nil || n < 0 {
			http.Error(w, "n: want a non-negative integer (or give rate)", http.StatusBadRequest)
			return
		}
		s.InjectFault(f, n)
	})
	mux.HandleFunc("POST /fault/clear", func(w http.ResponseWriter, r *http.Request) { s.ClearFaults() })
	mux.HandleFunc("POST /latency", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.FormValue("d"))
		if err != nil || d < 0 {
			http.Error(w, "d: want a duration such as 5ms", http.StatusBadRequest)
			return
		}
		s.SetLatency(d)
	})
	mux.HandleFunc("POST /drop", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]int{"dropped": s.DropConnections()})
	})
	mux.HandleFunc("POST /down", func(w http.ResponseWriter, r *http.Request) {
		var d time.Duration
		if v := r.FormValue("for"); v != "" {
			var err error
			if d, err = time.ParseDuration(v); err != nil || d < 0 {
				http.Error(w, "for: want a duration such as 5s", http.StatusBadRequest)
				return
			}
		}
		if err := s.Down(d); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
		}
	})
	mux.HandleFunc("POST /up", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Up(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /nodes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.FormValue("live"))
		if err != nil || n < 1 || n > MaxLiveNodes {
			http.Error(w, "live: want the number of live nodes, 1.."+strconv.Itoa(MaxLiveNodes), http.StatusBadRequest)
			return
		}
		s.SetLiveNodes(n)
	})
	mux.HandleFunc("POST /prepared/forget", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]int{"forgotten": s.ForgetPrepared()})
	})
	return mux
}
