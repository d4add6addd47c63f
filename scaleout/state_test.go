package scaleout

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/pulsartest"
)

// inactiveEvery is how often the test double looks for inactive topics
// in the tests that make it delete them (the broker's default is 60 s).
const inactiveEvery = 200 * time.Millisecond

// waitChecks waits until the double has checked for inactive topics n
// more times.
func waitChecks(t *testing.T, srv *pulsartest.Server, n int64) {
	t.Helper()
	want := srv.Stats().InactiveTopicChecks + n
	deadline := time.Now().Add(time.Duration(n+20) * inactiveEvery)
	for srv.Stats().InactiveTopicChecks < want {
		if time.Now().After(deadline) {
			t.Fatalf("the broker checked for inactive topics %d times in %v, want %d", srv.Stats().InactiveTopicChecks-want+n, time.Duration(n+20)*inactiveEvery, n)
		}
		time.Sleep(inactiveEvery / 4)
	}
}

// TestStateTopicOutlivesItsProcesses (issue 22 P2): two dedup processes
// store checkpoints and stop; the broker deletes inactive topics (every
// 200 ms here) and checks three times while none runs: the internal
// topic, with no subscription, goes; the state topic stays, with each
// process's latest checkpoint, which LoadCheckpoint returns. Its
// subscription's backlog is one checkpoint per process: each checkpoint
// acknowledges the one before, and a restarted process's first one
// acknowledges those of its earlier starts. (Before StateSubscription the
// state topic went too and LoadCheckpoint found nothing.)
func TestStateTopicOutlivesItsProcesses(t *testing.T) {
	t.Parallel()
	srv, client := startBrokerWith(t, pulsartest.Config{DeleteInactiveTopicsFrequency: inactiveEvery})
	cfg := DefaultConfig()
	cfg.Topic, cfg.Slots = "persistent://public/default/counted", 4
	def := feature.Definition{Resolution: 8, Rings: []int{0, 1}, Windows: []int{1, 2}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	state := cfg.StateTopic()
	backlog := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second) // acknowledgements are grouped for up to 100 ms
		for {
			st, ok := srv.Subscription(state, StateSubscription)
			if ok && st.Backlog == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("subscription %s on the state topic: %+v (exists %v), want a backlog of %d", StateSubscription, st, ok, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	run := func(src uint32, minutes ...int64) {
		t.Helper()
		pub, err := NewPublisher(ctx, client, cfg, src, def)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range minutes {
			if err := pub.Checkpoint(m, fmt.Appendf(nil, "process %d through %d", src, m)); err != nil {
				t.Fatal(err)
			}
		}
		if err := pub.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	run(0, 10, 11, 12, 13, 14)
	run(1, 12, 13)
	backlog(2)
	if srv.TopicEntries(state) != 7 {
		t.Fatalf("%d entries on the state topic, want 7", srv.TopicEntries(state))
	}

	waitChecks(t, srv, 3)
	// The internal topic goes (once, or twice when a check fell between the
	// two processes on a loaded machine: it is made again by the second);
	// the state topic stays whole.
	if st := srv.Stats(); st.TopicsDeleted < 1 || srv.TopicEntries(cfg.Topic) != 0 || srv.TopicEntries(state) != 7 {
		t.Fatalf("%d topics deleted, the internal topic has %d entries, the state topic %d: want the internal one deleted and the state topic's 7 kept", st.TopicsDeleted, srv.TopicEntries(cfg.Topic), srv.TopicEntries(state))
	}
	for src, want := range []string{"process 0 through 14", "process 1 through 13"} {
		raw, err := LoadCheckpoint(ctx, client, cfg, uint32(src))
		if err != nil {
			t.Fatal(err)
		}
		if string(raw) != want {
			t.Fatalf("process %d's checkpoint after the broker's checks: %q, want %q", src, raw, want)
		}
	}

	// Process 0 starts again: its first checkpoint replaces its last one.
	run(0, 15)
	backlog(2)
	if raw, err := LoadCheckpoint(ctx, client, cfg, 0); err != nil || string(raw) != "process 0 through 15" {
		t.Fatalf("process 0's checkpoint after its restart: %q %v", raw, err)
	}
}
