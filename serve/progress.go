package serve

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/demandpipe/demandpipe/encode"
)

// Progress is the run's progress as the engine in the server's own process
// sees it (Config.Progress: `demandpipe run` with its embedded server). It
// answers the one question a store without a closed minute cannot: when
// will the first minute close? Minute m closes once event time T passes
// its end plus the lateness, T >= (m+1)·60 s + lateness (docs/CONTRACT.md
// "Semantics" 1), so the first minute closes after
//
//	((m+1)·60 s + lateness - T) / rate   wall seconds,
//
// where rate is how fast event time runs against the wall clock, measured
// by the server between the times it is asked (rateMeter): 1 on a live
// source, 20 for -source=gen:speed=20, anything for a replay. GET
// /v1/minutes then adds "first_close" (firstClose.appendJSON).
type Progress struct {
	// EventTime returns T, the run's event time (unix ms), 0 before the
	// engine has seen K riders: pipeline.Stats.EventTime.Load.
	EventTime func() int64
	// FirstMinute returns the earliest minute (unix minute) holding a
	// counted event, the first to close, 0 before one is counted:
	// pipeline.Stats.FirstMinute.Load.
	FirstMinute func() int64
	// Lateness is the run's -windows.lateness (0..24h).
	Lateness time.Duration
	// Riders is the run's K, -windows.future-confirm-riders (1..1024): T
	// is known once K riders have been seen.
	Riders int
	// Wall is the clock event time's rate is measured against; nil means
	// time.Now. Not Config.Now: a sped-up generator sets that to its own
	// event clock, against which event time runs at 1.
	Wall func() time.Time
}

func (p *Progress) validate() error {
	if p.EventTime == nil || p.FirstMinute == nil {
		return fmt.Errorf("serve: Progress needs EventTime and FirstMinute")
	}
	if p.Lateness < 0 || p.Lateness > 24*time.Hour {
		return fmt.Errorf("serve: Progress.Lateness=%v: must be in 0s..24h (the run's -windows.lateness)", p.Lateness)
	}
	if p.Riders < 1 || p.Riders > 1024 {
		return fmt.Errorf("serve: Progress.Riders=%d: must be in 1..1024 (the run's -windows.future-confirm-riders)", p.Riders)
	}
	return nil
}

// The rate of event time is measured over the last rateWindow to
// 2·rateWindow of wall time when the server is asked often (rateMeter),
// and only over at least rateMinSpan: the page asks every 10 s (Config.PageRefresh), so its
// second answer has a measured rate, and T, which moves in steps (the K-th
// rider's latest event), is averaged over a few of them.
const (
	rateWindow  = 20 * time.Second
	rateMinSpan = time.Second
)

// rateMeter measures event-time seconds per wall second from the samples
// (wall time, T) the server takes when asked: T's advance since the start
// of the previous generation of samples, the generations rateWindow long
// (swapped as VictoriaMetrics' dedup swaps its two). Before a second
// sample rateMinSpan after the first, the rate is assumed to be 1 (live).
type rateMeter struct {
	mu       sync.Mutex
	old, cur rateSample // the starts of the previous and the current generation
	rate     float64
	measured bool
}

type rateSample struct {
	wall time.Time
	t    int64 // T, unix ms; 0: no sample
}

// observe takes a sample and returns the rate and whether it was
// measured (false: assumed 1).
func (m *rateMeter) observe(wall time.Time, t int64) (rate float64, measured bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur.t == 0 || t < m.cur.t || wall.Before(m.cur.wall) {
		// The first sample, or T went back (the run restarted): start over.
		m.old, m.cur = rateSample{wall, t}, rateSample{wall, t}
		m.rate, m.measured = 1, false
		return m.rate, m.measured
	}
	if span := wall.Sub(m.old.wall); span >= rateMinSpan {
		m.rate, m.measured = float64(t-m.old.t)/1e3/span.Seconds(), true
	}
	if wall.Sub(m.cur.wall) >= rateWindow {
		m.old, m.cur = m.cur, rateSample{wall, t}
	}
	return m.rate, m.measured
}

// firstClose is the estimate of when the first minute closes.
type firstClose struct {
	minute     int64 // the first minute to close (unix minute), if haveMinute
	haveMinute bool
	t          int64 // T (unix ms), 0 before K riders
	lateness   time.Duration
	riders     int
	rate       float64 // event-time seconds per wall second
	measured   bool    // rate was measured (else assumed 1)
	eta        float64 // wall seconds until it closes, 0 when due, if haveETA
	haveETA    bool
}

// estimateFirstClose computes the estimate from the first minute (0:
// none counted yet), T (0: fewer than K riders seen) and the rate. There
// is no ETA without both, nor while event time is not advancing (rate <=
// 0: a paused source; an idle live source's minutes still close after
// -windows.idle-timeout, by the engine's wall clock). A minute already due
// (T past its close) has ETA 0: its close is under way.
func estimateFirstClose(first, t int64, lateness time.Duration, riders int, rate float64, measured bool) firstClose {
	fc := firstClose{minute: first, haveMinute: first != 0, t: t, lateness: lateness, riders: riders, rate: rate, measured: measured}
	if !fc.haveMinute || t == 0 || rate <= 0 {
		return fc
	}
	left := (first+1)*60000 + lateness.Milliseconds() - t // event-time ms
	fc.eta, fc.haveETA = max(0, float64(left)/1e3/rate), true
	return fc
}

// firstClose samples the run's progress and estimates when the first
// minute closes.
func (s *Server) firstClose() firstClose {
	p := s.cfg.Progress
	t, first := p.EventTime(), p.FirstMinute()
	rate, measured := 1.0, false
	if t != 0 {
		wall := time.Now
		if p.Wall != nil {
			wall = p.Wall
		}
		rate, measured = s.rate.observe(wall(), t)
	}
	return estimateFirstClose(first, t, p.Lateness, p.Riders, rate, measured)
}

// appendJSON appends GET /v1/minutes' "first_close" object:
//
//	{"minute":"2024-06-01T10:07:00Z","event_time":"2024-06-01T10:07:48.250Z",
//	 "lateness_seconds":30,"riders":16,"rate":20.000,"rate_measured":true,"eta_seconds":2.088}
//
// minute is null before an event is counted, event_time before K riders
// are seen, eta_seconds without both or while event time is not advancing
// (rate 0).
func (fc firstClose) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"minute":`...)
	if fc.haveMinute {
		dst = append(encode.AppendMinute(append(dst, '"'), fc.minute), '"')
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"event_time":`...)
	if fc.t != 0 {
		dst = append(time.UnixMilli(fc.t).UTC().AppendFormat(append(dst, '"'), "2006-01-02T15:04:05.000Z07:00"), '"')
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"lateness_seconds":`...)
	dst = strconv.AppendFloat(dst, fc.lateness.Seconds(), 'f', -1, 64)
	dst = append(dst, `,"riders":`...)
	dst = strconv.AppendInt(dst, int64(fc.riders), 10)
	dst = append(dst, `,"rate":`...)
	dst = strconv.AppendFloat(dst, fc.rate, 'f', 3, 64)
	dst = append(dst, `,"rate_measured":`...)
	dst = strconv.AppendBool(dst, fc.measured)
	dst = append(dst, `,"eta_seconds":`...)
	if fc.haveETA {
		dst = strconv.AppendFloat(dst, fc.eta, 'f', 3, 64)
	} else {
		dst = append(dst, "null"...)
	}
	return append(dst, '}')
}
