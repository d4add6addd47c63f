package pulsartest

import (
	"math/rand/v2"
	"testing"
)

func TestStickyKeyChoice(t *testing.T) {
	if k := stickyKey(msgMeta{partitionKey: "pk", orderingKey: []byte("ok")}); string(k) != "ok" {
		t.Errorf("ordering key should win, got %q", k)
	}
	if k := stickyKey(msgMeta{partitionKey: "cGs=", partitionKeyB64: true}); string(k) != "pk" {
		t.Errorf("base64 partition key: %q", k)
	}
	if k := stickyKey(msgMeta{}); string(k) != "NONE_KEY" {
		t.Errorf("no key: %q", k)
	}
}

// TestAutoSplitMatchesReference drives the selector with random joins and
// leaves and checks, slot by slot, against a direct model of Pulsar's
// HashRangeAutoSplitStickyKeyConsumerSelector (a map of range end ->
// consumer, ceiling lookup).
func TestAutoSplitMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var k keySelector
	ref := map[int32]*consumer{} // range end -> consumer
	var live []*consumer
	refOwner := func(slot int32) *consumer {
		best := int32(-1)
		for end := range ref {
			if end >= slot && (best < 0 || end < best) {
				best = end
			}
		}
		return ref[best]
	}
	for step := range 300 {
		if len(live) == 0 || (len(live) < 40 && rng.IntN(3) > 0) {
			c := &consumer{name: string(rune('a' + step%26))}
			if len(ref) == 0 {
				ref[hashRangeSize] = c
			} else {
				var bestEnd, bestSize int32
				for end := range ref {
					lower := int32(0)
					for e2 := range ref {
						if e2 < end && e2 > lower {
							lower = e2
						}
					}
					if size := end - lower; size > bestSize || (size == bestSize && end < bestEnd) {
						bestEnd, bestSize = end, size
					}
				}
				ref[bestEnd-bestSize>>1] = c
			}
			if err := k.add(c, false, nil); err != nil {
				t.Fatal(err)
			}
			live = append(live, c)
		} else {
			i := rng.IntN(len(live))
			c := live[i]
			live = append(live[:i], live[i+1:]...)
			for end, o := range ref {
				if o != c {
					continue
				}
				delete(ref, end)
				if end == hashRangeSize && len(ref) > 0 {
					var lower int32
					for e2 := range ref {
						lower = max(lower, e2)
					}
					ref[hashRangeSize] = ref[lower]
					delete(ref, lower)
				}
				break
			}
			k.remove(c)
		}
		for slot := int32(0); slot < hashRangeSize; slot += 97 {
			if got, want := k.owner(slot), refOwner(slot); got != want {
				t.Fatalf("step %d slot %d: owner %p, reference %p", step, slot, got, want)
			}
		}
	}
}

func TestStickyRangesRejectOverlap(t *testing.T) {
	var k keySelector
	a, b := &consumer{name: "a"}, &consumer{name: "b"}
	if err := k.add(a, true, []hashRange{{0, 100}}); err != nil {
		t.Fatal(err)
	}
	if err := k.add(b, true, []hashRange{{100, 200}}); err == nil {
		t.Fatal("overlap accepted")
	}
	if err := k.add(b, false, nil); err == nil {
		t.Fatal("AUTO_SPLIT mixed into STICKY")
	}
	if err := k.add(b, true, []hashRange{{101, 200}}); err != nil {
		t.Fatal(err)
	}
	if k.owner(100) != a || k.owner(101) != b || k.owner(201) != nil {
		t.Fatal("sticky owners wrong")
	}
}
