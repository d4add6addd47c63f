package serve

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/store"
)

// A run whose first counted minute is 10:07 (2024-06-01), lateness 30 s:
// the minute closes once event time reaches 10:08:30.
var (
	runMinute = time.Date(2024, 6, 1, 10, 7, 0, 0, time.UTC).UnixMilli() / 60000
	runClose  = time.Date(2024, 6, 1, 10, 8, 30, 0, time.UTC).UnixMilli()
)

// TestFirstCloseETA: the estimate against hand arithmetic, at the live
// pace, sped up, before event time is known, already due, with event time
// standing still and before any event is counted.
func TestFirstCloseETA(t *testing.T) {
	for _, c := range []struct {
		name       string
		first, t   int64
		rate       float64
		eta        float64
		haveETA    bool
		haveMinute bool
		lateness   time.Duration
	}{
		// T 10:07:48.250: 41.75 s of event time to 10:08:30.
		{name: "live", first: runMinute, t: runClose - 41750, rate: 1, eta: 41.75, haveETA: true, haveMinute: true, lateness: 30 * time.Second},
		{name: "gen:speed=20", first: runMinute, t: runClose - 41750, rate: 20, eta: 2.0875, haveETA: true, haveMinute: true, lateness: 30 * time.Second},
		// Lateness 2 min: the same T is 131.75 s away.
		{name: "lateness 2m", first: runMinute, t: runClose - 41750, rate: 1, eta: 131.75, haveETA: true, haveMinute: true, lateness: 2 * time.Minute},
		{name: "no event time yet", first: runMinute, t: 0, rate: 1, haveMinute: true, lateness: 30 * time.Second},
		{name: "already due", first: runMinute, t: runClose + 5000, rate: 1, eta: 0, haveETA: true, haveMinute: true, lateness: 30 * time.Second},
		{name: "due to the ms", first: runMinute, t: runClose, rate: 20, eta: 0, haveETA: true, haveMinute: true, lateness: 30 * time.Second},
		{name: "event time stands still", first: runMinute, t: runClose - 41750, rate: 0, haveMinute: true, lateness: 30 * time.Second},
		{name: "nothing counted yet", first: 0, t: runClose - 41750, rate: 1, lateness: 30 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			fc := estimateFirstClose(c.first, c.t, c.lateness, 16, c.rate, true)
			if fc.haveETA != c.haveETA || fc.haveMinute != c.haveMinute || (c.haveETA && abs(fc.eta-c.eta) > 1e-9) {
				t.Errorf("estimate %+v, want eta %v (have %v), minute known %v", fc, c.eta, c.haveETA, c.haveMinute)
			}
		})
	}
}

func abs(x float64) float64 { return max(x, -x) }

// TestRateMeter: event time's pace from samples at a fake wall clock: 1
// assumed until a second sample a second or more after the first, then
// T's advance over the wall time since the previous generation's start;
// T going back (a restart) starts over.
func TestRateMeter(t *testing.T) {
	var m rateMeter
	w0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t0 := runClose - 80_000
	steps := []struct {
		wall     time.Duration // since w0
		t        int64         // T, ms since t0
		rate     float64
		measured bool
	}{
		{0, 0, 1, false},
		{500 * time.Millisecond, 10_000, 1, false},    // too soon to measure
		{10 * time.Second, 200_000, 20, true},         // gen:speed=20
		{20 * time.Second, 400_000, 20, true},         // a new generation starts here
		{30 * time.Second, 400_000, 400.0 / 30, true}, // T stood still 10 s: averaged over 30 s
		{40 * time.Second, 400_000, 10, true},         // 20 s: over 40 s, then the generation from 20 s begins
		{50 * time.Second, 400_000, 0, true},          // over the 30 s since 20 s it stood still
		{51 * time.Second, -5_000, 1, false},          // T went back: start over
		{53 * time.Second, 35_000, 20, true},
	}
	for i, s := range steps {
		rate, measured := m.observe(w0.Add(s.wall), t0+s.t)
		if abs(rate-s.rate) > 1e-9 || measured != s.measured {
			t.Errorf("step %d (wall +%v, T +%d ms): rate %v measured %v, want %v %v", i, s.wall, s.t, rate, measured, s.rate, s.measured)
		}
	}
}

// fakeRun is a run's progress with a fake wall clock. The server reads it
// from its handlers' goroutines: the race detector does not see an HTTP
// answer order a test's later write after the handler's read, so it is
// guarded.
type fakeRun struct {
	mu       sync.Mutex
	t, first int64
	wall     time.Time
}

// set moves the run to event time t at wall time wall.
func (r *fakeRun) set(t int64, wall time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.t, r.wall = t, wall
}

func (r *fakeRun) progress() *Progress {
	get := func(f func() int64) func() int64 {
		return func() int64 { r.mu.Lock(); defer r.mu.Unlock(); return f() }
	}
	return &Progress{
		EventTime: get(func() int64 { return r.t }), FirstMinute: get(func() int64 { return r.first }),
		Lateness: 30 * time.Second, Riders: 16,
		Wall: func() time.Time { r.mu.Lock(); defer r.mu.Unlock(); return r.wall },
	}
}

