package scaleout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"
	"go.uber.org/goleak"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/keyshared"
	"github.com/demandpipe/demandpipe/internal/leakcheck"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/pulsartest"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/pipeline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(norace.M(m), leakcheck.PulsarClient...) }

// rows is a sink that keeps every row as text.
type rows struct {
	mu   sync.Mutex
	rows []string
}

func (r *rows) Write(_ context.Context, b *encode.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range b.Len() {
		r.rows = append(r.rows, fmt.Sprint(b.Minute, b.ProductName(i), b.Cells[i], b.Row(i)))
	}
	return nil
}
func (r *rows) CloseMinute(context.Context, int64) error { return nil }
func (r *rows) Close() error                             { return nil }

// TestOneDedupThreeAggregatesEqualSingleProcess: through the Pulsar test
// double with the real client, one dedup process publishing to the
// internal topic and three aggregate processes on sticky hash ranges
// write, together, exactly the single process's rows, each row once.
func TestOneDedupThreeAggregatesEqualSingleProcess(t *testing.T) {
	t.Parallel()
	gc := gen.DefaultConfig()
	gc.EventsPerMinute, gc.Riders, gc.Hotspots, gc.RadiusKm = testsize.Pick(600, 3000), 2000, 4, 60 // 10 minutes
	buf, err := gen.Generate(gc, 10*gc.EventsPerMinute)
	if err != nil {
		t.Fatal(err)
	}
	input := string(buf)
	def := feature.Definition{Resolution: 8, Rings: []int{0, 1, 3, 6}, Windows: []int{1, 4, 8}}
	pcfg := pipeline.DefaultConfig()
	pcfg.Def, pcfg.Parallelism = def, 2

	single := singleRun(t, pcfg, input)

	_, client := startBroker(t)
	cfg := DefaultConfig()
	cfg.Topic, cfg.RegionRes = "persistent://public/default/counted", 5 // small regions: the city spans many slots

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ranges := [][]int{{0, 21844}, {21845, 43689}, {43690, 65535}}
	outs := make([]*rows, len(ranges))
	aggs := make([]*Aggregate, len(ranges))
	for i, r := range ranges {
		outs[i] = &rows{}
		if aggs[i], err = NewAggregate(client, cfg, "aggregate", r, 1, pcfg, outs[i]); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, len(aggs))
	for _, a := range aggs {
		go func() { errs <- a.Run(ctx) }()
	}
	counted := runDedup(ctx, t, client, cfg, pcfg, input)
	for range aggs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for i, o := range outs {
		if len(o.rows) == 0 {
			t.Errorf("aggregate process %d (ranges %v) wrote no row: the test no longer splits the work", i, ranges[i])
		}
		got = append(got, o.rows...)
	}
	want := single.rows
	slices.Sort(got)
	slices.Sort(want)
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("first difference, row %d:\n got %s\nwant %s", i, got[i], want[i])
			break
		}
	}
	if len(got) != len(want) || !slices.Equal(got, want) {
		t.Fatalf("%d rows from the aggregate processes (%d, %d, %d), %d from one process", len(got), len(outs[0].rows), len(outs[1].rows), len(outs[2].rows), len(want))
	}
	t.Logf("%d rows equal: %d + %d + %d from 3 aggregate processes; %d counted events", len(got), len(outs[0].rows), len(outs[1].rows), len(outs[2].rows), counted)
}

func TestParseRangesAndValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want string // "" : an error
	}{
		{"0-65535", "[0 65535]"},
		{"0-10, 20-30", "[0 10 20 30]"},
		{"10-5", ""}, {"0-65536", ""}, {"-1-3", ""}, {"a-b", ""}, {"7", ""},
	} {
		got, err := ParseRanges(tc.in)
		if (tc.want == "") != (err != nil) || (err == nil && fmt.Sprint(got) != tc.want) {
			t.Errorf("%q: %v %v", tc.in, got, err)
		}
	}
	c := DefaultConfig()
	for _, tc := range []struct {
		flag string
		mut  func(*Config)
	}{
		{"scaleout.topic", func(c *Config) { c.Topic = "" }},
		{"scaleout.slots", func(c *Config) { c.Slots = 0 }},
		{"scaleout.region-res", func(c *Config) { c.RegionRes = 16 }},
	} {
		c := c
		c.Topic = "t"
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%s: %v", tc.flag, err)
		}
	}
	// Every slot has exactly one owner among ranges that cover the space.
	c.Topic = "t"
	a, b := c.owned([]int{0, 30000}), c.owned([]int{30001, 65535})
	for s := range a {
		if a[s] == b[s] {
			t.Fatalf("slot %d owned by both or neither", s)
		}
	}
}

