// Package history answers point-in-time queries over a replay (issue 23):
// for each query (ts, lat, lng, product), the features a server would have
// answered at ts on a live run: those of the last minute closed at ts.
//
// On a live run event time follows the wall clock, and minute m closes once
// event time is the lateness past its end, so at ts the closed minutes are
// those with end(m) + lateness <= ts: Query.Minute. The answer is that
// minute's row, or, when that minute closed with no rows at all (a quiet
// night skips it), the latest closed minute before it, exactly as the
// store lists minutes; before the first closed minute there is no answer.
//
// Gatherer (gather.go, what `demandpipe history` runs) takes the engine's
// counted events (Engine.Emit) and computes the features of the queried
// cells only; Sink, the reference it is tested against, is a sink.Writer
// that takes every row of the engine's close. Either answers the queries,
// in ts order, as the minutes close, and holds the queries and a bounded
// state (the Gatherer: the queried cells' ring sums over the longest
// window; the Sink: one minute's rows); never the events.
package history

import (
	"bufio"
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
)

// Query is one point-in-time question.
type Query struct {
	TS       int64 // unix ms: the decision time
	Lat, Lng float64
	Product  encode.UUID
	Line     int // in the queries file, for errors and output order
	cell     uint64
	minute   int64 // the last minute closed at TS
}

// MaxQueries bounds a queries file (~80 bytes each in memory).
const MaxQueries = 50_000_000

// ReadQueries reads CSV lines ts,lat,lng,product (a header line naming
// them is skipped; ts as unix ms or RFC 3339). Any bad line is an error
// naming it.
func ReadQueries(r io.Reader) ([]Query, error) {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<20))
	cr.FieldsPerRecord = 4
	cr.ReuseRecord = true
	var out []Query
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("queries: %w (want ts,lat,lng,product)", err)
		}
		if line == 1 && strings.EqualFold(strings.TrimSpace(rec[0]), "ts") {
			continue
		}
		q, err := parseQuery(rec)
		if err != nil {
			return nil, fmt.Errorf("queries line %d: %w", line, err)
		}
		q.Line = line
		if out = append(out, q); len(out) > MaxQueries {
			return nil, fmt.Errorf("queries: more than %d", MaxQueries)
		}
	}
	return out, nil
}

func parseQuery(rec []string) (Query, error) {
	var q Query
	ts := strings.TrimSpace(rec[0])
	if ms, err := strconv.ParseInt(ts, 10, 64); err == nil {
		q.TS = ms
	} else if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
		q.TS = t.UnixMilli()
	} else {
		return q, fmt.Errorf("ts %q: want unix milliseconds or RFC 3339", ts)
	}
	var err error
	if q.Lat, err = strconv.ParseFloat(strings.TrimSpace(rec[1]), 64); err != nil || q.Lat < -90 || q.Lat > 90 {
		return q, fmt.Errorf("lat %q: want -90..90", rec[1])
	}
	if q.Lng, err = strconv.ParseFloat(strings.TrimSpace(rec[2]), 64); err != nil || q.Lng < -180 || q.Lng > 180 {
		return q, fmt.Errorf("lng %q: want -180..180", rec[2])
	}
	var ok bool
	if q.Product, ok = encode.ParseUUID([]byte(strings.TrimSpace(rec[3]))); !ok {
		return q, fmt.Errorf("product %q: want a UUID", rec[3])
	}
	return q, nil
}

// Answer is one query's answer.
type Answer struct {
	Query
	Cell      uint64
	Minute    int64 // the minute answered; valid when HasMinute
	HasMinute bool
	Found     bool    // the cell had a row in Minute (else zeros: no demand)
	Features  []int32 // nil without a minute
}

// Sink answers queries as the replay closes minutes.
type Sink struct {
	def      feature.Definition
	queries  []Query // sorted by (minute, line); next is the first unanswered
	next     int
	emit     func(*Answer) error
	cur      int64 // the latest closed minute with rows held, or noMinute
	have     bool
	rows     map[rowKey]int32 // -> offset in feats
	feats    []int32
	pending  int64 // the minute being written
	pendRows map[rowKey]int32
	pendFeat []int32
	zeros    []int32
	ans      Answer
}

