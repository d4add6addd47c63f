package murmur3

import "testing"

func TestGolden(t *testing.T) {
	// MurmurHash3 x86_32, seed 0 (reference values), masked to 31 bits as
	// Pulsar's Murmur3_32Hash.makeHash does.
	for _, tc := range []struct {
		in   string
		want uint32
	}{
		{"", 0},
		{"a", 0x3c2569b2},
		{"hello", 0x248bfa47},
		{"The quick brown fox jumps over the lazy dog", 0x2e4ff723},
	} {
		if got := Sum32([]byte(tc.in)); got != tc.want {
			t.Errorf("Sum32(%q) = %#x, want %#x", tc.in, got, tc.want)
		}
		if got := Sum31([]byte(tc.in)); got != tc.want&0x7fffffff {
			t.Errorf("Sum31(%q) = %#x, want %#x", tc.in, got, tc.want&0x7fffffff)
		}
	}
}
