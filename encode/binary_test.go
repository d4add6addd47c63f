package encode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// syntheticRow fills f with the features of one dense-metro row under the
// default definition (rings 0,1,2,3,4,5,10,15,20; windows 1,2,4,8,16,32):
// feature (k,w) counts the events of the disk of radius k over w minutes,
// i.e. about density * (3k(k+1)+1) * w, with Poisson-like noise.
func syntheticRow(r *rand.Rand, f []int32) []int32 {
	rings := []int{0, 1, 2, 3, 4, 5, 10, 15, 20}
	windows := []int{1, 2, 4, 8, 16, 32}
	density := 0.02 * math.Exp(r.NormFloat64()*1.2) // events per cell-minute
	f = f[:0]
	for _, k := range rings {
		for _, w := range windows {
			mean := density * float64(3*k*(k+1)+1) * float64(w)
			v := mean + r.NormFloat64()*math.Sqrt(mean)
			f = append(f, int32(max(0, math.Round(v))))
		}
	}
	return f
}

func TestRowKeyGolden(t *testing.T) {
	k := AppendRowKey(nil, 28_600_000, 7, 0x882a100d65fffff)
	want := []byte{0x01, 0xb4, 0x66, 0xc0, 7, 0x08, 0x82, 0xa1, 0x00, 0xd6, 0x5f, 0xff, 0xff}
	if !bytes.Equal(k, want) {
		t.Fatalf("key % x, want % x", k, want)
	}
	got, err := ParseRowKey(k)
	if err != nil || got != (RowKey{28_600_000, 7, 0x882a100d65fffff}) {
		t.Fatalf("ParseRowKey = %+v, %v", got, err)
	}
	if !bytes.Equal(AppendMinuteKey(nil, 28_600_000), want[:4]) {
		t.Fatal("minute prefix differs from the key's first 4 bytes")
	}
}

func TestRowValueGolden(t *testing.T) {
	for _, c := range []struct {
		in   []int32
		want []byte
	}{
		{[]int32{}, []byte{ValueUvarint, 0}},
		{[]int32{0, 1, 127, 128, 300}, []byte{ValueUvarint, 5, 0, 1, 127, 0x80, 1, 0xac, 2}},
		{[]int32{math.MaxInt32}, []byte{ValueUvarint, 1, 0xff, 0xff, 0xff, 0xff, 7}},
		{[]int32{1, -1, 0}, []byte{ValueZigzag, 3, 2, 1, 0}},
		{[]int32{math.MinInt32}, []byte{ValueZigzag, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}},
	} {
		got := AppendRowValue([]byte("x"), c.in)
		if !bytes.Equal(got[1:], c.want) || got[0] != 'x' {
			t.Errorf("AppendRowValue(%v) = % x, want x % x", c.in, got, c.want)
		}
		dec, err := DecodeRowValue(nil, c.want)
		if err != nil || !slices.Equal(dec, c.in) {
			t.Errorf("DecodeRowValue(% x) = %v, %v; want %v", c.want, dec, err, c.in)
		}
	}
}

// TestRowRoundTrip checks random rows, including negative and extreme
// values, against the obvious reference: what went in comes out.
func TestRowRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	var dec []int32
	for i := range 20000 {
		n := r.IntN(MaxFeatures + 1)
		f := make([]int32, n)
		for j := range f {
			switch r.IntN(4) {
			case 0:
				f[j] = int32(r.IntN(128))
			case 1:
				f[j] = int32(r.Uint32())
			case 2:
				f[j] = int32(r.IntN(100000))
			default:
				f[j] = []int32{0, math.MaxInt32, math.MinInt32, -1}[r.IntN(4)]
			}
		}
		if i%3 == 0 { // mostly non-negative, like the engine's rows
			for j := range f {
				f[j] &= math.MaxInt32
			}
		}
		m, p, c := r.Int64N(MaxMinute+1), byte(r.Uint32()), r.Uint64()
		buf = AppendRowBinary(buf[:0], m, p, c, f)
		k, got, err := DecodeRowBinary(dec[:0], buf)
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		if k != (RowKey{m, p, c}) || !slices.Equal(got, f) {
			t.Fatalf("row %d: got %+v %v, want %d %d %x %v", i, k, got, m, p, c, f)
		}
		for j := range min(n, 5) {
			jj := r.IntN(n)
			v, err := DecodeFeature(buf[RowKeyLen:], jj)
			if err != nil || v != f[jj] {
				t.Fatalf("row %d: DecodeFeature(%d) = %d, %v; want %d (j=%d)", i, jj, v, err, f[jj], j)
			}
		}
		dec = got
	}
}

