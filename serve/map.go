package serve

import (
	"cmp"
	"net/http"
	"slices"
	"strconv"
)

type mapCell struct {
	cell uint64
	v    int32
}

// heatMap answers GET /v1/map?product=UUID[&k=K&w=W&minute=RFC3339]: one
// feature of every cell with a non-zero value in a minute, with the cells'
// boundaries, for the page's SVG:
//
//	{"product_type":…,"minute":…,"age_seconds":…,"k":K,"w":W,"max":M,
//	 "truncated":false,"cells":[["882a100d65fffff",N,[[lat,lng],…]],…]}
//
// k and w default to the definition's first ring and window. At most
// Config.MapMaxCells cells are sent, the hottest; truncated says so.
func (s *Server) heatMap(w http.ResponseWriter, r *http.Request, st *reqState) int {
	q := &st.q
	if msg := q.parse(r.URL.RawQuery); msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	pv, pok := q.get("product")
	kv, kok := q.get("k")
	wv, wok := q.get("w")
	mv, mok := q.get("minute")
	if msg := q.only("product", "k", "w", "minute"); msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	product, msg := s.parseProduct(pv, pok)
	if msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	ki, msg := indexOf("k", kv, kok, s.def.Rings)
	if msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	wi, msg := indexOf("w", wv, wok, s.def.Windows)
	if msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	m, msg := parseMinute(mv, mok)
	if msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	m, code := s.resolveMinute(w, st, m)
	if code != 0 {
		return code
	}
	st.mapv = st.mapv[:0]
	err := s.r.ScanFeature(m, product, s.def.Index(ki, wi), func(cell uint64, v int32) bool {
		if v != 0 {
			st.mapv = append(st.mapv, mapCell{cell, v})
		}
		return true
	})
	if err != nil {
		return s.failRead(w, st, err)
	}
	truncated := len(st.mapv) > s.cfg.MapMaxCells
	if truncated {
		slices.SortFunc(st.mapv, func(a, b mapCell) int { return cmp.Compare(b.v, a.v) })
		st.mapv = st.mapv[:s.cfg.MapMaxCells]
	}
	var mx int32
	for _, c := range st.mapv {
		mx = max(mx, c.v)
	}
	var rc rowContext
	s.initRowContext(&rc, product, m, false)
	o := rc.appendHead(append(st.out[:0], '{'))
	o = append(o, `,"k":`...)
	o = strconv.AppendInt(o, int64(s.def.Rings[ki]), 10)
	o = append(o, `,"w":`...)
	o = strconv.AppendInt(o, int64(s.def.Windows[wi]), 10)
	o = append(o, `,"max":`...)
	o = strconv.AppendInt(o, int64(mx), 10)
	o = append(o, `,"truncated":`...)
	o = strconv.AppendBool(o, truncated)
	o = append(o, `,"cells":[`...)
	for i, c := range st.mapv {
		if i > 0 {
			o = append(o, ',')
		}
		o = append(o, `["`...)
		o = strconv.AppendUint(o, c.cell, 16)
		o = append(o, `",`...)
		o = strconv.AppendInt(o, int64(c.v), 10)
		o = append(o, ',')
		o = s.geo.appendBoundary(o, c.cell)
		o = append(o, ']')
	}
	st.out = append(o, "]}\n"...)
	return s.writeJSON(w, st, http.StatusOK)
}

// indexOf finds the position of the value v in list (a ring or window of
// the definition); absent means position 0.
func indexOf(name, v string, ok bool, list []int) (int, string) {
	if !ok {
		return 0, ""
	}
	x, err := strconv.Atoi(v)
	if err == nil {
		if i := slices.Index(list, x); i >= 0 {
			return i, ""
		}
	}
	vals := make([]string, len(list))
	for i, x := range list {
		vals[i] = strconv.Itoa(x)
	}
	return 0, name + " " + quote(v) + ": not in the definition (one of " + joinComma(vals) + ")"
}

func joinComma(v []string) string {
	out := ""
	for i, s := range v {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}
