// Package metrics is the one way demandpipe exports Prometheus metrics
// (docs/DESIGN.md, Metrics). Every metric is named
// demandpipe_SUBSYSTEM_NAME, the subsystem being the package's; a package
// declares its metrics in its metrics.go, under a doc comment that lists
// them, and registers them with Register, all or none: from a
// RegisterMetrics(reg) method of the object they read, or from a
// constructor that takes a prometheus.Registerer. A nil Registerer
// registers nothing. There is no global registry, and no MustRegister but
// job.NewRegistry's, on a registry it has just made.
//
// Most metrics read a counter the package keeps anyway, at scrape time
// (Counter, Gauge over an atomic.Int64; CounterFunc, GaugeFunc over a
// function), so the hot path pays nothing for them.
package metrics

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace is the first part of every demandpipe metric's name.
const Namespace = "demandpipe"

// Register registers cs with reg, all or none: on the first failure it
// unregisters those it had registered and returns the error, naming the
// metric that failed. A nil reg registers nothing.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			Unregister(reg, cs[:i]...)
			return fmt.Errorf("metric %s: %w", Name(c), err)
		}
	}
	return nil
}

// Unregister unregisters cs from reg (nil: nothing), so that the object
// they read can be made again in the same process (a store reopened, a
// sink opened again).
func Unregister(reg prometheus.Registerer, cs ...prometheus.Collector) {
	if reg == nil {
		return
	}
	for _, c := range cs {
		reg.Unregister(c)
	}
}

// Name is the fully-qualified name of the metric c describes; of the first
// one, with how many follow, when it describes several; its Go type when
// it describes none (an unchecked collector) or the name cannot be read.
func Name(c prometheus.Collector) string {
	ch := make(chan *prometheus.Desc, 16)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	var first *prometheus.Desc
	n := 0
	for d := range ch { // drained whole: Describe must not block
		if first == nil {
			first = d
		}
		n++
	}
	if first == nil {
		return fmt.Sprintf("%T", c)
	}
	name := descName(first)
	if name == "" {
		name = fmt.Sprintf("%T", c)
	}
	if n > 1 {
		name += fmt.Sprintf(" (and %d more)", n-1)
	}
	return name
}

// descName reads the fully-qualified name out of d's String, the only
// place client_golang shows it: Desc{fqName: "…", …}. "" if the form
// changes (TestName says so).
func descName(d *prometheus.Desc) string {
	s, ok := strings.CutPrefix(d.String(), "Desc{fqName: ")
	if !ok {
		return ""
	}
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return ""
	}
	name, err := strconv.Unquote(q)
	if err != nil {
		return ""
	}
	return name
}

// CounterFunc is the counter demandpipe_SUBSYSTEM_NAME, read from f at
// scrape time.
func CounterFunc(subsystem, name, help string, f func() float64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help}, f)
}

// GaugeFunc is the gauge demandpipe_SUBSYSTEM_NAME, read from f at scrape
// time.
func GaugeFunc(subsystem, name, help string, f func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help}, f)
}

// Counter is the counter demandpipe_SUBSYSTEM_NAME, read from v at scrape
// time: the plain counter a stage owns, exported.
func Counter(subsystem, name, help string, v *atomic.Int64) prometheus.Collector {
	return CounterFunc(subsystem, name, help, func() float64 { return float64(v.Load()) })
}

// Gauge is the gauge demandpipe_SUBSYSTEM_NAME, read from v at scrape
// time.
func Gauge(subsystem, name, help string, v *atomic.Int64) prometheus.Collector {
	return GaugeFunc(subsystem, name, help, func() float64 { return float64(v.Load()) })
}
