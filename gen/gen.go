// Package gen makes realistic synthetic rider events: a city with demand
// hotspots that drift and swell over time, several products, riders in app
// sessions that send several events a minute (so dedup matters), raw events
// of about 450 bytes with many fields the pipeline must ignore, small
// arrival jitter, and optional late and malformed lines.
//
// Output is deterministic for a Config (seeded PCG), so a file made by
// `demandpipe gen` can be made again exactly.
package gen

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/demandpipe/demandpipe/encode"
)

// Config shapes the synthetic city.
type Config struct {
	Seed uint64
	// Start is the event time of the first event. Default 2024-06-01T10:00:00Z.
	Start time.Time
	// EventsPerMinute is the raw event rate in event time. Default 100,000.
	EventsPerMinute int
	// Riders is the rider population. Default 300,000.
	Riders int
	// Products is the number of product types (1..256). Default 4.
	Products int
	// Hotspots is the number of moving demand centres. Default 16.
	Hotspots int
	// CenterLat, CenterLng: the city centre. Default midtown Manhattan.
	CenterLat, CenterLng float64
	// RadiusKm is the city's radius; hotspots stay inside it. Default 30.
	RadiusKm float64
	// BackgroundFraction of sessions start anywhere in the city rather than
	// at a hotspot. Default 0.3.
	BackgroundFraction float64
	// EventsPerSession is the mean number of events a session sends
	// (geometric). Default 4; with sessions sending ~3 a minute, about
	// half of all raw events are duplicates.
	EventsPerSession float64
	// JitterMs: an event's ts is up to this much older than its arrival.
	// Default 2000.
	JitterMs int
	// LateFraction of events arrive 2-6 minutes after their ts. Default 0.
	LateFraction float64
	// MalformedFraction of lines are broken in one of several ways. Default 0.
	MalformedFraction float64
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Seed: 1, Start: time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC),
		EventsPerMinute: 100_000, Riders: 300_000, Products: 4, Hotspots: 16,
		CenterLat: 40.7549, CenterLng: -73.9840, RadiusKm: 30,
		BackgroundFraction: 0.3, EventsPerSession: 4, JitterMs: 2000,
	}
}

// Validate checks the fields.
func (c Config) Validate() error {
	switch {
	case c.EventsPerMinute < 1 || c.EventsPerMinute > 100_000_000:
		return fmt.Errorf("gen.rate=%d events/minute: must be in 1..100000000", c.EventsPerMinute)
	case c.Riders < 1 || c.Riders > 1<<30:
		return fmt.Errorf("gen.riders=%d: must be in 1..%d", c.Riders, 1<<30)
	case c.Products < 1 || c.Products > encode.MaxProducts:
		return fmt.Errorf("gen.products=%d: must be in 1..%d", c.Products, encode.MaxProducts)
	case c.Hotspots < 1 || c.Hotspots > 10_000:
		return fmt.Errorf("gen.hotspots=%d: must be in 1..10000", c.Hotspots)
	case c.CenterLat < -80 || c.CenterLat > 80 || c.CenterLng < -180 || c.CenterLng > 180:
		return fmt.Errorf("gen.center=%g,%g: latitude must be in -80..80, longitude in -180..180", c.CenterLat, c.CenterLng)
	case c.RadiusKm <= 0 || c.RadiusKm > 500:
		return fmt.Errorf("gen.radius-km=%g: must be in (0, 500]", c.RadiusKm)
	case c.BackgroundFraction < 0 || c.BackgroundFraction > 1:
		return fmt.Errorf("gen.background=%g: must be in 0..1", c.BackgroundFraction)
	case c.EventsPerSession < 1 || c.EventsPerSession > 1000:
		return fmt.Errorf("gen.events-per-session=%g: must be in 1..1000", c.EventsPerSession)
	case c.JitterMs < 0 || c.JitterMs > 60_000:
		return fmt.Errorf("gen.jitter-ms=%d: must be in 0..60000", c.JitterMs)
	case c.LateFraction < 0 || c.LateFraction > 1:
		return fmt.Errorf("gen.late=%g: must be in 0..1", c.LateFraction)
	case c.MalformedFraction < 0 || c.MalformedFraction > 1:
		return fmt.Errorf("gen.malformed=%g: must be in 0..1", c.MalformedFraction)
	}
	return nil
}