// emptyStore is a store with no closed minute (a run that just started).
func emptyStore(t *testing.T) *store.Store {
	t.Helper()
	sc := store.DefaultConfig()
	sc.Dir = t.TempDir()
	sc.Sync = false
	st, err := store.Open(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// minutesBody is GET /v1/minutes' answer, raw.
func minutesBody(t *testing.T, h http.Handler) map[string]json.RawMessage {
	t.Helper()
	w := do(h, http.MethodGet, "/v1/minutes", "", "", "")
	if w.Code != http.StatusOK {
		t.Fatalf("GET /v1/minutes: %d %s", w.Code, w.Body)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("%v: %s", err, w.Body)
	}
	return m
}

// TestMinutesFirstClose: GET /v1/minutes of a server in the run's process
// says when the first minute closes, as the run gets going (no event, no
// event time, live pace assumed, 20x measured, due), with minutes still
// [] and nothing else added; a standalone server, and one whose store has
// a closed minute, add nothing.
func TestMinutesFirstClose(t *testing.T) {
	st := emptyStore(t)
	run := &fakeRun{wall: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg := DefaultConfig()
	cfg.Progress = run.progress()
	srv, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	const fields = `"lateness_seconds":30,"riders":16,`
	for _, step := range []struct {
		name   string
		t      int64
		first  int64
		wallS  float64
		want   string
		noMins bool
	}{
		{"no event yet", 0, 0, 0, `{"minute":null,"event_time":null,` + fields + `"rate":1.000,"rate_measured":false,"eta_seconds":null}`, true},
		{"fewer than K riders", 0, runMinute, 1, `{"minute":"2024-06-01T10:07:00Z","event_time":null,` + fields + `"rate":1.000,"rate_measured":false,"eta_seconds":null}`, true},
		{"live pace assumed", runClose - 84_000, runMinute, 1, `{"minute":"2024-06-01T10:07:00Z","event_time":"2024-06-01T10:07:06.000Z",` + fields + `"rate":1.000,"rate_measured":false,"eta_seconds":84.000}`, true},
		{"20x measured", runClose + 16_000, runMinute, 5, `{"minute":"2024-06-01T10:07:00Z","event_time":"2024-06-01T10:08:46.000Z",` + fields + `"rate":20.000,"rate_measured":true,"eta_seconds":0.000}`, true},
	} {
		run.t, run.first = step.t, step.first
		run.wall = run.wall.Add(time.Duration(step.wallS * float64(time.Second)))
		m := minutesBody(t, srv)
		if got := string(m["first_close"]); got != step.want {
			t.Errorf("%s: first_close\n got %s\nwant %s", step.name, got, step.want)
		}
		if string(m["minutes"]) != "[]" || len(m) != 2 {
			t.Errorf("%s: answer %v, want minutes [] and first_close only", step.name, m)
		}
	}

	// 20x before it is due (above, T was past it by the second sample):
	// 200 s of event time in 10 s, then 84 s to go: 4.2 s.
	run2 := &fakeRun{first: runMinute, t: runClose - 284_000, wall: time.Unix(0, 0)}
	cfg.Progress = run2.progress()
	srv2, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	minutesBody(t, srv2)
	run2.set(runClose-84_000, run2.wall.Add(10*time.Second))
	var fc struct {
		Rate         float64
		RateMeasured bool    `json:"rate_measured"`
		ETA          float64 `json:"eta_seconds"`
	}
	if err := json.Unmarshal(minutesBody(t, srv2)["first_close"], &fc); err != nil {
		t.Fatal(err)
	}
	if fc.Rate != 20 || !fc.RateMeasured || fc.ETA != 4.2 {
		t.Errorf("20x with 84 s of event time to go: %+v, want rate 20 (measured), eta 4.2 s", fc)
	}

	// Standalone: no progress, no field.
	plain, err := New(DefaultConfig(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := minutesBody(t, plain); m["first_close"] != nil {
		t.Errorf("a server without Progress answers first_close %s", m["first_close"])
	}
	// A closed minute: the field goes.
	fcfg := DefaultConfig()
	fcfg.Now = func() time.Time { return fixNow }
	fcfg.Progress = run.progress()
	f := newFixture(t, fcfg)
	if m := minutesBody(t, f.srv); m["first_close"] != nil || !strings.HasPrefix(string(m["minutes"]), `[{"minute":"2024-05-18T02:41:00Z"`) {
		t.Errorf("with closed minutes: %v", m)
	}
}

// TestProgressValidate: a Progress without its functions or with a
// lateness or K out of range is refused, naming the field.
func TestProgressValidate(t *testing.T) {
	run := &fakeRun{}
	for _, c := range []struct {
		edit func(p *Progress)
		want string
	}{
		{func(p *Progress) {}, ""},
		{func(p *Progress) { p.EventTime = nil }, "Progress needs EventTime and FirstMinute"},
		{func(p *Progress) { p.Lateness = -time.Second }, "Progress.Lateness=-1s"},
		{func(p *Progress) { p.Lateness = 25 * time.Hour }, "Progress.Lateness=25h0m0s"},
		{func(p *Progress) { p.Riders = 0 }, "Progress.Riders=0"},
	} {
		cfg := DefaultConfig()
		cfg.Progress = run.progress()
		c.edit(cfg.Progress)
		err := cfg.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Validate = %v, want %q", err, c.want)
		}
	}
}
