package serve

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fastjson"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/read"
)

// latest marks "no minute given": answer from the newest closed minute.
const latest = -1

func (s *Server) parseProduct(v string, ok bool) (encode.UUID, string) {
	if !ok || v == "" {
		return encode.UUID{}, "product: required, a product type UUID (GET /v1/products lists them)"
	}
	u, valid := encode.ParseUUID([]byte(v))
	if !valid {
		return u, "product " + quote(v) + ": not a UUID (8-4-4-4-12 hex digits)"
	}
	// An empty store knows no product yet: let the read answer 503 (not
	// ready) rather than 400, so a client waiting for the first minute
	// sees client.IsNotReady.
	if !s.r.HasProduct(u) && s.hasMinute() {
		return u, "product " + quote(v) + ": unknown to this store (GET /v1/products lists the known ones)"
	}
	return u, ""
}

// parseProductMinute parses the product and minute parameters that every
// feature read takes, in that order; msg is the first problem.
func (s *Server) parseProductMinute(pv string, pok bool, mv string, mok bool) (encode.UUID, int64, string) {
	product, msg := s.parseProduct(pv, pok)
	if msg != "" {
		return product, 0, msg
	}
	m, msg := parseMinute(mv, mok)
	return product, m, msg
}

// parseMinute reads an RFC 3339 minute start; absent means latest.
func parseMinute(v string, ok bool) (int64, string) {
	if !ok {
		return latest, ""
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return 0, "minute " + quote(v) + ": not an RFC 3339 time, e.g. 2024-06-01T10:07:00Z"
	}
	ms := t.UnixMilli()
	if ms < 0 || ms > encode.MaxTS || ms%60000 != 0 || t.Nanosecond() != 0 {
		return 0, "minute " + quote(v) + ": must be the start of a minute between 1970 and 9999, e.g. 2024-06-01T10:07:00Z"
	}
	return ms / 60000, ""
}

func parseBool(name, v string, ok bool) (bool, string) {
	switch {
	case !ok || v == "false" || v == "0":
		return false, ""
	case v == "true" || v == "1" || v == "":
		return true, ""
	}
	return false, name + " " + quote(v) + ": want true or false"
}

// resolveMinute turns latest into the newest closed minute.
func (s *Server) resolveMinute(w http.ResponseWriter, st *reqState, m int64) (int64, int) {
	if m != latest {
		return m, 0
	}
	l, ok := s.r.LatestMinute()
	if !ok {
		return 0, s.failRead(w, st, read.ErrNoMinute)
	}
	return l, 0
}

// features answers GET /v1/features: one cell, by h3 or by lat/lng.
func (s *Server) features(w http.ResponseWriter, r *http.Request, st *reqState) int {
	q := &st.q
	if msg := q.parse(r.URL.RawQuery); msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	hv, hok := q.get("h3")
	lat, latok := q.get("lat")
	lng, lngok := q.get("lng")
	pv, pok := q.get("product")
	mv, mok := q.get("minute")
	av, aok := q.get("avg")
	if msg := q.only("h3", "lat", "lng", "product", "minute", "avg"); msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	var cell uint64
	switch {
	case hok && (latok || lngok):
		return s.fail(w, st, http.StatusBadRequest, "give either h3 or lat and lng, not both")
	case hok:
		c, err := s.geo.parseCell([]byte(hv))
		if err != nil {
			return s.fail(w, st, http.StatusBadRequest, err.Error())
		}
		cell = c
	case latok && lngok:
		la, err1 := strconv.ParseFloat(lat, 64)
		ln, err2 := strconv.ParseFloat(lng, 64)
		if err1 != nil || err2 != nil {
			return s.fail(w, st, http.StatusBadRequest, "lat "+quote(lat)+", lng "+quote(lng)+": want decimal degrees")
		}
		c, err := s.geo.cellAt(la, ln)
		if err != nil {
			return s.fail(w, st, http.StatusBadRequest, err.Error())
		}
		cell = c
	default:
		return s.fail(w, st, http.StatusBadRequest, "give a cell: h3=CELL, or lat=DEG&lng=DEG")
	}
	product, m, msg := s.parseProductMinute(pv, pok, mv, mok)
	if msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	avg, msg := parseBool("avg", av, aok)
	if msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	m, code := s.resolveMinute(w, st, m)
	if code != 0 {
		return code
	}
	row, err := s.r.Get(st.feats, m, product, cell)
	if err != nil {
		return s.failRead(w, st, err)
	}
	st.feats = row.Features
	var rc rowContext
	s.initRowContext(&rc, product, m, avg)
	st.out = s.appendRow(st.out[:0], &rc, st, row)
	st.out = append(st.out, '\n')
	return s.writeJSON(w, st, http.StatusOK)
}

