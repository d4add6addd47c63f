package cqltest

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// The token ring: with Config.Nodes > 1 each node owns one Murmur3 token,
// and a partition lives on the next replication-factor distinct nodes
// clockwise from its key's token, as Cassandra places it. The double keeps
// one copy of every row whatever the ring says; the ring only decides which
// nodes are a partition's replicas, for the consistency check (how many of
// them are live) and for Stats.Nodes (did a replica coordinate the write).

// murmur3Token is the token Cassandra's Murmur3Partitioner gives a
// partition key (its routing key, routingKey): the first 64 bits of the
// x64 128-bit MurmurHash3 with seed 0, as
// org.apache.cassandra.dht.Murmur3Partitioner#getToken computes it with
// org.apache.cassandra.utils.MurmurHash#hash3_x64_128, with two departures
// from the reference MurmurHash3 that Cassandra keeps for compatibility:
//
//   - the tail (the last length%16 bytes) is read with ByteBuffer.get, a
//     signed Java byte, and cast to long before the shift: a byte >= 0x80
//     is sign-extended and sets every higher bit of k1 or k2 (the body's
//     getblock masks with & 0xff, so full blocks are unaffected);
//   - the result is normalised: Long.MIN_VALUE, the ring's minimum token
//     that no key may own, becomes Long.MAX_VALUE; and an empty key is
//     the minimum token itself.
//
// The DataStax drivers reproduce the same quirk (the Python driver's
// cmurmur3.c reads the key as int8_t; gocql's internal/murmur does too).
func murmur3Token(key []byte) int64 {
	if len(key) == 0 {
		return math.MinInt64
	}
	const c1, c2 = 0x87c37b91114253d5, 0x4cf5ad432745937f
	var h1, h2 uint64
	n := len(key)
	nblocks := n / 16
	for i := range nblocks {
		k1 := binary.LittleEndian.Uint64(key[i*16:])
		k2 := binary.LittleEndian.Uint64(key[i*16+8:])
		k1 *= c1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= c2
		h1 ^= k1
		h1 = bits.RotateLeft64(h1, 27)
		h1 += h2
		h1 = h1*5 + 0x52dce729
		k2 *= c2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= c1
		h2 ^= k2
		h2 = bits.RotateLeft64(h2, 31)
		h2 += h1
		h2 = h2*5 + 0x38495ab5
	}
	tail := key[nblocks*16:]
	// signed is Java's (long) key.get(i): the byte sign-extended.
	signed := func(i int) uint64 { return uint64(int64(int8(tail[i]))) }
	var k1, k2 uint64
	for i := len(tail) - 1; i >= 8; i-- {
		k2 ^= signed(i) << (8 * (i - 8))
	}
	if len(tail) > 8 {
		k2 *= c2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= c1
		h2 ^= k2
	}
	for i := min(len(tail), 8) - 1; i >= 0; i-- {
		k1 ^= signed(i) << (8 * i)
	}
	if len(tail) > 0 {
		k1 *= c1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= c2
		h1 ^= k1
	}
	h1 ^= uint64(n)
	h2 ^= uint64(n)
	h1 += h2
	h2 += h1
	h1 = fmix64(h1)
	h2 = fmix64(h2)
	h1 += h2
	if t := int64(h1); t != math.MinInt64 {
		return t
	}
	return math.MaxInt64
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// routingKey is the byte string Cassandra hashes for a partition key of
// the given components: the value itself for one component; for several,
// the CompositeType encoding, each component as a 2-byte big-endian length,
// the value and an end-of-component byte 0
// (org.apache.cassandra.db.marshal.CompositeType#build, which
// CFMetaData/TableMetadata's partition key serialisation uses).
func routingKey(pk [][]byte) []byte {
	if len(pk) == 1 {
		return pk[0]
	}
	n := 0
	for _, c := range pk {
		n += 3 + len(c)
	}
	b := make([]byte, 0, n)
	for _, c := range pk {
		b = binary.BigEndian.AppendUint16(b, uint16(len(c)))
		b = append(b, c...)
		b = append(b, 0)
	}
	return b
}

// nodeTokens are the nodes' tokens, in node order and ascending: with one
// node, 0 (it owns the whole ring whatever its token); with n > 1, evenly
// spaced, i*(2^64/n) - 2^63, the initial_token formula of the DataStax
// documentation for Murmur3 ("Generating tokens": node 0 has -2^63).
func nodeTokens(n int) []int64 {
	if n <= 1 {
		return []int64{0}
	}
	step, _ := bits.Div64(1, 0, uint64(n)) // 2^64 / n
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(uint64(i)*step + 1<<63)
	}
	return out
}

// primary is the index of the node owning token t: the first node whose
// token is >= t, wrapping to the first (TokenMetadata.firstToken; node
// tokens are ascending in node order).
func primary(tokens []int64, t int64) int {
	for i, nt := range tokens {
		if nt >= t {
			return i
		}
	}
	return 0
}

// replicaCount is how many nodes hold a partition of a keyspace with
// placement p: its replication factor in the local data centre (every node
// is there, on one rack), at most the nodes there are. SimpleStrategy and
// NetworkTopologyStrategy then both take the next that many distinct nodes
// clockwise from the primary (AbstractReplicationStrategy
// calculateNaturalReplicas; NetworkTopologyStrategy with one rack).
func (p *placement) replicaCount(localDC string, nodes int) int {
	return min(p.factorIn(localDC), nodes)
}

// isReplica reports whether node i is one of the rf replicas of a
// partition whose primary is node prim, in a ring of n nodes.
func isReplica(i, prim, rf, n int) bool {
	return (i-prim+n)%n < rf
}
