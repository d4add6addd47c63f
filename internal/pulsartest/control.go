package pulsartest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ControlHandler returns an HTTP handler that exposes fault injection and
// stats, so tests in other processes (or languages) can drive a
// pulsartestd:
//
//	POST /drop                                  close every connection
//	POST /stall?for=2s                          stall dispatch
//	POST /restart                               stop and restart on the same address
//	POST /disconnect?topic=T&sub=S[&consumer=C] close a consumer's connection
//	POST /partitions?topic=T&n=N                create a partitioned topic
//	POST /reorder-key-shared?n=N                pass N new entries ahead of a Key_Shared replay
//	                                            after a consumer leaves (0: off)
//	GET  /stats                                 Stats as JSON
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	post := func(path string, fn func(r *http.Request) (any, error)) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			v, err := fn(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			writeJSON(w, v)
		})
	}
	post("/drop", func(*http.Request) (any, error) {
		return map[string]int{"dropped": s.DropConnections()}, nil
	})
	post("/stall", func(r *http.Request) (any, error) {
		d, err := time.ParseDuration(r.URL.Query().Get("for"))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("stall: need for=<positive duration>")
		}
		s.StallDispatch(d)
		return map[string]string{"stalled": d.String()}, nil
	})
	post("/restart", func(*http.Request) (any, error) {
		return map[string]string{"addr": s.Addr()}, s.Restart()
	})
	post("/disconnect", func(r *http.Request) (any, error) {
		q := r.URL.Query()
		n, err := s.DisconnectConsumer(q.Get("topic"), q.Get("sub"), q.Get("consumer"))
		return map[string]int{"closed": n}, err
	})
	post("/partitions", func(r *http.Request) (any, error) {
		q := r.URL.Query()
		n, err := strconv.Atoi(q.Get("n"))
		if err != nil {
			return nil, fmt.Errorf("partitions: n: %v", err)
		}
		return map[string]int{q.Get("topic"): n}, s.CreatePartitionedTopic(q.Get("topic"), n)
	})
	post("/reorder-key-shared", func(r *http.Request) (any, error) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil {
			return nil, fmt.Errorf("reorder-key-shared: n: %v", err)
		}
		return map[string]int{"reorder": n}, s.ReorderKeySharedReplays(n)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.Stats())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
