package cassandra

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/internal/metrics"
	"github.com/demandpipe/demandpipe/sink"
)

// register exports the queue's metrics (with sink="cassandra"), the
// negotiated codec and the state counters (the package doc lists them),
// all or none (metrics.Register). reg may be nil.
func (s *Sink) register(reg prometheus.Registerer) error {
	qm, err := sink.NewQueueMetrics(nil, prometheus.Labels{"sink": "cassandra"}, s.q.Stats)
	if err != nil {
		return err
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: metrics.Namespace, Subsystem: "sink", Name: "cassandra_compression_info",
		Help:        "1, labelled with the frame codec the server negotiated (none when it refused the requested one) and the requested one.",
		ConstLabels: prometheus.Labels{"codec": s.codec, "requested": s.cfg.Compression},
	})
	g.Set(1)
	stateMx := []prometheus.Collector{
		metrics.Counter("sink", "cassandra_state_bytes_total", "Bytes of engine state (count records, checkpoints) committed to Cassandra.", &s.stateBytes),
		metrics.Counter("sink", "cassandra_state_retries_total", "Retried writes of engine state and minutes rows.", &s.stateRetries),
	}
	all := append([]prometheus.Collector{qm, g}, stateMx...)
	if err := metrics.Register(reg, all...); err != nil {
		return err
	}
	s.mx, s.codecMx, s.stateMx = all, g, stateMx
	return nil
}

// unregister takes back what register registered.
func (s *Sink) unregister() {
	metrics.Unregister(s.reg, s.mx...)
}
