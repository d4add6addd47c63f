package store

import (
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/sink"
)

var soakMinutes = flag.Int("store.soak-minutes", 0, "run TestRetentionSoak over this many minutes (e.g. 1000)")

func TestRetention(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(dir)
	c.Retention = 5 * time.Minute
	c.CompactEvery = 3
	s := openTest(t, c)
	names := encode.NewProducts()
	cells := testCells(200)
	for i := range 20 {
		writeMinute(t, s, names, testMinute0+int64(i), 2, cells, 100)
	}
	s.bg.Wait()
	mins := s.Minutes(nil)
	if len(mins) != 5 || mins[0].Minute != testMinute0+19 || mins[4].Minute != testMinute0+15 {
		t.Fatalf("Minutes = %+v", mins)
	}
	if _, err := s.Get(nil, testMinute0+14, testProduct(0), cells[0]); !errors.Is(err, ErrMinuteNotFound) {
		t.Fatalf("Get of an expired minute: %v", err)
	}
	if got := testutil.ToFloat64(s.met.minutesExpired); got != 15 {
		t.Errorf("minute_expirations_total = %v, want 15", got)
	}
	if got := testutil.ToFloat64(s.met.compactions); got < 1 {
		t.Errorf("compactions_total = %v", got)
	}
	// Physically gone: no key of an expired minute is left (the range
	// tombstones hide them; after a compaction they are dropped).
	if n := countRows(t, s, 0, testMinute0+15); n != 0 {
		t.Fatalf("%d rows of expired minutes still visible", n)
	}
	// A late minute (behind the cutoff) is refused with an error that
	// names the way out, not silently dropped.
	if err := s.CloseMinute(context.Background(), testMinute0+3); err == nil ||
		!strings.Contains(err.Error(), "older than the store's retention window") || !strings.Contains(err.Error(), "-sink=store:NEWDIR") {
		t.Fatalf("late minute: err = %v", err)
	}
	if _, ok := s.Minute(testMinute0 + 3); ok {
		t.Fatal("a minute past retention was stored")
	}
	s.Close()

	s = openTest(t, c)
	defer s.Close()
	if got := s.Minutes(nil); len(got) != 5 {
		t.Fatalf("after reopen: %d minutes", len(got))
	}
	writeMinute(t, s, names, testMinute0+20, 2, cells, 100)
	if mins := s.Minutes(nil); len(mins) != 5 || mins[4].Minute != testMinute0+16 {
		t.Fatalf("after reopen and a minute: %+v", mins)
	}
	for _, mi := range s.Minutes(nil) {
		checkMinute(t, s, mi.Minute, 2, cells)
	}
}

func countRows(t testing.TB, s *Store, lo, hi int64) int {
	it, err := s.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.SeekGE(encode.AppendMinuteKey([]byte{tagRow}, lo)); it.Valid(); it.Next() {
		k := it.Key()
		if k[0] != tagRow {
			break
		}
		rk, err := encode.ParseRowKey(k[1:])
		if err != nil {
			t.Fatal(err)
		}
		if rk.Minute >= hi {
			break
		}
		n++
	}
	return n
}

// diskAfter writes minutes [from, to) and returns the disk usage once the
// memtable is flushed and background compaction is done.
func diskAfter(t testing.TB, s *Store, names *encode.Products, from, to int64, cells []uint64) uint64 {
	for m := from; m < to; m++ {
		writeMinute(t, s, names, testMinute0+m, 1, cells, 1000)
	}
	s.bg.Wait()
	// A compaction still running at the last commit defers its range to
	// the next commit; there is none here, so run the deferred one (on a
	// loaded machine the test measured before it, and flaked).
	if w := &s.w; w.cutoff > w.compacted && s.compact(w.compacted, w.cutoff) {
		s.bg.Wait()
		w.compacted = w.cutoff
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	return s.db.Metrics().DiskSpaceUsage()
}

// TestRetentionBoundsDisk: on a run much longer than the retention the
// store's size levels off instead of growing with the run.
func TestRetentionBoundsDisk(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	c := testConfig(t.TempDir())
	c.Retention = 3 * time.Minute
	c.CompactEvery = 2
	c.MemTableBytes = 1 << 20
	s := openTest(t, c)
	defer s.Close()
	names := encode.NewProducts()
	cells := testCells(3000)
	early := diskAfter(t, s, names, 0, 10, cells)
	late := diskAfter(t, s, names, 10, 40, cells)
	// Pebble deletes obsolete files in the background, paced: on a loaded
	// machine the measure can come before they go. Give it a few seconds.
	for deadline := time.Now().Add(5 * time.Second); late > early*3/2 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		late = s.db.Metrics().DiskSpaceUsage()
	}
	t.Logf("disk after 10 minutes %d bytes, after 40 minutes %d bytes (retention 3 minutes, ~2,000 rows/minute)", early, late)
	if late > early*3/2 {
		t.Fatalf("store grew from %d to %d bytes over 30 more minutes", early, late)
	}
}