// rowContext is what every row of one answer shares, formatted once.
type rowContext struct {
	product []byte // `"…uuid…"`
	minute  []byte // `"2024-06-01T10:07:00Z"`
	age     []byte // seconds, 3 decimals
	avg     bool
	buf     [96]byte
}

func (s *Server) initRowContext(rc *rowContext, product encode.UUID, m int64, avg bool) {
	b := append(rc.buf[:0], '"')
	b = product.AppendText(b)
	b = append(b, '"')
	rc.product = b
	b = append(b, '"')
	b = encode.AppendMinute(b, m)
	b = append(b, '"')
	rc.minute = b[len(rc.product):]
	b = strconv.AppendFloat(b, s.ageSeconds(m), 'f', 3, 64)
	rc.age = b[len(rc.product)+len(rc.minute):]
	rc.avg = avg
}

// appendHead appends the fields every feature answer starts with:
// "product_type":…,"minute":…,"age_seconds":…
func (rc *rowContext) appendHead(dst []byte) []byte {
	dst = append(dst, `"product_type":`...)
	dst = append(dst, rc.product...)
	dst = append(dst, `,"minute":`...)
	dst = append(dst, rc.minute...)
	dst = append(dst, `,"age_seconds":`...)
	return append(dst, rc.age...)
}