// startBroker starts the Pulsar test double and a client of it, both
// closed when the test ends.
func startBroker(t *testing.T) (*pulsartest.Server, pulsar.Client) {
	t.Helper()
	return startBrokerWith(t, pulsartest.Config{})
}

// startBrokerWith is startBroker with the double's configuration cfg.
func startBrokerWith(t *testing.T, cfg pulsartest.Config) (*pulsartest.Server, pulsar.Client) {
	t.Helper()
	srv, err := pulsartest.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	client, err := pulsar.NewClient(pulsar.ClientOptions{URL: srv.URL(), OperationTimeout: 10 * time.Second, Logger: plog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return srv, client
}

// singleRun is the single process's rows of input.
func singleRun(t *testing.T, pcfg pipeline.Config, input string) *rows {
	t.Helper()
	single := &rows{}
	e, err := pipeline.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background(), strings.NewReader(input), single); err != nil {
		t.Fatal(err)
	}
	return single
}

// TestRangeGapIsReported is issue 22's "no silent loss": aggregate
// processes given ranges with a gap (0-30000 and 40000-65535) hear each
// other's announcements on the members topic, report the uncovered slots
// (the uncovered_slots gauge, a log line), and when the replay ends each
// exits with an error naming them instead of 0 with rows missing (was:
// 78,493 of 310,965 rows missing, every process exited 0). Ranges that
// cover every slot end with no error (TestOneDedupThreeAggregates...).
func TestRangeGapIsReported(t *testing.T) {
	t.Parallel()
	gc := gen.DefaultConfig()
	gc.EventsPerMinute, gc.Riders, gc.Hotspots, gc.RadiusKm = 600, 500, 4, 60
	buf, err := gen.Generate(gc, 3*gc.EventsPerMinute)
	if err != nil {
		t.Fatal(err)
	}
	def := feature.Definition{Resolution: 8, Rings: []int{0, 1}, Windows: []int{1, 2}}
	pcfg := pipeline.DefaultConfig()
	pcfg.Def, pcfg.Parallelism = def, 2
	_, client := startBroker(t)
	cfg := DefaultConfig()
	cfg.Topic, cfg.RegionRes = "persistent://public/default/gap", 5
	ranges := [][]int{{0, 30000}, {40000, 65535}}
	var gap []int
	for s := range cfg.Slots {
		if !keyshared.Holds(ranges[0], []byte(slotKey(s))) && !keyshared.Holds(ranges[1], []byte(slotKey(s))) {
			gap = append(gap, s)
		}
	}
	if len(gap) == 0 {
		t.Fatal("no slot falls in the gap: the test checks nothing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	aggs := make([]*Aggregate, len(ranges))
	for i, r := range ranges {
		if aggs[i], err = NewAggregate(client, cfg, "aggregate", r, 1, pcfg, &rows{}); err != nil {
			t.Fatal(err)
		}
		aggs[i].members.reportAfter = 2 * time.Second // both start at once: heard within it
	}
	errs := make(chan error, len(aggs))
	for _, a := range aggs {
		go func() { errs <- a.Run(ctx) }()
	}
	runDedup(ctx, t, client, cfg, pcfg, string(buf))
	for range aggs {
		err := <-errs
		if !errors.Is(err, errRangeGap) || !strings.Contains(err.Error(), fmt.Sprint(gap)) {
			t.Fatalf("an aggregate process ended with %v, want the gap %v named", err, gap)
		}
	}
	for i, a := range aggs {
		if got := a.members.uncovered.Load(); got != int64(len(gap)) {
			t.Errorf("process %d: uncovered_slots = %d, want %d", i, got, len(gap))
		}
	}
}

// runDedup runs one dedup process (id 0) over input to its end: the engine
// in the dedup role, its counted events and watermarks published, then the
// end of the stream. It returns the events it counted.
func runDedup(ctx context.Context, t *testing.T, client pulsar.Client, cfg Config, pcfg pipeline.Config, input string) int64 {
	t.Helper()
	d, pub := newDedup(ctx, t, client, cfg, pcfg)
	if err := d.Run(ctx, strings.NewReader(input), nil); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	return d.Stats.Counted.Load()
}

// newDedup is dedup process 0: an engine in the dedup role emitting to a
// Publisher on cfg's topic.
func newDedup(ctx context.Context, t *testing.T, client pulsar.Client, cfg Config, pcfg pipeline.Config) (*pipeline.Engine, *Publisher) {
	t.Helper()
	pub, err := NewPublisher(ctx, client, cfg, 0, pcfg.Def)
	if err != nil {
		t.Fatal(err)
	}
	d, err := pipeline.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	d.Emit = pub
	return d, pub
}
