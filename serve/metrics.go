package serve

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/internal/metrics"
)

// subsystem is the package's metrics' subsystem: demandpipe_serve_*. The
// server's metrics and the guard's register all or none (metrics.Register)
// with the Registerer New, NewDefinitions and NewGuard take (nil: none).
const subsystem = "serve"

// serverMetrics: demandpipe_serve_requests_total{handler,code} and
// demandpipe_serve_request_duration_seconds{handler}. Both label sets are
// bounded: handler is one of the routes the server registers, code one of
// the status codes it writes.
type serverMetrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

func newServerMetrics(reg prometheus.Registerer) (*serverMetrics, error) {
	m := &serverMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Subsystem: subsystem, Name: "requests_total",
			Help: "HTTP requests, by handler and status code.",
		}, []string{"handler", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Subsystem: subsystem, Name: "request_duration_seconds",
			Help: "Time to answer a request, by handler.",
			// 50 us .. ~1.6 s: a single read is ~0.1 ms, a 1,000-cell batch ~10 ms.
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}, []string{"handler"}),
	}
	if err := metrics.Register(reg, m.requests, m.seconds); err != nil {
		return nil, err
	}
	return m, nil
}

// handlerMetrics are one handler's collectors, bound once: the common
// codes are pre-resolved so a request costs no label lookup.
type handlerMetrics struct {
	m       *serverMetrics
	name    string
	ok, bad prometheus.Counter
	seconds prometheus.Observer
}

func (m *serverMetrics) handler(name string) *handlerMetrics {
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
			Namespace: metrics.Namespace, Subsystem: subsystem, Name: "refused_total",
			Help: "Requests the guard refused, by reason: conns (503, over -serve.max-conns), rate (429), host (421), unauthorized (401).",
		}, []string{"reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Subsystem: subsystem, Name: "reloads_total",
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
		metrics.GaugeFunc(subsystem, "connections", "Open connections (the cap is -serve.max-conns).",
			func() float64 { return float64(g.Conns()) }),
	}
	if g.rate != nil {
		cs = append(cs, metrics.GaugeFunc(subsystem, "rate_clients", "Clients in the rate limiter's table (at most 65,536; idle ones are dropped within a minute).",
			func() float64 { return float64(g.rate.size()) }))
	}
	if g.tokens != nil {
		cs = append(cs, metrics.GaugeFunc(subsystem, "tokens", "Bearer tokens in service (-serve.token-file).",
			func() float64 { return float64(g.tokens.count()) }))
	}
	if g.cert != nil {
		cs = append(cs, metrics.GaugeFunc(subsystem, "tls_cert_expiry_timestamp_seconds", "When the TLS certificate in service expires (its NotAfter), in unix seconds.",
			func() float64 { return float64(g.cert.leaf().NotAfter.Unix()) }))
	}
	if err := metrics.Register(reg, cs...); err != nil {
		return nil, err
	}
	return m, nil
}