// appendRow appends one row answer:
// {"h3":…,"product_type":…,"minute":…,"age_seconds":…,"found":…,"features":[{"k":0,"w":1,"value":N},…]}
func (s *Server) appendRow(dst []byte, rc *rowContext, st *reqState, row read.Row) []byte {
	dst = append(dst, `{"h3":"`...)
	dst = encode.AppendCell(dst, row.Cell)
	dst = append(dst, `",`...)
	dst = rc.appendHead(dst)
	if row.Found {
		dst = append(dst, `,"found":true,"features":[`...)
	} else {
		// Said explicitly: no row in this closed minute means every
		// feature is zero, not that data is missing.
		dst = append(dst, `,"found":false,"features":[`...)
	}
	if rc.avg {
		st.divs = s.geo.diskSizes(st.divs, row.Cell)
	}
	nw := len(s.def.Windows)
	for i, v := range row.Features {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, s.featureHead[i]...)
		dst = strconv.AppendInt(dst, int64(v), 10)
		if rc.avg {
			dst = append(dst, `,"avg":`...)
			dst = strconv.AppendFloat(dst, float64(v)/float64(st.divs[i/nw]), 'g', -1, 64)
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

var parsers fastjson.ParserPool

// errTooLarge marks a body over MaxBodyBytes.
var errTooLarge = errors.New("too large")

func (s *Server) readBody(r *http.Request, st *reqState) error {
	body := http.MaxBytesReader(nil, r.Body, s.cfg.MaxBodyBytes)
	st.body = st.body[:0]
	for {
		if len(st.body) == cap(st.body) {
			st.body = append(st.body, 0)[:len(st.body)]
		}
		n, err := body.Read(st.body[len(st.body):cap(st.body)])
		st.body = st.body[:len(st.body)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return errTooLarge
			}
			return err
		}
	}
}

// batch answers POST /v1/features:batch:
//
//	{"product":"UUID","minute":"RFC3339"?,"avg":bool?,"cells":["h3",…]?,"points":[{"lat":…,"lng":…},…]?}
//
// with {"product_type","minute","age_seconds","rows":[row…]}, rows in the
// order of cells, then points.
func (s *Server) batch(w http.ResponseWriter, r *http.Request, st *reqState) int {
	if err := s.readBody(r, st); err != nil {
		if errors.Is(err, errTooLarge) {
			return s.fail(w, st, http.StatusBadRequest, fmt.Sprintf("body: over %d bytes; a batch holds at most %d cells", s.cfg.MaxBodyBytes, s.cfg.MaxBatchCells))
		}
		return s.fail(w, st, http.StatusBadRequest, "body: "+err.Error())
	}
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(st.body)
	if err != nil {
		return s.fail(w, st, http.StatusBadRequest, "body: not valid JSON: "+err.Error())
	}
	o, err := v.Object()
	if err != nil {
		return s.fail(w, st, http.StatusBadRequest, `body: want a JSON object {"product":…,"cells":[…]}`)
	}
	var (
		pv, mv          string
		pok, mok, avg   bool
		cells, points   []*fastjson.Value
		msg             string
		seen            uint8 // one bit per key
		hasCells, hasPt bool
	)
	o.Visit(func(key []byte, v *fastjson.Value) {
		if msg != "" {
			return
		}
		var bit uint8
		var err error
		switch string(key) {
		case "product":
			bit = 1
			var b []byte
			b, err = v.StringBytes()
			pv, pok = string(b), true
		case "minute":
			bit = 2
			var b []byte
			b, err = v.StringBytes()
			mv, mok = string(b), true
		case "avg":
			bit = 4
			avg, err = v.Bool()
		case "cells":
			bit = 8
			cells, err = v.Array()
			hasCells = true
		case "points":
			bit = 16
			points, err = v.Array()
			hasPt = true
		case "definition":
			// Definitions routed the request by it; a server of one
			// definition answers only its own name.
			bit = 32
			var b []byte
			if b, err = v.StringBytes(); err == nil && string(b) != cmp.Or(s.name, feature.DefaultName) {
				msg = "body: definition " + quote(string(b)) + ": this server answers " + cmp.Or(s.name, feature.DefaultName) + " (GET /v1/definitions)"
				return
			}
		default:
			msg = "body: unknown key " + quote(string(key)) + " (allowed: product, minute, avg, cells, points, definition)"
			return
		}
		if seen&bit != 0 {
			msg = "body: key " + quote(string(key)) + " given twice"
			return
		}
		seen |= bit
		if err != nil {
			msg = "body: " + string(key) + ": wrong type: " + err.Error()
		}
	})
	if msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	n := len(cells) + len(points)
	switch {
	case !hasCells && !hasPt:
		return s.fail(w, st, http.StatusBadRequest, `body: give "cells":["h3",…] and/or "points":[{"lat":…,"lng":…},…]`)
	case n > s.cfg.MaxBatchCells:
		return s.fail(w, st, http.StatusBadRequest, fmt.Sprintf("batch too large: %d cells, at most %d", n, s.cfg.MaxBatchCells))
	}
	product, m, msg := s.parseProductMinute(pv, pok, mv, mok)
	if msg != "" {
		return s.fail(w, st, http.StatusBadRequest, msg)
	}
	st.cells = st.cells[:0]
	for i, cv := range cells {
		b, err := cv.StringBytes()
		if err != nil {
			return s.fail(w, st, http.StatusBadRequest, fmt.Sprintf("cells[%d]: want a string", i))
		}
		c, err := s.geo.parseCell(b)
		if err != nil {
			return s.fail(w, st, http.StatusBadRequest, fmt.Sprintf("cells[%d]: %v", i, err))
		}
		st.cells = append(st.cells, c)
	}
	for i, pt := range points {
		la, ln := pt.Get("lat"), pt.Get("lng") // nil unless an object with both
		if la == nil || ln == nil {
			return s.fail(w, st, http.StatusBadRequest, fmt.Sprintf(`points[%d]: want {"lat":DEG,"lng":DEG}`, i))
		}
		lat, err1 := la.Float64()
		lng, err2 := ln.Float64()
		if err1 != nil || err2 != nil {
			return s.fail(w, st, http.StatusBadRequest, fmt.Sprintf(`points[%d]: want {"lat":DEG,"lng":DEG}`, i))
		}
		c, err := s.geo.cellAt(lat, lng)
		if err != nil {
			return s.fail(w, st, http.StatusBadRequest, fmt.Sprintf("points[%d]: %v", i, err))
		}
		st.cells = append(st.cells, c)
	}
	m, code := s.resolveMinute(w, st, m)
	if code != 0 {
		return code
	}
	st.rows, err = s.r.GetMany(st.rows, m, product, st.cells)
	if err != nil {
		return s.failRead(w, st, err)
	}
	var rc rowContext
	s.initRowContext(&rc, product, m, avg)
	st.out = rc.appendHead(append(st.out[:0], '{'))
	st.out = append(st.out, `,"rows":[`...)
	for i, row := range st.rows {
		if i > 0 {
			st.out = append(st.out, ',')
		}
		st.out = s.appendRow(st.out, &rc, st, row)
	}
	st.out = append(st.out, "]}\n"...)
	return s.writeJSON(w, st, http.StatusOK)
}
