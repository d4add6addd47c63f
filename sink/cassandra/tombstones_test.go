package cassandra

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/internal/cqltest"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestMinutesListStaysReadable: a sink that has run for many TTLs leaves
// the Store's read of the minutes list passing no more than a retention's
// worth of tombstones. The pipeline's minutes rows are one partition that
// no compaction purges (cqltest keeps tombstones, Config.PurgeTombstones
// false, as such a partition's overlapping sstables do): left to expire,
// 400 minutes at a TTL of 10 made the Store's list pass 1,170 tombstones,
// over tombstone_warn_threshold (1,000); with the failure threshold set
// there (production: 100,000, 23 days of minutes) the Store could not
// open. The sink now deletes the minutes past the retention.
func TestMinutesListStaysReadable(t *testing.T) {
	t.Parallel()
	clock := &testClock{t: time.Now()}
	srv, err := cqltest.Start(cqltest.Config{Now: clock.Now, TombstoneFailureThreshold: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := testConfig(srv)
	cfg.TTL = 10 * time.Minute
	s, err := Open(context.Background(), cfg, Options{Logf: t.Logf, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const minutes = 400
	m0 := clock.Now().Unix() / 60
	for m := m0; m < m0+minutes; m++ {
		if err := s.CloseMinute(ctx, m); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
	}
	srv.ResetStats()
	st, err := NewStore(ctx, s.Session(), cfg, StoreOptions{Logf: t.Logf, Now: clock.Now})
	if err != nil {
		t.Fatalf("the Store cannot read the minutes list: %v", err)
	}
	mins := st.Minutes(nil)
	if len(mins) < 8 || mins[0].Minute != m0+minutes-1 {
		t.Fatalf("%d minutes listed, newest %d (want %d)", len(mins), mins[0].Minute, m0+minutes-1)
	}
	if ss := srv.Stats(); ss.TombstoneWarnings != 0 || ss.TombstoneFailures != 0 {
		t.Fatalf("reading the minutes list: %d tombstone warnings, %d failures", ss.TombstoneWarnings, ss.TombstoneFailures)
	}
	if n, _ := srv.Rows(cfg.Keyspace, MinutesTable); n > int(cfg.TTL/time.Minute)+1 {
		t.Fatalf("%d live minutes rows", n)
	}
}
