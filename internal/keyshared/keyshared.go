// Package keyshared is what a Pulsar Key_Shared consumer with sticky hash
// ranges needs to know of its keys: where the broker puts a key (Slot) and
// whether a consumer's ranges hold it. The scale-out's aggregate processes
// own key slots of the internal topic this way, and dedup processes the
// riders of the raw topic.
package keyshared

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/demandpipe/demandpipe/internal/murmur3"
)

// HashSpace is the size of Key_Shared's hash space (the broker's
// DEFAULT_HASH_RANGE_SIZE).
const HashSpace = 1 << 16

// Slot is where the broker puts a key: Murmur3 x86_32 (seed 0) masked to
// 31 bits, modulo the hash space.
func Slot(key []byte) int { return int(murmur3.Sum31(key)) % HashSpace }

// ParseRanges reads sticky hash ranges "a-b,c-d" (inclusive, 0..65535) as
// the flat list [a b c d] pulsar.NewKeySharedPolicySticky takes.
func ParseRanges(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(part), "-")
		x, err1 := strconv.Atoi(a)
		y, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || x < 0 || y >= HashSpace || x > y {
			return nil, fmt.Errorf("hash ranges %q: want a-b[,c-d...] with 0 <= a <= b <= %d", s, HashSpace-1)
		}
		out = append(out, x, y)
	}
	return out, nil
}

// Holds reports whether ranges (as ParseRanges returns them) hold key.
func Holds(ranges []int, key []byte) bool {
	h := Slot(key)
	for i := 0; i+1 < len(ranges); i += 2 {
		if h >= ranges[i] && h <= ranges[i+1] {
			return true
		}
	}
	return false
}
