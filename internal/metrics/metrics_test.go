package metrics

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegisterAllOrNone(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := Register(reg, GaugeFunc("test", "taken", "Registered first.", func() float64 { return 1 })); err != nil {
		t.Fatal(err)
	}
	var v atomic.Int64
	a := Counter("test", "a_total", "Registered, then taken back.", &v)
	b := Gauge("test", "b", "Registered, then taken back.", &v)
	dup := GaugeFunc("test", "taken", "Registered first.", func() float64 { return 2 })
	err := Register(reg, a, b, dup)
	if err == nil {
		t.Fatal("a duplicate registered")
	}
	if !strings.Contains(err.Error(), "demandpipe_test_taken") {
		t.Errorf("the error does not name the metric: %v", err)
	}
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("the registry's error is not wrapped: %v", err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 1 {
		t.Fatalf("%d series after a failed registration (%v), want the 1 registered before", n, err)
	}
	// Nothing of the failed call is left: it registers again, whole.
	if err := Register(reg, a, b); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 3 {
		t.Fatalf("%d series, %v", n, err)
	}
	Unregister(reg, a, b)
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 1 {
		t.Fatalf("%d series after Unregister, %v", n, err)
	}
}

func TestRegisterNil(t *testing.T) {
	if err := Register(nil, GaugeFunc("test", "g", "A gauge.", func() float64 { return 0 })); err != nil {
		t.Fatal(err)
	}
	Unregister(nil, GaugeFunc("test", "g", "A gauge.", func() float64 { return 0 }))
}

func TestHelpers(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	var c, g atomic.Int64
	c.Store(7)
	g.Store(-3)
	if err := Register(reg,
		Counter("test", "events_total", "Events.", &c),
		Gauge("test", "held", "Held.", &g),
		CounterFunc("test", "seconds_total", "Seconds.", func() float64 { return 1.5 }),
		GaugeFunc("test", "size_bytes", "Size.", func() float64 { return 42 }),
	); err != nil {
		t.Fatal(err)
	}
	c.Add(1)
	want := `
# HELP demandpipe_test_events_total Events.
# TYPE demandpipe_test_events_total counter
demandpipe_test_events_total 8
# HELP demandpipe_test_held Held.
# TYPE demandpipe_test_held gauge
demandpipe_test_held -3
# HELP demandpipe_test_seconds_total Seconds.
# TYPE demandpipe_test_seconds_total counter
demandpipe_test_seconds_total 1.5
# HELP demandpipe_test_size_bytes Size.
# TYPE demandpipe_test_size_bytes gauge
demandpipe_test_size_bytes 42
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// several describes two metrics; unchecked none.
type several struct{ a, b *prometheus.Desc }

func (s several) Describe(ch chan<- *prometheus.Desc) { ch <- s.a; ch <- s.b }
func (several) Collect(chan<- prometheus.Metric)      {}

type unchecked struct{}

func (unchecked) Describe(chan<- *prometheus.Desc) {}
func (unchecked) Collect(chan<- prometheus.Metric) {}

func TestName(t *testing.T) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "test", Name: "reqs_total", Help: "Requests.",
		ConstLabels: prometheus.Labels{"sink": "x"}}, []string{"code"})
	s := several{
		prometheus.NewDesc("demandpipe_test_one", "One.", nil, nil),
		prometheus.NewDesc("demandpipe_test_two", "Two.", nil, nil),
	}
	for c, want := range map[prometheus.Collector]string{
		GaugeFunc("test", "g", "A gauge.", nil): "demandpipe_test_g",
		vec:                                     "demandpipe_test_reqs_total",
		s:                                       "demandpipe_test_one (and 1 more)",
		unchecked{}:                             "metrics.unchecked",
	} {
		if got := Name(c); got != want {
			t.Errorf("Name = %q, want %q", got, want)
		}
	}
}
