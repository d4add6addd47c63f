// Package murmur3 is MurmurHash3 x86_32 (seed 0), the hash Pulsar's
// Key_Shared subscriptions route keys by: the broker test double and the
// scale-out's owners of key slots must agree with the broker on it.
// (github.com/spaolacci/murmur3 does pointer arithmetic that -race's
// checkptr refuses.)
package murmur3

import (
	"encoding/binary"
	"math/bits"
)

// Sum31 is MurmurHash3 x86_32 with seed 0, masked to 31 bits: what the
// Pulsar broker's Murmur3_32Hash.makeHash returns for a Key_Shared sticky
// key (Sum32 & 0x7fffffff).
func Sum31(b []byte) uint32 { return Sum32(b) & 0x7fffffff }

// Sum32 is MurmurHash3 x86_32 with seed 0.
func Sum32(b []byte) uint32 {
	const c1, c2 = 0xcc9e2d51, 0x1b873593
	var h uint32
	n := len(b)
	for len(b) >= 4 {
		k := binary.LittleEndian.Uint32(b)
		k *= c1
		k = bits.RotateLeft32(k, 15)
		k *= c2
		h ^= k
		h = bits.RotateLeft32(h, 13)
		h = h*5 + 0xe6546b64
		b = b[4:]
	}
	var k uint32
	for i, x := range b {
		k ^= uint32(x) << (8 * i)
	}
	k *= c1
	k = bits.RotateLeft32(k, 15)
	k *= c2
	h ^= k
	h ^= uint32(n)
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
