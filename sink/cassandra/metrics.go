package cassandra

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/sink"
)

// register exports the queue's metrics (with sink="cassandra") and the
// negotiated codec. reg may be nil.
func (s *Sink) register(reg prometheus.Registerer) error {
	qm, err := sink.NewQueueMetrics(reg, prometheus.Labels{"sink": "cassandra"}, s.q.Stats)
	if err != nil {
		return err
	}
	s.qm = qm
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "demandpipe", Subsystem: "sink", Name: "cassandra_compression_info",
		Help:        "1, labelled with the frame codec the server negotiated (none when it refused the requested one) and the requested one.",
		ConstLabels: prometheus.Labels{"codec": s.codec, "requested": s.cfg.Compression},
	})
	g.Set(1)
	s.codecMx = g
	s.stateMx = []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "demandpipe", Subsystem: "sink", Name: "cassandra_state_bytes_total",
			Help: "Bytes of engine state (count records, checkpoints) committed to Cassandra.",
		}, func() float64 { return float64(s.stateBytes.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "demandpipe", Subsystem: "sink", Name: "cassandra_state_retries_total",
			Help: "Retried writes of engine state and minutes rows.",
		}, func() float64 { return float64(s.stateRetries.Load()) }),
	}
	if reg != nil {
		for i, c := range append([]prometheus.Collector{g}, s.stateMx...) {
			if err := reg.Register(c); err != nil {
				qm.Unregister()
				for _, done := range append([]prometheus.Collector{g}, s.stateMx...)[:i] {
					reg.Unregister(done)
				}
				return fmt.Errorf("sink cassandra metrics: %w", err)
			}
		}
	}
	return nil
}

func (s *Sink) unregister() {
	if s.qm != nil {
		s.qm.Unregister()
	}
	if s.reg != nil && s.codecMx != nil {
		s.reg.Unregister(s.codecMx)
		for _, c := range s.stateMx {
			s.reg.Unregister(c)
		}
	}
}