type hotspot struct {
	lat, lng   float64 // base position
	ampKm      float64 // drift amplitude
	periodMin  float64
	phase      float64
	sigmaKm    float64
	weight     float64
	wPeriodMin float64
}

type session struct {
	rider     int
	product   int
	lat, lng  float64
	remaining int
	id        [16]byte
}

// Generator appends events one at a time. Not safe for concurrent use.
type Generator struct {
	cfg      Config
	rng      *rand.Rand
	hot      []hotspot
	sessions []session
	products []encode.UUID
	startMs  int64
	stepNs   float64 // event-time nanoseconds between events
	n        int64   // events made
	kmLat    float64 // degrees per km
	kmLng    float64
	cumW     []float64
}

// New returns a generator.
func New(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Generator{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9E3779B97F4A7C15)),
		startMs: cfg.Start.UnixMilli(),
		stepNs:  60e9 / float64(cfg.EventsPerMinute),
		kmLat:   1 / 110.574,
		kmLng:   1 / (111.320 * math.Cos(cfg.CenterLat*math.Pi/180)),
	}
	for range cfg.Products {
		var u encode.UUID
		for i := range u {
			u[i] = byte(g.rng.Uint32())
		}
		u[6] = u[6]&0x0f | 0x40 // version 4
		u[8] = u[8]&0x3f | 0x80
		g.products = append(g.products, u)
	}
	for range cfg.Hotspots {
		r := cfg.RadiusKm * 0.7 * math.Sqrt(g.rng.Float64())
		a := g.rng.Float64() * 2 * math.Pi
		g.hot = append(g.hot, hotspot{
			lat:        cfg.CenterLat + r*math.Sin(a)*g.kmLat,
			lng:        cfg.CenterLng + r*math.Cos(a)*g.kmLng,
			ampKm:      1 + 4*g.rng.Float64(),
			periodMin:  30 + 90*g.rng.Float64(),
			phase:      g.rng.Float64() * 2 * math.Pi,
			sigmaKm:    0.5 + 2*g.rng.Float64(),
			weight:     0.2 + g.rng.Float64(),
			wPeriodMin: 20 + 60*g.rng.Float64(),
		})
	}
	g.cumW = make([]float64, len(g.hot))
	// About 3 events per session per minute: sessions live ~1-2 minutes.
	active := max(1, cfg.EventsPerMinute/3)
	g.sessions = make([]session, active)
	for i := range g.sessions {
		g.newSession(&g.sessions[i], g.startMs)
	}
	return g, nil
}

// Generate makes n raw events with cfg, as one NDJSON buffer (~520 bytes
// an event with the defaults).
func Generate(cfg Config, n int) ([]byte, error) {
	g, err := New(cfg)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 0, n*520)
	for range n {
		buf = g.Append(buf)
	}
	return buf, nil
}

// Products returns the product types' UUIDs.
func (g *Generator) Products() []encode.UUID { return g.products }

// NextArrival is the arrival time (unix ms) of the next event.
func (g *Generator) NextArrival() int64 {
	return g.startMs + int64(float64(g.n)*g.stepNs/1e6)
}

// Count is the number of events made so far.
func (g *Generator) Count() int64 { return g.n }

// SetStart moves event time so that the next event arrives at ms (live
// sources start at the wall clock).
func (g *Generator) SetStart(ms int64) { g.startMs = ms - int64(float64(g.n)*g.stepNs/1e6) }

