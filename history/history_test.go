package history

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
)

// TestQueriesAndTheirMinute: a query at ts is answered by the last minute
// closed at ts (end + lateness <= ts); minutes that closed with no rows
// read as the one before; queries before the first closed minute get none;
// bad lines are refused with their number.
func TestQueriesAndTheirMinute(t *testing.T) {
	const p = "11111111-2222-3333-4444-555555555555"
	m0 := time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return m0.Add(d).Format(time.RFC3339) }
	in := "ts,lat,lng,product\n" +
		at(90*time.Second) + ",40.75,-73.98," + p + "\n" + // 10:01:30: 10:00 closed at 10:01:30 exactly
		at(89*time.Second) + ",40.75,-73.98," + p + "\n" + // before: no minute yet
		at(5*time.Minute) + ",40.75,-73.98," + p + "\n" + // 10:05: minutes through 10:03 closed
		at(10*time.Minute) + ",40.75,-73.98," + p + "\n" // after the last close: the last minute
	qs, err := ReadQueries(strings.NewReader(in))
	if err != nil || len(qs) != 4 || qs[0].Line != 2 {
		t.Fatalf("%v %v", qs, err)
	}
	def := feature.Definition{Resolution: 8, Rings: []int{0}, Windows: []int{1}}
	var got []string
	s, err := NewSink(def, 30*time.Second, qs, func(a *Answer) error {
		if !a.HasMinute {
			got = append(got, "none")
		} else {
			got = append(got, encode.MinuteStart(a.Minute).Format("15:04")+map[bool]string{true: "+", false: "0"}[a.Found])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := encode.ParseUUID([]byte(p))
	products := encode.NewProducts()
	code, _ := products.Code(u)
	m := m0.Unix() / 60
	ctx := context.Background()
	for i, rows := range []bool{true, true, false, true} { // 10:00, 10:01, 10:02 (no rows), 10:03
		if rows {
			b := &encode.Batch{Minute: m + int64(i), NumFeatures: 1, Names: products, Cells: []uint64{qs[0].cell}, Products: []byte{code}, Features: []int32{int32(i + 1)}}
			s.Write(ctx, b)
		}
		if err := s.CloseMinute(ctx, m+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// In ts order: 10:01:29 none; 10:01:30 -> 10:00; 10:05 -> 10:03 closed
	// at 10:04:30; 10:10 -> the last, 10:03.
	if want := "none 10:00+ 10:03+ 10:03+"; strings.Join(got, " ") != want {
		t.Errorf("answers %q, want %q", strings.Join(got, " "), want)
	}
	for in, want := range map[string]string{
		"1,2,3\n":               "wrong number of fields",
		"x,40,-73," + p + "\n":  "line 1: ts \"x\"",
		"1,95,-73," + p + "\n":  "lat \"95\"",
		"1,40,-73,not-a-uuid\n": "product \"not-a-uuid\"",
	} {
		if _, err := ReadQueries(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}

// TestCSVAndNDJSON: the two output forms of one answer, and of a query
// before any closed minute.
func TestCSVAndNDJSON(t *testing.T) {
	def := feature.Definition{Resolution: 8, Rings: []int{0, 2}, Windows: []int{1}}
	u, _ := encode.ParseUUID([]byte("11111111-2222-3333-4444-555555555555"))
	a := &Answer{Query: Query{TS: 1717236090000, Lat: 40.75, Lng: -73.98, Product: u}, Cell: 0x882a100d65fffff,
		Minute: 28620600, HasMinute: true, Found: true, Features: []int32{3, 7}}
	none := &Answer{Query: a.Query, Cell: a.Cell}
	var b strings.Builder
	w := NewWriter(&b, "csv", def)
	w.Write(a)
	w.Write(none)
	w.Flush()
	if want := "ts,lat,lng,product,h3,minute,found,k0_w1,k2_w1\n2024-06-01T10:01:30Z,40.75,-73.98,11111111-2222-3333-4444-555555555555,882a100d65fffff,2024-06-01T10:00:00Z,true,3,7\n2024-06-01T10:01:30Z,40.75,-73.98,11111111-2222-3333-4444-555555555555,882a100d65fffff,,false\n"; b.String() != want {
		t.Errorf("CSV:\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	w = NewWriter(&b, "ndjson", def)
	w.Write(a)
	w.Write(none)
	w.Flush()
	if want := `{"ts":"2024-06-01T10:01:30Z","lat":40.75,"lng":-73.98,"product_type":"11111111-2222-3333-4444-555555555555","h3":"882a100d65fffff","minute":"2024-06-01T10:00:00Z","found":true,"features":[3,7]}` + "\n" +
		`{"ts":"2024-06-01T10:01:30Z","lat":40.75,"lng":-73.98,"product_type":"11111111-2222-3333-4444-555555555555","h3":"882a100d65fffff","minute":null,"error":"no minute closed yet at ts"}` + "\n"; b.String() != want {
		t.Errorf("NDJSON:\n%s\nwant\n%s", b.String(), want)
	}
}
