package sink

import (
	"bytes"
	"context"
	"testing"

	"github.com/demandpipe/demandpipe/encode"
)

func TestNDJSONAndNull(t *testing.T) {
	names := encode.NewProducts()
	u, _ := encode.ParseUUID([]byte("a1b2c3d4-0000-4000-8000-000000000001"))
	c, _ := names.Code(u)
	b := &encode.Batch{Minute: 28620600, NumFeatures: 2, Cells: []uint64{0x882a100d67fffff, 0x882a100d65fffff},
		Products: []byte{c, c}, Features: []int32{1, 2, 0, 7}, Names: names}
	var out bytes.Buffer
	s := NewNDJSON(&out, nil)
	if err := s.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatal("rows visible before the minute closed")
	}
	s.CloseMinute(context.Background(), b.Minute)
	want := `{"h3":"882a100d67fffff","product_type":"a1b2c3d4-0000-4000-8000-000000000001","minute":"2024-06-01T10:00:00Z","features":[1,2]}
{"h3":"882a100d65fffff","product_type":"a1b2c3d4-0000-4000-8000-000000000001","minute":"2024-06-01T10:00:00Z","features":[0,7]}
`
	if out.String() != want {
		t.Fatalf("got\n%s", out.String())
	}
	if st := s.Stats(); st.Rows != 2 || st.Minutes != 1 {
		t.Fatalf("%+v", st)
	}
	n := &Null{}
	n.Write(context.Background(), b)
	if n.Stats().Rows != 2 {
		t.Fatal("null sink miscounted")
	}
	for _, spec := range []string{"x", "nope:1", "ndjson:"} {
		if _, err := Builtin().Open(spec); err == nil {
			t.Errorf("%q accepted", spec)
		}
	}
}