func (g *Generator) newSession(s *session, nowMs int64) {
	s.rider = g.rng.IntN(g.cfg.Riders)
	// Product mix: the first product is the most common (like UberX).
	s.product = int(float64(len(g.products)) * math.Pow(g.rng.Float64(), 1.8))
	s.remaining = 1 + int(g.rng.ExpFloat64()*(g.cfg.EventsPerSession-1)+0.5)
	for i := range s.id {
		s.id[i] = byte(g.rng.Uint32())
	}
	var lat, lng float64
	if g.rng.Float64() < g.cfg.BackgroundFraction {
		r := g.cfg.RadiusKm * math.Sqrt(g.rng.Float64())
		a := g.rng.Float64() * 2 * math.Pi
		lat = g.cfg.CenterLat + r*math.Sin(a)*g.kmLat
		lng = g.cfg.CenterLng + r*math.Cos(a)*g.kmLng
	} else {
		tMin := float64(nowMs-g.cfg.Start.UnixMilli()) / 60000
		total := 0.0
		for i, h := range g.hot {
			total += h.weight * (1.2 + math.Sin(2*math.Pi*tMin/h.wPeriodMin+h.phase))
			g.cumW[i] = total
		}
		x := g.rng.Float64() * total
		i := 0
		for i < len(g.cumW)-1 && g.cumW[i] < x {
			i++
		}
		h := g.hot[i]
		ang := 2*math.Pi*tMin/h.periodMin + h.phase
		clat := h.lat + h.ampKm*math.Sin(ang)*g.kmLat
		clng := h.lng + h.ampKm*math.Cos(ang)*g.kmLng
		lat = clat + g.rng.NormFloat64()*h.sigmaKm*g.kmLat
		lng = clng + g.rng.NormFloat64()*h.sigmaKm*g.kmLng
	}
	s.lat, s.lng = lat, lng
}

var (
	oses     = []string{"ios", "android"}
	models   = []string{"iPhone15,2", "iPhone14,5", "SM-S918B", "Pixel 8", "iPhone13,1", "SM-A536E"}
	networks = []string{"wifi", "lte", "5g"}
	locales  = []string{"en_US", "es_US", "zh_CN", "fr_FR", "ru_RU"}
)

// Append appends the next event as one JSON line (with '\n').
func (g *Generator) Append(dst []byte) []byte {
	arrival := g.NextArrival()
	g.n++
	s := &g.sessions[g.rng.IntN(len(g.sessions))]
	ts := arrival
	if g.cfg.JitterMs > 0 {
		ts -= int64(g.rng.IntN(g.cfg.JitterMs + 1))
	}
	if g.cfg.LateFraction > 0 && g.rng.Float64() < g.cfg.LateFraction {
		ts -= 120_000 + int64(g.rng.IntN(240_000))
	}
	ts = max(ts, 0)
	// GPS noise of ~20 m around the session's position.
	lat := s.lat + g.rng.NormFloat64()*0.02*g.kmLat
	lng := s.lng + g.rng.NormFloat64()*0.02*g.kmLng
	start := len(dst)
	dst = g.appendEvent(dst, ts, s, lat, lng)
	if g.cfg.MalformedFraction > 0 && g.rng.Float64() < g.cfg.MalformedFraction {
		dst = g.corrupt(dst, start)
	}
	s.remaining--
	if s.remaining <= 0 {
		g.newSession(s, arrival)
	}
	return dst
}

func appendUUID(dst []byte, u encode.UUID) []byte { return u.AppendText(dst) }

