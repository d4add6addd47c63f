package job

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/internal/syncbuf"
	"github.com/demandpipe/demandpipe/store"
)

// testConfig is a small run: the live generator sped up 600 times (ten
// minutes of event time a second), rings and windows cut to two each.
func testConfig(t *testing.T) Config {
	c := DefaultConfig()
	c.Source = "gen:rate=3000,riders=500,speed=600"
	c.Sink = "store:" + filepath.Join(t.TempDir(), "features")
	c.Serve = "127.0.0.1:0"
	c.Store.Sync = false
	c.Pipeline.Def.Rings, c.Pipeline.Def.Windows = []int{0, 1}, []int{1, 2}
	c.Pipeline.Parallelism = 2
	c.Log = slog.New(slog.NewTextHandler(t.Output(), nil))
	return c
}

// TestLiveRunServesAndStopsGracefully drives the main job as the README's
// first command runs it (the live generator into a store, served), without
// the command line: while it runs its API answers the minutes it closed,
// and Stop ends the input, closes every minute seen and returns nil, with
// the summary written and the store holding what the API said.
func TestLiveRunServesAndStopsGracefully(t *testing.T) {
	t.Parallel()
	c := testConfig(t)
	var sum syncbuf.Buffer
	c.Summary = &sum
	var j *Job
	var served []string
	var once sync.Once
	closes := 0
	c.AfterClose = func() {
		if closes++; closes < 2 {
			return
		}
		once.Do(func() {
			served = minutesServed(t, "http://"+j.Addr()+"/v1/minutes")
			j.Stop()
		})
	}
	j, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := j.Run(ctx); err != nil {
		t.Fatalf("Run: %v\n%s", err, sum.String())
	}
	if len(served) < 2 {
		t.Fatalf("the API served %d minutes while the job ran, want >= 2", len(served))
	}
	if !strings.Contains(sum.String(), "minutes closed") {
		t.Fatalf("no summary:\n%s", sum.String())
	}
	sc := c.Store
	sc.Dir, sc.ReadOnly = strings.TrimPrefix(c.Sink, "store:"), true
	st, err := store.Open(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	latest, ok := st.LatestMinute()
	if !ok {
		t.Fatal("the store holds no minute after the stop")
	}
	for _, m := range served {
		mt, err := time.Parse(time.RFC3339, m)
		if err != nil {
			t.Fatal(err)
		}
		if mt.Unix()/60 > latest {
			t.Errorf("served minute %s is after the store's latest %s", m, time.Unix(latest*60, 0).UTC())
		}
	}
}

// minutesServed is the minutes /v1/minutes lists.
func minutesServed(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Minutes []struct {
			Minute string `json:"minute"`
		} `json:"minutes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Error(err)
	}
	var out []string
	for _, m := range body.Minutes {
		out = append(out, m.Minute)
	}
	return out
}

// TestStopBeforeRun: a stop asked for before the job starts (a signal
// during a slow open) still ends it: Run returns at once, nil.
func TestStopBeforeRun(t *testing.T) {
	t.Parallel()
	c := testConfig(t)
	c.Serve = ""
	j, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	j.Stop()
	done := make(chan error, 1)
	go func() { done <- j.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after an early Stop")
	}
}

// TestConfigRefused: New refuses a bad Config with the setting named,
// before anything opens.
func TestConfigRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Role.Name = "dedupe" }, `-role="dedupe"`},
		{func(c *Config) { c.Role.Name, c.Role.Scaleout.Topic, c.Role.Dedups = "aggregate", "counted", 0 }, "-scaleout.dedups=0"},
		{func(c *Config) { c.Role.Name = "dedup" }, "scaleout.topic: needed"},
		{func(c *Config) { c.Source, c.Sink = "file:x.ndjson", "ndjson:x.ndjson" }, "name the same file"},
	} {
		c := DefaultConfig()
		tc.edit(&c)
		if _, err := New(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
}

// TestServerKnowsWhenTheFirstMinuteCloses: the run's own server (not a
// separate serve) tells before the first close when it is due, from the
// engine's event time and the run's lateness (serve.Progress).
func TestServerKnowsWhenTheFirstMinuteCloses(t *testing.T) {
	t.Parallel()
	c := testConfig(t)
	c.Source = "gen:rate=6000,riders=500" // live: the first close is 30-90 s away
	j, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- j.Run(context.Background()) }()
	defer func() {
		j.Stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	type firstClose struct {
		Minute          string   `json:"minute"`
		LatenessSeconds float64  `json:"lateness_seconds"`
		ETASeconds      *float64 `json:"eta_seconds"`
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no estimate of the first close within 20 s")
		}
		addr := j.Addr()
		if addr == "" {
			continue
		}
		resp, err := http.Get("http://" + addr + "/v1/minutes")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			FirstClose *firstClose `json:"first_close"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		fc := body.FirstClose
		if fc == nil {
			t.Fatal("no first_close in /v1/minutes before the first close")
		}
		if fc.ETASeconds == nil || fc.Minute == "" {
			continue // fewer than K riders seen yet
		}
		if fc.LatenessSeconds != 30 || *fc.ETASeconds < 0 || *fc.ETASeconds > 91 {
			t.Fatalf("first_close %+v (eta %v): want lateness 30 and an eta within 0..91 s", *fc, *fc.ETASeconds)
		}
		return
	}
}