func TestKeyOrder(t *testing.T) {
	// Keys must sort by (minute, product, cell) as unsigned numbers.
	r := rand.New(rand.NewPCG(3, 4))
	type k struct {
		m int64
		p byte
		c uint64
	}
	ks := make([]k, 2000)
	for i := range ks {
		ks[i] = k{r.Int64N(4) + MaxMinute - 3, byte(r.IntN(3)), r.Uint64() >> r.IntN(64)}
	}
	slices.SortFunc(ks, func(a, b k) int {
		return bytes.Compare(AppendRowKey(nil, a.m, a.p, a.c), AppendRowKey(nil, b.m, b.p, b.c))
	})
	for i := 1; i < len(ks); i++ {
		a, b := ks[i-1], ks[i]
		less := a.m < b.m || a.m == b.m && (a.p < b.p || a.p == b.p && a.c <= b.c)
		if !less {
			t.Fatalf("keys out of order: %+v before %+v", a, b)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	big := binary.AppendUvarint([]byte{ValueUvarint, 1}, 1<<31)
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrValueKind},
		{"kind", []byte{9, 0}, ErrValueKind},
		{"no count", []byte{ValueUvarint}, ErrFeatureCount},
		{"count too big", binary.AppendUvarint([]byte{ValueUvarint}, MaxFeatures+1), ErrFeatureCount},
		{"count lies", []byte{ValueUvarint, 3, 1, 2}, ErrFeatureCount},
		{"truncated varint", []byte{ValueUvarint, 2, 0x80, 0x80}, ErrVarint},
		{"varint past end", []byte{ValueUvarint, 2, 0xff, 0xff}, ErrVarint},
		{"uvarint > int32", big, ErrFeatureRange},
		{"varint > int32", binary.AppendVarint([]byte{ValueZigzag, 1}, 1<<31), ErrFeatureRange},
		{"varint < int32", binary.AppendVarint([]byte{ValueZigzag, 1}, -1<<31-1), ErrFeatureRange},
		{"trailing", []byte{ValueUvarint, 1, 5, 0}, ErrTrailingBytes},
		{"overlong varint", []byte{ValueUvarint, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrVarint},
	} {
		if _, err := DecodeRowValue(nil, c.in); !errors.Is(err, c.want) {
			t.Errorf("%s: DecodeRowValue(% x) = %v, want %v", c.name, c.in, err, c.want)
		}
	}
	if _, err := ParseRowKey(make([]byte, 12)); !errors.Is(err, ErrShortKey) {
		t.Errorf("short key: %v", err)
	}
	if _, err := ParseRowKey(make([]byte, 14)); !errors.Is(err, ErrTrailingBytes) {
		t.Errorf("long key: %v", err)
	}
	if _, err := ParseRowKey([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0}); !errors.Is(err, ErrMinuteRange) {
		t.Errorf("minute range: %v", err)
	}
	if _, err := DecodeFeature([]byte{ValueUvarint, 2, 1}, 1); !errors.Is(err, ErrVarint) {
		t.Errorf("DecodeFeature past end: %v", err)
	}
	if _, err := DecodeFeature([]byte{ValueUvarint, 2, 1, 2}, 2); !errors.Is(err, ErrFeatureCount) {
		t.Errorf("DecodeFeature index: %v", err)
	}
}

// FuzzDecodeRowBinary: no input makes the decoder panic, and anything it
// accepts re-encodes to the same bytes (the encoding is canonical, except
// for a zigzag value with no negative feature, which re-encodes smaller).
func FuzzDecodeRowBinary(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	f.Add(AppendRowBinary(nil, 28_600_000, 1, 0x882a100d65fffff, syntheticRow(r, nil)))
	f.Add(AppendRowBinary(nil, 0, 0, 0, []int32{-1, 5}))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, feats, err := DecodeRowBinary(nil, b)
		if err != nil {
			return
		}
		if len(feats) > MaxFeatures {
			t.Fatalf("%d features accepted", len(feats))
		}
		again := AppendRowBinary(nil, k.Minute, k.Product, k.Cell, feats)
		if b[RowKeyLen] == ValueUvarint && !bytes.Equal(again, b) {
			// Uvarints with redundant 0x80 continuation bytes decode too
			// (encoding/binary accepts them); compare values instead.
			_, feats2, err := DecodeRowBinary(nil, again)
			if err != nil || !slices.Equal(feats, feats2) {
				t.Fatalf("re-encoding differs: % x vs % x", b, again)
			}
		}
		for i := range feats {
			if v, err := DecodeFeature(b[RowKeyLen:], i); err != nil || v != feats[i] {
				t.Fatalf("DecodeFeature(%d) = %d, %v; want %d", i, v, err, feats[i])
			}
		}
	})
}

// TestBinarySize measures bytes per row on synthetic dense-metro rows and
// logs the comparison quoted in FORMAT.md (go test -run BinarySize -v).
func TestBinarySize(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const rows = 10000
	var f []int32
	var varint, fixed32, float64s int
	var buf []byte
	for range rows {
		f = syntheticRow(r, f)
		buf = AppendRowBinary(buf[:0], 28_600_000, 1, 0x882a100d65fffff, f)
		varint += len(buf)
		fixed32 += RowKeyLen + 1 + 1 + 4*len(f)
		float64s += RowKeyLen + 1 + 1 + 8*len(f)
	}
	avg := float64(varint) / rows
	t.Logf("bytes/row over %d synthetic rows of 54 features: varint %.1f, fixed int32 %.1f, float64 %.1f",
		rows, avg, float64(fixed32)/rows, float64(float64s)/rows)
	if avg > 150 {
		t.Errorf("varint rows average %.1f bytes, expected well under fixed int32's 231", avg)
	}
}

func BenchmarkAppendRowBinary(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	f := syntheticRow(r, nil)
	buf := AppendRowBinary(nil, 1, 1, 1, f)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRowBinary(buf[:0], 28_600_000, 1, 0x882a100d65fffff, f)
	}
}

func BenchmarkDecodeRowBinary(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	buf := AppendRowBinary(nil, 1, 1, 1, syntheticRow(r, nil))
	dst := make([]int32, 0, 64)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if _, dst, err = DecodeRowBinary(dst[:0], buf); err != nil {
			b.Fatal(err)
		}
	}
}
