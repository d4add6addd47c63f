package serve

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics: demandpipe_serve_requests_total{handler,code} and
// demandpipe_serve_request_duration_seconds{handler}. Both label sets are
// bounded: handler is one of the routes the server registers, code one of
// the status codes it writes.
type metrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "demandpipe", Subsystem: "serve", Name: "requests_total",
			Help: "HTTP requests, by handler and status code.",
		}, []string{"handler", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "demandpipe", Subsystem: "serve", Name: "request_duration_seconds",
			Help: "Time to answer a request, by handler.",
			// 50 us .. ~1.6 s: a single read is ~0.1 ms, a 1,000-cell batch ~10 ms.
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}, []string{"handler"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.seconds} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("serve metrics: %w", err)
			}
		}
	}
	return m, nil
}

// handlerMetrics are one handler's collectors, bound once: the common
// codes are pre-resolved so a request costs no label lookup.
type handlerMetrics struct {
	m       *metrics
	name    string
	ok, bad prometheus.Counter
	seconds prometheus.Observer
}

func (m *metrics) handler(name string) *handlerMetrics {
	return &handlerMetrics{
		m: m, name: name,
		ok:      m.requests.WithLabelValues(name, "200"),
		bad:     m.requests.WithLabelValues(name, "400"),
		seconds: m.seconds.WithLabelValues(name),
	}
}

func (h *handlerMetrics) observe(code int, d time.Duration) {
	switch code {
	case 200:
		h.ok.Inc()
	case 400:
		h.bad.Inc()
	default:
		h.m.requests.WithLabelValues(h.name, strconv.Itoa(code)).Inc()
	}
	h.seconds.Observe(d.Seconds())
}
