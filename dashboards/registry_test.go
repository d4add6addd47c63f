package dashboards

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/buildinfo"
	"github.com/demandpipe/demandpipe/internal/cqltest"
	"github.com/demandpipe/demandpipe/internal/pulsartest"
	"github.com/demandpipe/demandpipe/pipeline"
	pulsarsource "github.com/demandpipe/demandpipe/pulsar"
	"github.com/demandpipe/demandpipe/scaleout"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/sink/cassandra"
	"github.com/demandpipe/demandpipe/source"
	"github.com/demandpipe/demandpipe/store"
)

// fullRegistry holds every collector a `demandpipe run` can register, as
// cmd/demandpipe wires them (newRegistry, run.go): the Go and process
// collectors, demandpipe_build_info, the engine, the store and the HTTP
// API (a store sink), the Pulsar source, the scale-out roles' transports
// (against the project's Pulsar test double), and the Cassandra sink with
// its queue (against the project's CQL test double). No single process
// registers all of them; the union is what dashboards and alerts may name.
func fullRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Get().Collector())

	// With a second definition: the per-definition series exist too.
	ec := pipeline.DefaultConfig()
	ec.Extra = []feature.Named{{Name: "fine", Definition: feature.Definition{Resolution: 9, Rings: []int{0, 2}, Windows: []int{3}}}}
	e, err := pipeline.New(ec)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	sc := store.DefaultConfig()
	sc.Dir = t.TempDir()
	st, err := store.Open(sc, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := serve.New(serve.DefaultConfig(), st, reg); err != nil {
		t.Fatal(err)
	}

	// Any source's position (job: the single process).
	empty := filepath.Join(t.TempDir(), "empty.ndjson")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := source.Open("file:" + empty)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	if err := source.RegisterPositionMetrics(reg, in); err != nil {
		t.Fatal(err)
	}

	// The Pulsar source's metrics (-source=pulsar://): its collectors read
	// plain counters, which a zero Pulsar has.
	if err := new(pulsarsource.Source).RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}

	// The scale-out roles' transports (run -role=dedup|aggregate), on the
	// project's Pulsar test double: an Aggregate subscribes when it is made.
	ps, err := pulsartest.Start(pulsartest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	pc, err := pulsar.NewClient(pulsar.ClientOptions{URL: ps.URL(), OperationTimeout: 10 * time.Second, Logger: plog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	so := scaleout.DefaultConfig()
	so.Topic = "persistent://public/default/counted"
	agg, err := scaleout.NewAggregate(pc, so, "aggregate", []int{0, 65535}, 1, pipeline.DefaultConfig(), sink.NewNDJSON(io.Discard, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := agg.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	pub, err := scaleout.NewPublisher(context.Background(), pc, so, 0, pipeline.DefaultConfig().Def)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Stop() })
	if err := pub.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}

	srv, err := cqltest.Start(cqltest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cc := cassandra.DefaultConfig()
	cc.Hosts = []string{"127.0.0.1"}
	cc.Port = srv.Port()
	cc.CreateSchema = true
	cc.ReplicationFactor = 1
	cc.Queue.DrainTimeout = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs, err := cassandra.Open(ctx, cc, cassandra.Options{Registerer: reg, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return reg
}

// exportedNames are the metric family names reg exposes, with the
// _bucket, _sum and _count series of histograms and summaries.
func exportedNames(t *testing.T, reg prometheus.Gatherer) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		switch mf.GetType().String() {
		case "HISTOGRAM", "GAUGE_HISTOGRAM":
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		case "SUMMARY":
			for _, s := range []string{"_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		}
	}
	return names
}

// TestMetricsLint runs promlint over everything run registers: _total on
// counters only, base units, help on every metric, no reserved suffixes.
// It also bounds labels: a demandpipe metric may only carry labels whose
// values come from a fixed set (listed here, with where the set is fixed).
func TestMetricsLint(t *testing.T) {
	reg := fullRegistry(t)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	bounded := map[string]string{
		"reason":     "encode.Reason",
		"definition": "the run's definitions: at most feature.MaxDefinitions names",
		"op":         "store reads: get, get_many, scan",
		"handler":    "serve routes",
		"code":       "HTTP status codes serve writes",
		"sink":       "sink type",
		"codec":      "cassandra frame codecs",
		"requested":  "cassandra frame codecs",
		"version":    "build info",
		"revision":   "build info",
		"goversion":  "build info",
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "demandpipe_") {
			continue
		}
		names = append(names, mf.GetName())
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if _, ok := bounded[l.GetName()]; !ok {
					t.Errorf("%s: label %q is not in the bounded set", mf.GetName(), l.GetName())
				}
			}
		}
	}
	sort.Strings(names)
	t.Logf("%d demandpipe metric families: %s", len(names), strings.Join(names, " "))
	for _, want := range []string{
		"demandpipe_build_info",
		"demandpipe_pipeline_last_closed_minute_timestamp_seconds",
		"demandpipe_pipeline_event_time_delay_seconds",
		"demandpipe_store_latest_minute_timestamp_seconds",
		"demandpipe_serve_request_duration_seconds",
		"demandpipe_sink_write_duration_seconds",
		"demandpipe_sink_cassandra_compression_info",
		"process_resident_memory_bytes",
		"go_memstats_heap_inuse_bytes",
	} {
		if !exportedNames(t, reg)[want] {
			t.Errorf("%s is not registered", want)
		}
	}
}