type rowKey struct {
	cell    uint64
	product encode.UUID
}

// NewSink prepares the answers of queries under definition def, handing
// each to emit in ts order (a query's lateness: the run's).
func NewSink(def feature.Definition, lateness time.Duration, queries []Query, emit func(*Answer) error) (*Sink, error) {
	if err := locate(queries, def.Resolution, lateness); err != nil {
		return nil, err
	}
	return &Sink{def: def, queries: queries, emit: emit, rows: map[rowKey]int32{}, pendRows: map[rowKey]int32{},
		zeros: make([]int32, def.NumFeatures())}, nil
}

// locate gives each query its cell at resolution res and its minute (the
// last closed at its ts), and sorts the queries by ts, then line.
func locate(queries []Query, res int, lateness time.Duration) error {
	for i := range queries {
		q := &queries[i]
		c, err := h3.LatLngToCell(h3.LatLng{Lat: q.Lat, Lng: q.Lng}, res)
		if err != nil {
			return fmt.Errorf("queries line %d: %w", q.Line, err)
		}
		q.cell = uint64(c)
		// closed at ts: end(m) + lateness <= ts, end(m) = (m+1) minutes
		q.minute = floorDiv(q.TS-lateness.Milliseconds(), 60_000) - 1
	}
	slices.SortStableFunc(queries, func(a, b Query) int { return cmp.Or(cmp.Compare(a.TS, b.TS), cmp.Compare(a.Line, b.Line)) })
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Write keeps the rows of the minute being closed.
func (s *Sink) Write(_ context.Context, b *encode.Batch) error {
	if len(s.pendRows) == 0 || s.pending != b.Minute {
		clear(s.pendRows)
		s.pendFeat = s.pendFeat[:0]
		s.pending = b.Minute
	}
	for i := range b.Len() {
		s.pendRows[rowKey{b.Cells[i], b.UUID(i)}] = int32(len(s.pendFeat))
		s.pendFeat = append(s.pendFeat, b.Row(i)...)
	}
	return nil
}

// CloseMinute answers the queries whose minute is before m with the
// latest minute closed before m, then holds m's rows.
func (s *Sink) CloseMinute(_ context.Context, m int64) error {
	if err := s.answerBefore(m); err != nil {
		return err
	}
	if s.pending == m && len(s.pendRows) > 0 {
		s.rows, s.pendRows = s.pendRows, s.rows
		s.feats, s.pendFeat = s.pendFeat, s.feats
	} else {
		clear(s.rows) // closed with no row: every cell reads zeros
		s.feats = s.feats[:0]
	}
	clear(s.pendRows)
	s.pendFeat = s.pendFeat[:0]
	s.cur, s.have = m, true
	return nil
}

// answerBefore answers every query whose minute is before m.
func (s *Sink) answerBefore(m int64) error {
	for s.next < len(s.queries) && s.queries[s.next].minute < m {
		if err := s.answer(&s.queries[s.next]); err != nil {
			return err
		}
		s.next++
	}
	return nil
}

func (s *Sink) answer(q *Query) error {
	a := &s.ans
	*a = Answer{Query: *q, Cell: q.cell}
	if s.have {
		a.Minute, a.HasMinute = s.cur, true
		if off, ok := s.rows[rowKey{q.cell, q.Product}]; ok {
			a.Found, a.Features = true, s.feats[off:int(off)+len(s.zeros)]
		} else {
			a.Features = s.zeros
		}
	}
	return s.emit(a)
}

// Close answers the queries after the last closed minute with it (on a
// live run nothing newer would have closed).
func (s *Sink) Close() error {
	for ; s.next < len(s.queries); s.next++ {
		if err := s.answer(&s.queries[s.next]); err != nil {
			return err
		}
	}
	return nil
}

// Answered is how many queries were answered so far.
func (s *Sink) Answered() int { return s.next }