// TestRetentionSoak is the endless-run check, behind -store.soak-minutes:
// default retention and compaction, a dense minute of 20,000 cells, disk
// size logged every 100 minutes.
func TestRetentionSoak(t *testing.T) {
	if *soakMinutes == 0 {
		t.Skip("soak: run with -store.soak-minutes=N")
	}
	c := testConfig(t.TempDir())
	s := openTest(t, c)
	defer s.Close()
	names := encode.NewProducts()
	cells := testCells(20000)
	var peak uint64
	for m := 0; m < *soakMinutes; m += 100 {
		start := time.Now()
		d := diskAfter(t, s, names, int64(m), int64(m+100), cells)
		peak = max(peak, d)
		t.Logf("minutes %5d: disk %6.1f MB, %.1f ms/minute", m+100, float64(d)/1e6, float64(time.Since(start).Milliseconds())/100)
	}
	t.Logf("peak %.1f MB", float64(peak)/1e6)
}

// TestFarFutureMinuteRefused: one minute from a bad clock (the year 9999)
// neither wipes the store nor moves its retention clock: it is refused,
// and the real minutes stay readable and writable.
func TestFarFutureMinuteRefused(t *testing.T) {
	c := testConfig(t.TempDir())
	c.Retention = 5 * time.Minute
	now := time.Unix((testMinute0+10)*60, 0)
	c.Now = func() time.Time { return now }
	s := openTest(t, c)
	defer s.Close()
	names := encode.NewProducts()
	cells := testCells(50)
	for i := range 5 {
		writeMinute(t, s, names, testMinute0+int64(i), 1, cells, 100)
	}
	err := s.CloseMinute(context.Background(), encode.MaxMinute)
	if err == nil || !strings.Contains(err.Error(), "after this machine's clock") {
		t.Fatalf("far-future minute: err = %v", err)
	}
	// 11 minutes ahead of the clock: past -store.max-ahead=10m too.
	if err := s.CloseMinute(context.Background(), testMinute0+21); err == nil {
		t.Fatal("a minute 11 minutes ahead of the clock was accepted")
	}
	if got := len(s.Minutes(nil)); got != 5 {
		t.Fatalf("%d minutes left, want 5", got)
	}
	writeMinute(t, s, names, testMinute0+5, 1, cells, 100)
	if _, ok := s.Minute(testMinute0 + 5); !ok {
		t.Fatal("the next real minute was not stored")
	}
}

// TestRetentionFollowsEventTime: the retention clock follows the newest
// minute closed by event time (sink.State.Clock), not the newest closed
// minute: minutes the end of an input closes for its last few riders (15
// made-up riders with the current time after a day-old replay) expire
// nothing, also after a reopen; a minute event time closes does move it.
func TestRetentionFollowsEventTime(t *testing.T) {
	c := testConfig(t.TempDir())
	c.Retention = 5 * time.Minute
	now := time.Unix((testMinute0+24*60)*60, 0) // the replay is a day old
	c.Now = func() time.Time { return now }
	s := openTest(t, c)
	names := encode.NewProducts()
	cells := testCells(20)
	closeWith := func(m, clock int64) {
		t.Helper()
		s.StageState(m, sink.State{Clock: clock})
		writeMinute(t, s, names, m, 1, cells, 100)
	}
	for i := range int64(5) {
		closeWith(testMinute0+i, testMinute0+i) // closed by event time
	}
	tail := int64(testMinute0 + 24*60)
	closeWith(tail, testMinute0+4) // closed only by the end of the input
	if got := len(s.Minutes(nil)); got != 6 {
		t.Fatalf("%d minutes listed after the tail minute, want 6: the tail moved the retention clock", got)
	}
	s.Close()
	s = openTest(t, c)
	defer s.Close()
	writeMinute(t, s, names, testMinute0+5, 1, cells, 100) // a later run of the replay, without state
	if got := len(s.Minutes(nil)); got != 6 {
		t.Fatalf("%d minutes listed after a reopen and the next real minute, want 6 (testMinute0 expires, 1..5 and the tail stay)", got)
	}
	if _, ok := s.Minute(testMinute0 + 1); !ok {
		t.Fatal("a replay minute expired")
	}
	s.StageState(tail+1, sink.State{Clock: tail + 1})
	writeMinute(t, s, names, tail+1, 1, cells, 100)
	if got := len(s.Minutes(nil)); got != 2 {
		t.Fatalf("%d minutes listed once event time reached the tail, want 2", got)
	}
}