func (g *Generator) appendEvent(dst []byte, ts int64, s *session, lat, lng float64) []byte {
	r := g.rng.Uint64()
	var eid [16]byte
	for i := range eid {
		eid[i] = byte(r >> (8 * (i % 8)))
		if i == 7 {
			r = g.rng.Uint64()
		}
	}
	dst = append(dst, `{"event_id":"`...)
	dst = strconv.AppendUint(dst, binary.LittleEndian.Uint64(eid[:]), 16)
	dst = append(dst, `","event_type":"pricing_view","v":7,"session":{"id":"`...)
	dst = strconv.AppendUint(dst, binary.LittleEndian.Uint64(s.id[:]), 36)
	dst = append(dst, `","ts":`...) // a nested ts the projection must ignore
	dst = strconv.AppendInt(dst, ts-int64(r%90_000), 10)
	dst = append(dst, `},"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"rider_id":"r-`...)
	dst = strconv.AppendInt(dst, int64(s.rider), 36)
	dst = append(dst, `","device":{"os":"`...)
	dst = append(dst, oses[r%2]...)
	dst = append(dst, `","model":"`...)
	dst = append(dst, models[(r>>3)%uint64(len(models))]...)
	dst = append(dst, `","app_version":"4.`...)
	dst = strconv.AppendInt(dst, 500+int64((r>>8)%40), 10)
	dst = append(dst, `.10003","locale":"`...)
	dst = append(dst, locales[(r>>13)%uint64(len(locales))]...)
	dst = append(dst, `","battery":0.`...)
	dst = strconv.AppendInt(dst, 10+int64((r>>17)%89), 10)
	dst = append(dst, `},"lat":`...)
	dst = strconv.AppendFloat(dst, lat, 'f', 7, 64)
	dst = append(dst, `,"lng":`...)
	dst = strconv.AppendFloat(dst, lng, 'f', 7, 64)
	dst = append(dst, `,"product_type":"`...)
	dst = appendUUID(dst, g.products[s.product])
	dst = append(dst, `","surge_multiplier_shown":1.`...)
	dst = strconv.AppendInt(dst, int64((r>>30)%9), 10)
	dst = append(dst, `,"eta_seconds":`...)
	dst = strconv.AppendInt(dst, 60+int64((r>>34)%600), 10)
	dst = append(dst, `,"nearby_drivers":[{"id":"d-`...)
	dst = strconv.AppendInt(dst, int64((r>>40)%100000), 36)
	dst = append(dst, `","dist_m":`...)
	dst = strconv.AppendInt(dst, int64((r>>44)%2000), 10)
	dst = append(dst, `}],"network":"`...)
	dst = append(dst, networks[(r>>56)%3]...)
	dst = append(dst, `","exp":["eta_\u00e9t\u00e9"],"promo":null}`+"\n"...)
	return dst
}

// corrupt breaks the line at dst[start:] in one of several ways.
func (g *Generator) corrupt(dst []byte, start int) []byte {
	line := dst[start : len(dst)-1]
	switch g.rng.IntN(6) {
	case 0: // truncated
		dst = append(dst[:start], line[:len(line)/2]...)
	case 1: // not JSON at all
		dst = append(dst[:start], "GET /healthz HTTP/1.1"...)
	case 2: // latitude out of range
		out := append([]byte(nil), line...)
		dst = append(dst[:start], replaceField(out, `"lat":`, "123.4")...)
	case 3: // product not a UUID
		out := append([]byte(nil), line...)
		dst = append(dst[:start], replaceField(out, `"product_type":`, `"uberX"`)...)
	case 4: // ts as a string
		out := append([]byte(nil), line...)
		dst = append(dst[:start], replaceField(out, `,"ts":`, `"yesterday"`)...)
	case 5: // rider_id missing (renamed)
		out := append([]byte(nil), line...)
		for i := 0; i+10 <= len(out); i++ {
			if string(out[i:i+10]) == `"rider_id"` {
				out[i+1] = 'R'
				break
			}
		}
		dst = append(dst[:start], out...)
	}
	return append(dst, '\n')
}

// replaceField replaces the value after the last occurrence of key with v.
func replaceField(line []byte, key, v string) []byte {
	k := -1
	for i := 0; i+len(key) <= len(line); i++ {
		if string(line[i:i+len(key)]) == key {
			k = i
		}
	}
	if k < 0 {
		return line
	}
	vs := k + len(key)
	ve := vs
	if line[ve] == '"' {
		ve++
		for line[ve] != '"' {
			ve++
		}
		ve++
	} else {
		for ve < len(line) && line[ve] != ',' && line[ve] != '}' {
			ve++
		}
	}
	out := append([]byte(nil), line[:vs]...)
	out = append(out, v...)
	return append(out, line[ve:]...)
}
