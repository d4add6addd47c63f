package cqltest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// murmur3Vectors are tokens computed by the DataStax Python driver's
// cassandra.murmur3.murmur3 (its C extension, cmurmur3.c, which reads the
// key as int8_t as Cassandra's MurmurHash.hash3_x64_128 does), over keys
// of every tail length with bytes >= 0x80 in the tail: a plain MurmurHash3
// gives other values for those. The empty key is Cassandra's
// Murmur3Partitioner#getToken: the minimum token (the hash would be 0).
var murmur3Vectors = []struct {
	key   string // hex
	token int64
}{
	{"", math.MinInt64},
	{"00", 5048724184180415669},
	{"80", -5284281814142962636},
	{"ffffffffffffffff", 7071048584287372947},
	{"00000001", -4069959284402364209},
	{"68656c6c6f", -3758069500696749310},
	{"808080808080808080808080808080", -5979218241483680930},
	{"000102030405060708090a0b0c0d0e0f", 4920504430128807728},
	{"707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f90", 3355624033672326391},
	{"c59b636965c5bc6b61", 7745277650545217691},
	{"a5", 9102176746827431674},
	{"4dca182530bb1d", 4381027019092811981},
	{"6d132cded6237b2e", -3211192042252342540},
	{"d91e3f721fcb197117", 2520750961035239952},
	{"4494d6493c9d5c3460be31201e69fe", 737535422156586352},
	{"daa0eee8b9997f5c7c2999fdafe59325", 3329740884608607116},
	{"3cd654af4dfad71427a0aeb3fee9232f8a", 51547338089618699},
	{"f2211f9ee491c5b10becb5563bfc1e6f93427ecbc8fe2955e5cd8e46dc8ed4", -5367557412512061230},
	{"b7c2764d2a5a4d767706f85d8690024ad6bda3401be9c8cbccc935f6cd1f6122", 2658679643610487009},
	{"6ae15338ae1a34004d33ba0d246ac04c81b1baf23e3bf9eef5f79f2b4934af87f5", 8503736298242953218},
	{"520b69b94b0d982e85bb55b672a872637acd7466fcb60e0e8ff18463b0e4b2ba29703474f064ac68f700f5b02b3dc6", 6083013876435923253},
}

func TestMurmur3TokenGolden(t *testing.T) {
	for _, v := range murmur3Vectors {
		key, err := hex.DecodeString(v.key)
		if err != nil {
			t.Fatal(err)
		}
		if got := murmur3Token(key); got != v.token {
			t.Errorf("token(%s) = %d, want %d", v.key, got, v.token)
		}
	}
}

// TestMurmur3TokenMatchesPythonDriver hashes random keys of every length
// up to 80 bytes here and with the Python driver's murmur3, and compares.
func TestMurmur3TokenMatchesPythonDriver(t *testing.T) {
	requirePython(t)
	rng := rand.New(rand.NewPCG(22, 8))
	var keys []string
	var want []int64
	for n := 1; n <= 80; n++ {
		for range 5 {
			k := make([]byte, n)
			for i := range k {
				k[i] = byte(rng.Uint32())
			}
			keys = append(keys, hex.EncodeToString(k))
			want = append(want, murmur3Token(k))
		}
	}
	script := "import sys\nfrom cassandra.murmur3 import murmur3\nfor line in sys.stdin:\n    print(murmur3(bytes.fromhex(line.strip())))\n"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", script)
	cmd.Stdin = strings.NewReader(strings.Join(keys, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	got := strings.Fields(string(out))
	if len(got) != len(keys) {
		t.Fatalf("python hashed %d keys, want %d", len(got), len(keys))
	}
	for i, g := range got {
		if g != strconv.FormatInt(want[i], 10) {
			t.Errorf("token(%s) = %d here, %s in the Python driver", keys[i], want[i], g)
		}
	}
}

// TestRoutingKeyComposite pins the CompositeType encoding of a partition
// key of several components.
func TestRoutingKeyComposite(t *testing.T) {
	one := []byte{0, 0, 0, 7}
	if got := routingKey([][]byte{one}); !bytes.Equal(got, one) {
		t.Fatalf("one component: %x", got)
	}
	got := routingKey([][]byte{{0, 0, 0, 7}, []byte("ab")})
	want := []byte{0, 4, 0, 0, 0, 7, 0, 0, 2, 'a', 'b', 0}
	if !bytes.Equal(got, want) {
		t.Fatalf("composite %x, want %x", got, want)
	}
}

// TestNodeTokens: evenly spaced from the minimum token, ascending, and
// the DataStax documentation's three-node tokens.
func TestNodeTokens(t *testing.T) {
	if got := nodeTokens(1); len(got) != 1 || got[0] != 0 {
		t.Fatalf("one node: %v", got)
	}
	want3 := []int64{-9223372036854775808, -3074457345618258603, 3074457345618258602}
	if got := nodeTokens(3); fmt.Sprint(got) != fmt.Sprint(want3) {
		t.Fatalf("three nodes: %v, want %v", got, want3)
	}
	for n := 2; n <= MaxNodes; n++ {
		tk := nodeTokens(n)
		for i := 1; i < n; i++ {
			if tk[i] <= tk[i-1] {
				t.Fatalf("%d nodes: tokens not ascending: %v", n, tk)
			}
		}
	}
}

// TestReplicasMatchReference: primary and replicas against a naive
// reference: sort (token, node) pairs, walk clockwise from the first
// token >= the key's, take rf distinct nodes.
func TestReplicasMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 1; n <= 7; n++ {
		tokens := nodeTokens(n)
		for range 200 {
			var key [8]byte
			binary.BigEndian.PutUint64(key[:], rng.Uint64())
			tk := murmur3Token(key[:])
			start := n
			for i := range n { // reference: linear search, wrap to 0
				if tokens[i] >= tk {
					start = i
					break
				}
			}
			if start == n {
				start = 0
			}
			prim := primary(tokens, tk)
			if prim != start {
				t.Fatalf("n=%d token %d: primary %d, want %d", n, tk, prim, start)
			}
			for rf := 0; rf <= n+1; rf++ {
				member := map[int]bool{}
				for j := 0; j < min(rf, n); j++ {
					member[(start+j)%n] = true
				}
				for i := range n {
					if isReplica(i, prim, min(rf, n), n) != member[i] {
						t.Fatalf("n=%d rf=%d token %d: node %d replica %v", n, rf, tk, i, !member[i])
					}
				}
			}
		}
	}
}
