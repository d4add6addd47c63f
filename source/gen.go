package source

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/demandpipe/demandpipe/gen"
)

// GenSpecHelp documents the settings of "gen:".
const GenSpecHelp = `gen:[k=v,...] settings (all optional):
  rate=N       raw events per minute of event time (default 100000)
  riders=N     rider population (default 300000)
  products=N   product types (default 4)
  hotspots=N   moving demand centres (default 16)
  radius=KM    city radius in km (default 30)
  seed=N       random seed (default 1)
  late=F       fraction of events arriving 2-6 minutes late (default 0)
  malformed=F  fraction of broken lines (default 0)
  speed=F      event time runs F times faster than the wall clock (default 1)`

// ParseGenSpec reads "k=v,..." into a generator config and a speed factor.
func ParseGenSpec(arg string) (gen.Config, float64, error) {
	cfg := gen.DefaultConfig()
	speed := 1.0
	if strings.TrimSpace(arg) == "" {
		return cfg, speed, nil
	}
	for _, kv := range strings.Split(arg, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return cfg, 0, fmt.Errorf("source gen: %q is not key=value\n%s", kv, GenSpecHelp)
		}
		var err error
		var f float64
		var n int
		switch k {
		case "rate":
			n, err = strconv.Atoi(v)
			cfg.EventsPerMinute = n
		case "riders":
			n, err = strconv.Atoi(v)
			cfg.Riders = n
		case "products":
			n, err = strconv.Atoi(v)
			cfg.Products = n
		case "hotspots":
			n, err = strconv.Atoi(v)
			cfg.Hotspots = n
		case "seed":
			var u uint64
			u, err = strconv.ParseUint(v, 10, 64)
			cfg.Seed = u
		case "radius":
			f, err = strconv.ParseFloat(v, 64)
			cfg.RadiusKm = f
		case "late":
			f, err = strconv.ParseFloat(v, 64)
			cfg.LateFraction = f
		case "malformed":
			f, err = strconv.ParseFloat(v, 64)
			cfg.MalformedFraction = f
		case "speed":
			speed, err = strconv.ParseFloat(v, 64)
			if err == nil && (speed <= 0 || speed > 1e6) {
				err = fmt.Errorf("must be in (0, 1e6]")
			}
		default:
			return cfg, 0, fmt.Errorf("source gen: unknown setting %q\n%s", k, GenSpecHelp)
		}
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) {
				// Say what is wanted, not which Go function failed.
				want := "a number"
				switch k {
				case "rate", "riders", "products", "hotspots", "seed":
					want = "a whole number"
				}
				if errors.Is(ne.Err, strconv.ErrRange) {
					err = fmt.Errorf("out of range: want %s", want)
				} else {
					err = fmt.Errorf("want %s", want)
				}
			}
			return cfg, 0, fmt.Errorf("source gen: %s=%q: %v\n%s", k, v, err, GenSpecHelp)
		}
	}
	return cfg, speed, cfg.Validate()
}

// Gen is the live generator: events are made when the clock reaches their
// arrival time (event time = wall clock, or faster with speed), until Stop.
type Gen struct {
	g       *gen.Generator
	speed   float64
	t0      time.Time
	e0      int64
	pending []byte
	mu      sync.Mutex
	stop    chan struct{}
	once    sync.Once
	now     func() time.Time
}

// OpenGen builds a live generator from "k=v,..." settings.
func OpenGen(arg string) (*Gen, error) {
	cfg, speed, err := ParseGenSpec(arg)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	cfg.Start = now.Truncate(time.Millisecond)
	g, err := gen.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Gen{g: g, speed: speed, t0: now, e0: cfg.Start.UnixMilli(), stop: make(chan struct{}), now: time.Now}, nil
}

// EventClock is the generator's event time now: the wall clock, run speed
// times faster since the start. The engine bounds a live source's event
// time by its clock and advances idle time with it, so a sped-up city is
// neither rejected as future nor closed too slowly.
func (s *Gen) EventClock() time.Time { return time.UnixMilli(s.eventNow()) }

// eventNow is the current event time.
func (s *Gen) eventNow() int64 {
	return s.e0 + int64(float64(s.now().Sub(s.t0).Milliseconds())*s.speed)
}

// Read returns the events that are due, waiting for the next one if none is.
func (s *Gen) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if len(s.pending) == 0 {
			// Stop only between lines: a line already begun is finished
			// first, so a graceful stop never cuts an event in two.
			select {
			case <-s.stop:
				return 0, io.EOF
			default:
			}
			now := s.eventNow()
			for len(s.pending) < len(p) && s.g.NextArrival() <= now {
				s.pending = s.g.Append(s.pending)
			}
		}
		if len(s.pending) > 0 {
			n := copy(p, s.pending)
			s.pending = s.pending[:copy(s.pending, s.pending[n:])]
			return n, nil
		}
		wait := time.Duration(float64(s.g.NextArrival()-s.eventNow())/s.speed) * time.Millisecond
		wait = min(max(wait, time.Millisecond), 100*time.Millisecond)
		select {
		case <-s.stop:
			return 0, io.EOF
		case <-time.After(wait):
		}
	}
}

func (s *Gen) Live() bool               { return true }
func (s *Gen) Position() (int64, int64) { return 0, -1 }

// Stop ends the stream: the next Read returns io.EOF.
func (s *Gen) Stop()        { s.once.Do(func() { close(s.stop) }) }
func (s *Gen) Close() error { s.Stop(); return nil }

// Count is the number of events made.
func (s *Gen) Count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.g.Count()
}
