package pulsartest

import (
	"fmt"
	"slices"
)

// hashRangeSize is the Key_Shared hash space, 2^16 slots as in Pulsar
// (StickyKeyConsumerSelector.DEFAULT_RANGE_SIZE).
const hashRangeSize = 1 << 16

// keySelector maps Key_Shared hash slots to consumers.
//
// AUTO_SPLIT follows Pulsar's HashRangeAutoSplitStickyKeyConsumerSelector.
// Ranges are keyed by their upper end (65536 for the top one) and slot s
// belongs to the range with the smallest end >= s. The first consumer owns
// everything; each new consumer splits the largest range and takes its
// lower half; when a consumer leaves, the range above absorbs its slots (for
// the top range, the consumer below takes it over).
//
// STICKY uses the ranges each consumer declares; overlapping ranges are
// refused, and slots nobody declared are not delivered until someone does.
type keySelector struct {
	sticky bool
	splits []split     // AUTO_SPLIT, sorted by end
	owners []*consumer // STICKY, in join order
}

type split struct {
	end int32
	c   *consumer
}

func (k *keySelector) count() int { return len(k.splits) + len(k.owners) }

func (k *keySelector) add(c *consumer, sticky bool, ranges []hashRange) error {
	if k.count() > 0 && sticky != k.sticky {
		return fmt.Errorf("%w: cannot mix AUTO_SPLIT and STICKY consumers", errAssign)
	}
	k.sticky = sticky
	if sticky {
		if len(ranges) == 0 {
			return fmt.Errorf("%w: STICKY consumer without hash ranges", errAssign)
		}
		for _, r := range ranges {
			if r.start < 0 || r.end >= hashRangeSize || r.start > r.end {
				return fmt.Errorf("%w: range [%d, %d] outside [0, %d]", errAssign, r.start, r.end, hashRangeSize-1)
			}
			for _, o := range k.owners {
				for _, q := range o.ranges {
					if r.start <= q.end && q.start <= r.end {
						return fmt.Errorf("%w: range [%d, %d] overlaps [%d, %d] of consumer %q",
							errAssign, r.start, r.end, q.start, q.end, o.name)
					}
				}
			}
		}
		c.ranges = slices.Clone(ranges)
		k.owners = append(k.owners, c)
		return nil
	}
	if len(k.splits) == 0 {
		k.splits = []split{{end: hashRangeSize, c: c}}
		k.refreshRanges()
		return nil
	}
	best, size := 0, int32(0)
	for i, sp := range k.splits {
		lower := int32(0)
		if i > 0 {
			lower = k.splits[i-1].end
		}
		if sp.end-lower > size {
			best, size = i, sp.end-lower
		}
	}
	if size <= 1 {
		return fmt.Errorf("%w: no hash range left to split among %d consumers", errAssign, len(k.splits))
	}
	end := k.splits[best].end - size>>1
	k.splits = slices.Insert(k.splits, best, split{end: end, c: c})
	k.refreshRanges()
	return nil
}

func (k *keySelector) remove(c *consumer) {
	if k.sticky {
		if i := slices.Index(k.owners, c); i >= 0 {
			k.owners = slices.Delete(k.owners, i, i+1)
		}
		return
	}
	for i, sp := range k.splits {
		if sp.c != c {
			continue
		}
		if i == len(k.splits)-1 && i > 0 {
			// The top range must stay: the consumer below takes it over.
			k.splits[i].c = k.splits[i-1].c
			k.splits = slices.Delete(k.splits, i-1, i)
		} else {
			k.splits = slices.Delete(k.splits, i, i+1)
		}
		break
	}
	k.refreshRanges()
}

// refreshRanges records each AUTO_SPLIT consumer's inclusive slot range,
// for HashRanges and tests.
func (k *keySelector) refreshRanges() {
	for i, sp := range k.splits {
		lower := int32(0)
		if i > 0 {
			lower = k.splits[i-1].end + 1
		}
		sp.c.ranges = []hashRange{{start: lower, end: min(sp.end, hashRangeSize-1)}}
	}
}

func (k *keySelector) owner(slot int32) *consumer {
	if k.sticky {
		for _, o := range k.owners {
			for _, r := range o.ranges {
				if slot >= r.start && slot <= r.end {
					return o
				}
			}
		}
		return nil
	}
	i, _ := slices.BinarySearchFunc(k.splits, slot, func(sp split, s int32) int {
		switch {
		case sp.end < s:
			return -1
		case sp.end > s:
			return 1
		}
		return 0
	})
	if i < len(k.splits) {
		return k.splits[i].c
	}
	return nil
}
