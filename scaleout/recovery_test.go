package scaleout

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/pulsartest"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/store"
)

// committed wraps a durable sink and keeps, as the sink does, the rows of
// committed minutes only, keyed by (minute, product, cell): a row written
// again must carry the same values (a mismatch is recorded in bad).
type committed struct {
	sink.PartCheckpointer
	mu   *sync.Mutex
	rows map[string]string
	bad  *[]string
	open map[string]string
}

func (c *committed) Write(ctx context.Context, b *encode.Batch) error {
	for i := range b.Len() {
		c.open[fmt.Sprint(b.Minute, b.ProductName(i), b.Cells[i])] = fmt.Sprint(b.Row(i))
	}
	return c.PartCheckpointer.Write(ctx, b)
}

func (c *committed) CloseMinute(ctx context.Context, m int64) error {
	if err := c.PartCheckpointer.CloseMinute(ctx, m); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.open {
		if old, ok := c.rows[k]; ok && old != v {
			*c.bad = append(*c.bad, fmt.Sprintf("%s written again as %s, was %s", k, v, old))
		}
		c.rows[k] = v
	}
	clear(c.open)
	return nil
}

// TestAggregateKilledAndReplaced: one dedup and three aggregate processes
// with stores; the second aggregate process stops dead in the middle of
// the stream (nothing flushed, nothing acknowledged past its last commit)
// and a new process takes its ranges and its store: together they write
// exactly the single process's rows, and rows written twice agree.
func TestAggregateKilledAndReplaced(t *testing.T) {
	gc := gen.DefaultConfig()
	gc.EventsPerMinute, gc.Riders, gc.Hotspots, gc.RadiusKm = 2000, 2000, 4, 60
	buf, err := gen.Generate(gc, 16*2000)
	if err != nil {
		t.Fatal(err)
	}
	input := string(buf)
	half := strings.Index(input[len(input)/2:], "\n") + len(input)/2 + 1
	def := feature.Definition{Resolution: 8, Rings: []int{0, 1, 3, 6}, Windows: []int{1, 4, 8}}
	pcfg := pipeline.DefaultConfig()
	pcfg.Def, pcfg.Parallelism = def, 2

	want := map[string]string{}
	var mu sync.Mutex
	var bad []string
	single := &committed{mu: &mu, rows: want, bad: &bad, open: map[string]string{}}
	{
		e, err := pipeline.New(pcfg)
		if err != nil {
			t.Fatal(err)
		}
		w := &rowsOnly{single}
		if err := e.Run(context.Background(), strings.NewReader(input), w); err != nil {
			t.Fatal(err)
		}
	}

	srv, err := pulsartest.Start(pulsartest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	newClient := func() pulsar.Client {
		c, err := pulsar.NewClient(pulsar.ClientOptions{URL: srv.URL(), OperationTimeout: 10 * time.Second, Logger: plog.DefaultNopLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	client := newClient()
	defer client.Close()
	cfg := DefaultConfig()
	cfg.Topic, cfg.RegionRes = "persistent://public/default/counted", 5

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	got := map[string]string{}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	open := func(i int) *committed {
		sc := store.DefaultConfig()
		sc.Dir, sc.Definition, sc.Retention = dirs[i], def, 168*time.Hour
		st, err := store.Open(sc, nil)
		if err != nil {
			t.Fatal(err)
		}
		return &committed{PartCheckpointer: st, mu: &mu, rows: got, bad: &bad, open: map[string]string{}}
	}
	ranges := [][]int{{0, 21844}, {21845, 43689}, {43690, 65535}}
	type proc struct {
		a      *Aggregate
		out    *committed
		client pulsar.Client
		cancel context.CancelFunc
		done   chan error
	}
	start := func(i int) *proc {
		p := &proc{out: open(i), client: newClient(), done: make(chan error, 1)}
		var err error
		if p.a, err = NewAggregate(p.client, cfg, "aggregate", ranges[i], 1, pcfg, p.out); err != nil {
			t.Fatal(err)
		}
		var pctx context.Context
		pctx, p.cancel = context.WithCancel(ctx)
		go func() { p.done <- p.a.Run(pctx) }()
		return p
	}
	procs := []*proc{start(0), start(1), start(2)}

	pub, err := NewPublisher(ctx, client, cfg, 0, def)
	if err != nil {
		t.Fatal(err)
	}
	d, err := pipeline.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	d.Emit = pub
	pr, pw := io.Pipe()
	dedupDone := make(chan error, 1)
	go func() { dedupDone <- d.Run(ctx, pr, nil) }()
	if _, err := io.WriteString(pw, input[:half]); err != nil {
		t.Fatal(err)
	}
	// Kill the second process once it has committed a few minutes.
	for procs[1].a.Stats().Minutes.Load() < 3 {
		select {
		case <-ctx.Done():
			t.Fatal("the second aggregate process closed no minute")
		case <-time.After(5 * time.Millisecond):
		}
	}
	procs[1].cancel()
	<-procs[1].done
	procs[1].client.Close() // its unacknowledged messages go back to the subscription
	closedAtKill := procs[1].a.Stats().Closed.Load()
	procs[1].out.PartCheckpointer.Close()
	procs[1] = start(1)
	if _, err := io.WriteString(pw, input[half:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-dedupDone; err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	for i, p := range procs {
		if err := <-p.done; err != nil {
			t.Fatalf("aggregate process %d: %v", i, err)
		}
		p.client.Close()
		p.out.PartCheckpointer.Close()
	}
	if len(bad) > 0 {
		t.Fatalf("%d rows written again with other values, e.g. %s", len(bad), bad[0])
	}
	keys := slices.Sorted(maps.Keys(want))
	diff := 0
	for _, k := range keys {
		if got[k] != want[k] {
			if diff == 0 {
				t.Errorf("first difference at %s:\n got %q\nwant %q", k, got[k], want[k])
			}
			diff++
		}
	}
	if diff > 0 || len(got) != len(want) {
		t.Fatalf("%d of %d rows differ; %d rows written, %d by one process", diff, len(want), len(got), len(want))
	}
	tr := procs[1].a.Transport()
	t.Logf("%d rows equal; the replaced process was killed after minute %d and its successor restored it, dropping %d events already committed and %d duplicate messages",
		len(got), closedAtKill, tr.Replayed, tr.Duplicates)
}

// rowsOnly hides a committed sink's state methods, for the single
// process (which would otherwise checkpoint into nothing).
type rowsOnly struct{ c *committed }

func (r *rowsOnly) Write(ctx context.Context, b *encode.Batch) error {
	for i := range b.Len() {
		r.c.open[fmt.Sprint(b.Minute, b.ProductName(i), b.Cells[i])] = fmt.Sprint(b.Row(i))
	}
	return nil
}
func (r *rowsOnly) CloseMinute(context.Context, int64) error {
	maps.Copy(r.c.rows, r.c.open)
	clear(r.c.open)
	return nil
}
func (r *rowsOnly) Close() error { return nil }
