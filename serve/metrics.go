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

// guardMetrics are the guard's (guard.go):
//
//	demandpipe_serve_refused_total{reason}  reason: conns, rate, host, unauthorized
//	demandpipe_serve_reloads_total{what,result}  what: tls, tokens; result: ok, error
//	demandpipe_serve_connections  open connections
//	demandpipe_serve_rate_clients  clients in the rate limiter's table (at most 65,536)
//	demandpipe_serve_tokens  bearer tokens in service (with -serve.token-file)
//	demandpipe_serve_tls_cert_expiry_timestamp_seconds  NotAfter of the certificate in service (with TLS)
//
// The refusal counters exist from the start at 0, so that a rate over them
// is defined before the first refusal.
type guardMetrics struct {
	refused                         *prometheus.CounterVec
	conns, rate, host, unauthorized prometheus.Counter
	reloads                         *prometheus.CounterVec
}

func newGuardMetrics(reg prometheus.Registerer, g *Guard) (*guardMetrics, error) {
	m := &guardMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "demandpipe", Subsystem: "serve", Name: "refused_total",
			Help: "Requests the guard refused, by reason: conns (503, over -serve.max-conns), rate (429), host (421), unauthorized (401).",
		}, []string{"reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "demandpipe", Subsystem: "serve", Name: "reloads_total",
			Help: "Reloads of the TLS certificate pair (SIGHUP) and the token file (on change or SIGHUP), by result; on error the previous version stays in service.",
		}, []string{"what", "result"}),
	}
	m.conns = m.refused.WithLabelValues("conns")
	m.rate = m.refused.WithLabelValues("rate")
	m.host = m.refused.WithLabelValues("host")
	m.unauthorized = m.refused.WithLabelValues("unauthorized")
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.refused, m.reloads,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "demandpipe", Subsystem: "serve", Name: "connections",
			Help: "Open connections (the cap is -serve.max-conns).",
		}, func() float64 { return float64(g.Conns()) }),
	}
	if g.rate != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "demandpipe", Subsystem: "serve", Name: "rate_clients",
			Help: "Clients in the rate limiter's table (at most 65,536; idle ones are dropped within a minute).",
		}, func() float64 { return float64(g.rate.size()) }))
	}
	if g.tokens != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "demandpipe", Subsystem: "serve", Name: "tokens",
			Help: "Bearer tokens in service (-serve.token-file).",
		}, func() float64 { return float64(g.tokens.count()) }))
	}
	if g.cert != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "demandpipe", Subsystem: "serve", Name: "tls_cert_expiry_timestamp_seconds",
			Help: "When the TLS certificate in service expires (its NotAfter), in unix seconds.",
		}, func() float64 { return float64(g.cert.leaf().NotAfter.Unix()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("serve guard metrics: %w", err)
		}
	}
	return m, nil
}
