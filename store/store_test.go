package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/sink"
)

func TestMain(m *testing.M) {
	if crashChild() {
		return
	}
	// After an injected disk-full failure pebble can leave a table it
	// failed to write open, with its disk-health ticker (TestDiskFull*):
	// pebble's goroutine, gone with the process in real use.
	goleak.VerifyTestMain(norace.M(m), goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/v2/vfs.(*diskHealthCheckingFile).startTicker.func1"))
}

func TestRoundTripAndReopen(t *testing.T) {
	dir := t.TempDir()
	cells := testCells(300)
	s := openTest(t, testConfig(dir))
	names := encode.NewProducts()
	for i := range 3 {
		writeMinute(t, s, names, testMinute0+int64(i), 3, cells, 97)
	}
	for i := range 3 {
		checkMinute(t, s, testMinute0+int64(i), 3, cells)
	}
	if got := s.Products(); len(got) != 3 {
		t.Fatalf("Products = %v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A second run meets the products in another order: its run codes
	// differ, the store's persistent codes must not.
	s = openTest(t, testConfig(dir))
	defer s.Close()
	names2 := encode.NewProducts()
	for _, p := range []int{3, 2, 0, 1} {
		names2.Code(testProduct(p))
	}
	writeMinute(t, s, names2, testMinute0+3, 4, cells, 1000)
	for i := range 3 {
		checkMinute(t, s, testMinute0+int64(i), 3, cells)
	}
	checkMinute(t, s, testMinute0+3, 4, cells)
	if got := s.Products(); !slices.Equal(got, []encode.UUID{testProduct(0), testProduct(1), testProduct(2), testProduct(3)}) {
		t.Fatalf("Products after reopen = %v", got)
	}
	mins := s.Minutes(nil)
	if len(mins) != 4 || mins[0].Minute != testMinute0+3 || mins[3].Minute != testMinute0 {
		t.Fatalf("Minutes = %+v", mins)
	}
	if l, ok := s.LatestMinute(); !ok || l != testMinute0+3 {
		t.Fatalf("LatestMinute = %d %v", l, ok)
	}
}

func TestZeroRowMinute(t *testing.T) {
	s := openTest(t, testConfig(t.TempDir()))
	defer s.Close()
	if _, err := s.Get(nil, testMinute0, testProduct(0), 1); !errors.Is(err, ErrNoMinute) {
		t.Fatalf("Get before any minute: %v", err)
	}
	if _, ok := s.LatestMinute(); ok {
		t.Fatal("LatestMinute on an empty store")
	}
	names := encode.NewProducts()
	writeMinute(t, s, names, testMinute0, 1, testCells(10), 100)
	// Minute +1: nothing happened anywhere; it is closed all the same.
	if err := s.CloseMinute(context.Background(), testMinute0+1); err != nil {
		t.Fatal(err)
	}
	mi, ok := s.Minute(testMinute0 + 1)
	if !ok || mi.Rows != 0 || mi.ClosedMS == 0 {
		t.Fatalf("Minute(+1) = %+v %v", mi, ok)
	}
	if l, _ := s.LatestMinute(); l != testMinute0+1 {
		t.Fatalf("LatestMinute = %d", l)
	}
	r, err := s.Get(make([]int32, 3, 100), testMinute0+1, testProduct(0), testCells(1)[0])
	if err != nil || r.Found || len(r.Features) != 54 || slices.ContainsFunc(r.Features, func(v int32) bool { return v != 0 }) {
		t.Fatalf("Get in a zero-row minute = %+v, %v", r, err)
	}
	rows, err := s.GetMany([]Row{{Features: []int32{7, 7}}}, testMinute0+1, testProduct(0), testCells(5))
	if err != nil || len(rows) != 5 {
		t.Fatalf("GetMany = %v, %v", rows, err)
	}
	for _, r := range rows {
		if r.Found || len(r.Features) != 54 || slices.ContainsFunc(r.Features, func(v int32) bool { return v != 0 }) {
			t.Fatalf("GetMany row in a zero-row minute = %+v", r)
		}
	}
	if _, err := s.Get(nil, testMinute0+2, testProduct(0), 1); !errors.Is(err, ErrMinuteNotFound) {
		t.Fatalf("Get of an open minute: %v", err)
	}
	if _, err := s.Get(nil, testMinute0, testProduct(9), 1); !errors.Is(err, ErrUnknownProduct) {
		t.Fatalf("Get of an unknown product: %v", err)
	}
	if err := s.ScanFeature(testMinute0, testProduct(0), 54, func(uint64, int32) bool { return true }); err == nil {
		t.Fatal("ScanFeature accepted index 54")
	}
}

func TestScanFeature(t *testing.T) {
	s := openTest(t, testConfig(t.TempDir()))
	defer s.Close()
	cells := testCells(50)
	writeMinute(t, s, encode.NewProducts(), testMinute0, 2, cells, 100)
	var f []int32
	n := 0
	err := s.ScanFeature(testMinute0, testProduct(1), 20, func(c uint64, v int32) bool {
		n++
		if f = testFeatures(f, testMinute0, 1, c, 54); f[20] != v {
			t.Fatalf("cell %x feature 20 = %d, want %d", c, v, f[20])
		}
		return n < 5
	})
	if err != nil || n != 5 {
		t.Fatalf("ScanFeature stopped after %d rows: %v", n, err)
	}
}

// TestReplaceMinute: a minute closed twice (a replay after a restart) holds
// the second run's rows only.
func TestReplaceMinute(t *testing.T) {
	s := openTest(t, testConfig(t.TempDir()))
	defer s.Close()
	names := encode.NewProducts()
	cells := testCells(40)
	writeMinute(t, s, names, testMinute0, 1, cells, 100)
	writeMinute(t, s, names, testMinute0+1, 1, cells, 100)
	code, _ := names.Code(testProduct(0))
	b := encode.Batch{Names: names}
	b.Reset(testMinute0, 54)
	b.Cells = append(b.Cells, 42)
	b.Products = append(b.Products, code)
	b.Features = append(b.Features, make([]int32, 54)...)
	b.Features[0] = 5
	if err := s.Write(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseMinute(context.Background(), testMinute0); err != nil {
		t.Fatal(err)
	}
	n := 0
	s.Scan(testMinute0, testProduct(0), func(c uint64, f []int32) bool {
		n++
		if c != 42 || f[0] != 5 {
			t.Errorf("row %x %v survived the replay", c, f[:3])
		}
		return true
	})
	if mi, _ := s.Minute(testMinute0); n != 1 || mi.Rows != 1 {
		t.Fatalf("%d rows after the replay, marker says %d", n, mi.Rows)
	}
	if l, _ := s.LatestMinute(); l != testMinute0+1 {
		t.Fatalf("LatestMinute went back to %d", l)
	}
	checkMinute(t, s, testMinute0+1, 1, cells)
}

func TestWriteErrors(t *testing.T) {
	s := openTest(t, testConfig(t.TempDir()))
	defer s.Close()
	names := encode.NewProducts()
	b := encode.Batch{Names: names}
	b.Reset(testMinute0, 53)
	if err := s.Write(context.Background(), &b); err == nil || !strings.Contains(err.Error(), "53 features") {
		t.Fatalf("53-feature batch: %v", err)
	}
	b.Reset(testMinute0, 54)
	if err := s.Write(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	b.Reset(testMinute0+1, 54)
	if err := s.Write(context.Background(), &b); err == nil {
		t.Fatal("a minute written before the previous one closed")
	}
	if err := s.CloseMinute(context.Background(), encode.MaxMinute+1); err == nil {
		t.Fatal("minute past MaxMinute accepted")
	}
}

func TestDefinitionIsStored(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(dir)
	c.Definition = feature.Definition{Resolution: 7, Rings: []int{0, 2}, Windows: []int{1, 5}}
	s := openTest(t, c)
	s.Close()

	c.Definition = feature.Default()
	if _, err := Open(c, nil); err == nil || !strings.Contains(err.Error(), "res=7;rings=0,2;windows=1,5") {
		t.Fatalf("reopening under another definition: %v", err)
	}
	c.Definition = feature.Definition{}
	s = openTest(t, c)
	defer s.Close()
	if got := s.Definition().String(); got != "res=7;rings=0,2;windows=1,5" {
		t.Fatalf("adopted definition %q", got)
	}
}

func TestReadOnlyAndLock(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(dir)
	s := openTest(t, c)
	if _, err := Open(c, nil); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second writer on one dir: %v", err)
	}
	writeMinute(t, s, encode.NewProducts(), testMinute0, 1, testCells(20), 100)
	s.Close()

	c.ReadOnly = true
	c.Definition = feature.Definition{}
	r := openTest(t, c)
	defer r.Close()
	checkMinute(t, r, testMinute0, 1, testCells(20))
	if err := r.CloseMinute(context.Background(), testMinute0+1); err == nil {
		t.Fatal("read-only store committed a minute")
	}
	c.Dir = dir + "/missing"
	if _, err := Open(c, nil); err == nil {
		t.Fatal("read-only open of a missing dir succeeded")
	}
}

func TestClosedStore(t *testing.T) {
	s := openTest(t, testConfig(t.TempDir()))
	names := encode.NewProducts()
	writeMinute(t, s, names, testMinute0, 1, testCells(20), 100)
	// An unclosed minute is dropped at Close, not half-committed.
	code, _ := names.Code(testProduct(0))
	b := encode.Batch{Names: names}
	b.Reset(testMinute0+1, 54)
	b.Cells, b.Products, b.Features = append(b.Cells, 1), append(b.Products, code), make([]int32, 54)
	if err := s.Write(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Get(nil, testMinute0, testProduct(0), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if _, err := s.GetMany(nil, testMinute0, testProduct(0), []uint64{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetMany after Close: %v", err)
	}
	s = openTest(t, testConfig(s.Dir()))
	defer s.Close()
	if l, _ := s.LatestMinute(); l != testMinute0 {
		t.Fatalf("the unclosed minute became visible: latest %d", l)
	}
}

func TestSinkOpenerAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := testConfig("unused")
	dir := t.TempDir()
	w, err := sink.Openers{"store": Opener(c, reg)}.Open("store:" + dir)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := w.(*Store)
	if !ok || s.Dir() != dir {
		t.Fatalf("sink.Open gave %T", w)
	}
	rows := writeMinute(t, s, encode.NewProducts(), testMinute0, 2, testCells(100), 64)
	s.Get(nil, testMinute0, testProduct(0), 1)
	s.GetMany(nil, testMinute0, testProduct(0), testCells(10))
	if got := testutil.ToFloat64(s.met.rowsWritten); got != float64(rows) {
		t.Errorf("rows_written_total = %v, want %d", got, rows)
	}
	if got := testutil.ToFloat64(s.met.readRows); got != 11 {
		t.Errorf("read_rows_total = %v, want 11", got)
	}
	if st := s.Stats(); st.Rows != int64(rows) || st.Minutes != 1 || st.Bytes < int64(rows)*(1+encode.RowKeyLen+54) {
		t.Errorf("Stats = %+v", st)
	}
	n, err := testutil.GatherAndCount(reg)
	if err != nil || n < 11 {
		t.Errorf("gathered %d metrics: %v", n, err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP demandpipe_store_minute_commits_total Minutes committed, zero-row minutes included.
# TYPE demandpipe_store_minute_commits_total counter
demandpipe_store_minute_commits_total 1
`), "demandpipe_store_minute_commits_total"); err != nil {
		t.Error(err)
	}
	s.Close()
	// Closing unregisters: the same registry takes a reopened store.
	s2, err := Open(testConfig(dir), reg)
	if err != nil {
		t.Fatalf("reopen on the same registry: %v", err)
	}
	s2.Close()
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Dir = "" }, "store dir"},
		{func(c *Config) { c.Retention = 30 * time.Second }, "store.retention"},
		{func(c *Config) { c.Retention = 90 * time.Second }, "store.retention"},
		{func(c *Config) { c.Retention = 200 * time.Hour }, "store.retention"},
		{func(c *Config) { c.CompactEvery = 0 }, "store.compact-every"},
		{func(c *Config) { c.MemTableBytes = 1 }, "store.memtable-bytes"},
		{func(c *Config) { c.CacheBytes = -1 }, "store.cache-bytes"},
		{func(c *Config) { c.Compression = "lz4" }, "store.compression"},
		{func(c *Config) { c.Definition = feature.Definition{Rings: []int{1, 1}, Windows: []int{1}} }, "store definition"},
	} {
		cfg := DefaultConfig()
		c.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: Validate = %v, want %q", cfg, err, c.want)
		}
	}
}
