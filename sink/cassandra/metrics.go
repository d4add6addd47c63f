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
	if reg != nil {
		if err := reg.Register(g); err != nil {
			qm.Unregister()
			return fmt.Errorf("sink cassandra metrics: %w", err)
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
	}
}
