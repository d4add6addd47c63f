package aggregate

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/norace"
)

func sortCounted(evs []Counted) []Counted {
	out := slices.Clone(evs)
	slices.SortFunc(out, func(x, y Counted) int {
		if c := cmp.Compare(x.Minute, y.Minute); c != 0 {
			return c
		}
		if c := cmp.Compare(x.Product, y.Product); c != 0 {
			return c
		}
		return cmp.Compare(x.Cell, y.Cell)
	})
	return out
}

// TestCountedMessageRoundTrip: random messages decode to what was encoded
// (events as a multiset: the encoding sums them), and every truncation of
// an encoding is an error, never a panic or a wrong message.
func TestCountedMessageRoundTrip(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	rng := rand.New(rand.NewPCG(8, 8))
	for i := range 300 {
		m := &CountedMessage{Source: rng.Uint32(), Epoch: rng.Uint64(), Start: int64(rng.IntN(1<<30)) - 1<<29, Seq: rng.Uint64(), Watermark: int64(rng.IntN(1<<30)) - 1<<29}
		m.Clock = m.Watermark - int64(rng.IntN(3))
		if i%7 == 0 {
			m.Watermark, m.Clock = NoWatermark, NoWatermark
		}
		for range rng.IntN(3) {
			m.Joins = append(m.Joins, rng.Uint32())
		}
		for c := range rng.IntN(4) {
			m.Products = append(m.Products, ProductName{Code: byte(c * 3), UUID: encode.UUID{byte(c), 9}})
		}
		base := uint64(0x8828308281fffff) + uint64(rng.IntN(1000))<<20
		for range rng.IntN(300) {
			m.Events = append(m.Events, Counted{Minute: 28_620_600 + int64(rng.IntN(3)), Cell: base + uint64(rng.IntN(50))<<24, Product: byte(rng.IntN(3) * 3)})
		}
		b := AppendCountedMessage(nil, m)
		var got CountedMessage
		if err := DecodeCountedMessage(b, &got); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got.Source != m.Source || got.Epoch != m.Epoch || got.Start != m.Start || fmt.Sprint(got.Joins) != fmt.Sprint(m.Joins) || got.Seq != m.Seq || got.Watermark != m.Watermark || got.Clock != m.Clock || fmt.Sprint(got.Products) != fmt.Sprint(m.Products) ||
			fmt.Sprint(sortCounted(got.Events)) != fmt.Sprint(sortCounted(m.Events)) {
			t.Fatalf("message %d: got %+v", i, got)
		}
		for cut := range len(b) {
			if err := DecodeCountedMessage(b[:cut], &got); err == nil {
				t.Fatalf("message %d cut at %d of %d decoded", i, cut, len(b))
			}
		}
	}
}

// TestCountedMessageVersion1: a version-1 message (no epoch) still
// decodes, with epoch 0.
func TestCountedMessageVersion1(t *testing.T) {
	t.Parallel()
	// version 1, source 3, seq 7, watermark 5 (zigzag 10), no products, one
	// group: minute delta 9 (zigzag 18), code 0, one cell 1 with count 2.
	b := []byte{1, 3, 7, 10, 0, 1, 18, 0, 1, 1, 2}
	var m CountedMessage
	if err := DecodeCountedMessage(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Source != 3 || m.Epoch != 0 || m.Start != NoWatermark || m.Seq != 7 || m.Watermark != 5 || m.Clock != 5 || len(m.Events) != 2 || m.Events[0] != (Counted{Minute: 9, Cell: 1}) {
		t.Fatalf("%+v", m)
	}
}

// TestCountedMessageVersion2: a version-2 message (no clock) decodes with
// its clock equal to its watermark, as version 2 meant.
func TestCountedMessageVersion2(t *testing.T) {
	t.Parallel()
	// version 2, source 3, epoch 4, start 1 (zigzag 2), no joins, seq 7,
	// watermark 5 (zigzag 10), no products, no groups.
	b := []byte{2, 3, 4, 2, 0, 7, 10, 0, 0}
	var m CountedMessage
	if err := DecodeCountedMessage(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Source != 3 || m.Epoch != 4 || m.Start != 1 || m.Seq != 7 || m.Watermark != 5 || m.Clock != 5 || len(m.Events) != 0 {
		t.Fatalf("%+v", m)
	}
}

// FuzzDecodeCountedMessage: any bytes decode to an error or to a message
// that encodes back to the same events, within the decoder's bound.
func FuzzDecodeCountedMessage(f *testing.F) {
	f.Add(AppendCountedMessage(nil, &CountedMessage{Source: 1, Seq: 2, Watermark: 5,
		Products: []ProductName{{1, encode.UUID{1}}},
		Events:   []Counted{{Minute: 5, Cell: 0x8828308281fffff, Product: 1}, {Minute: 5, Cell: 0x8828308281fffff, Product: 1}}}))
	f.Add([]byte{1, 0, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m CountedMessage
		if err := DecodeCountedMessage(b, &m); err != nil {
			return
		}
		if len(m.Events) > maxCountedEvents {
			t.Fatalf("%d events", len(m.Events))
		}
		var again CountedMessage
		if err := DecodeCountedMessage(AppendCountedMessage(nil, &m), &again); err != nil ||
			fmt.Sprint(sortCounted(again.Events)) != fmt.Sprint(sortCounted(m.Events)) {
			t.Fatalf("re-encoding: %v", err)
		}
	})
}

func BenchmarkCountedMessage(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	m := &CountedMessage{Source: 1, Watermark: 28_620_600}
	for range 4096 {
		m.Events = append(m.Events, Counted{Minute: 28_620_601, Cell: 0x8828308281fffff + uint64(rng.IntN(3000))<<24, Product: byte(rng.IntN(4))})
	}
	var buf []byte
	var out CountedMessage
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendCountedMessage(buf[:0], m)
		if err := DecodeCountedMessage(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf))/float64(len(m.Events)), "bytes/event")
}
