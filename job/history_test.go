package job

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/history"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/pipeline"
)

// liveAnswer is what the run's server answered for a query while the run
// was live, with the event time the input had reached then.
type liveAnswer struct {
	q        history.Query
	caughtUp bool  // the run had closed every minute the input allowed
	minute   int64 // the minute served
	found    bool
	features []int32
}

// TestHistoryEqualsLiveServing (issue 23): point-in-time history answers
// what a live run's server answered at those times. A producer writes a
// city into a pipe minute by minute, as a live source delivers it; at
// each step the test asks the run's API for random places, then asks
// history the same questions at the event time the input had reached:
//   - once the run has caught up (every minute the input allows is
//     closed), the minute and every feature are the same;
//   - while it is still closing, it may serve an older minute, never a
//     newer one, and that minute's features are history's for it.
func TestHistoryEqualsLiveServing(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	const perMinute = 3000
	minutes := testsize.Pick(8, 20)
	gc := gen.DefaultConfig()
	gc.EventsPerMinute, gc.Riders = perMinute, 800
	data, err := gen.Generate(gc, perMinute*minutes)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := gen.New(gc)
	products := g.Products()
	lines := bytes.SplitAfter(data, []byte("\n"))
	fifo := filepath.Join(t.TempDir(), "live.ndjson")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("no named pipe here: %v", err)
	}
	c := testConfig(t)
	c.Source = "file:" + fifo
	c.Pipeline.IdleTimeout = time.Hour // pauses between steps are not idleness
	j, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- j.Run(context.Background()) }()
	rng := rand.New(rand.NewPCG(testsize.Seed(t), 23))
	var live []liveAnswer
	lateness := c.Pipeline.Lateness.Milliseconds()
	start := gc.Start.UnixMilli()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	// Each step writes the input up to 40 s past a minute's end: 10 s past
	// the lateness, so the K-th rider's time has passed the close of that
	// minute and not of the next.
	for m := range minutes - 1 {
		upTo := start + int64(m+1)*60_000 + lateness + 10_000
		for next < len(lines) && lineTS(t, lines[next]) <= upTo {
			if _, err := w.Write(lines[next]); err != nil {
				t.Fatal(err)
			}
			next++
		}
		want := start/60_000 + int64(m)
		ask := func(caughtUp bool) {
			for range 5 {
				q := history.Query{TS: upTo, Lat: 40.70 + rng.Float64()*0.12, Lng: -74.02 + rng.Float64()*0.1, Product: products[rng.IntN(len(products))]}
				if a, ok := askLive(t, j.Addr(), q, caughtUp); ok {
					live = append(live, a)
				}
			}
		}
		ask(false) // while the run is reading and closing
		waitForMinute(t, j.Addr(), want)
		ask(true)
	}
	for ; next < len(lines); next++ {
		w.Write(lines[next])
	}
	w.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkHistory(t, c.Pipeline, data, live, lateness)
}

// checkHistory asks history each live question at its time, and at the
// time the served minute closed.
func checkHistory(t *testing.T, cfg pipeline.Config, data []byte, live []liveAnswer, lateness int64) {
	t.Helper()
	var qs []history.Query
	for i, a := range live {
		q := a.q
		q.Line = 2 * i
		qs = append(qs, q)
		q.TS, q.Line = encode.MinuteStart(a.minute+1).UnixMilli()+lateness, 2*i+1
		qs = append(qs, q)
	}
	answers := make([]history.Answer, len(qs))
	g, err := history.NewGatherer(cfg.Def, cfg.Lateness, qs, func(a *history.Answer) error {
		a.Features = slices.Clone(a.Features)
		answers[a.Line] = *a
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := pipeline.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.Emit = g // as demandpipe history runs it
	if err := e.Run(context.Background(), bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	caught := 0
	for i, a := range live {
		at, closed := answers[2*i], answers[2*i+1]
		if !at.HasMinute || !closed.HasMinute {
			t.Fatalf("query %d: history answered no minute", i)
		}
		if a.minute > at.Minute || a.caughtUp && a.minute != at.Minute {
			t.Fatalf("query %d at %s (caught up %v): served minute %s, history's at that time %s",
				i, time.UnixMilli(a.q.TS).UTC(), a.caughtUp, encode.MinuteStart(a.minute), encode.MinuteStart(at.Minute))
		}
		if closed.Minute != a.minute || closed.Found != a.found || !slices.Equal(closed.Features, a.features) {
			t.Fatalf("query %d, minute %s: served found=%v %v, history found=%v %v", i, encode.MinuteStart(a.minute), a.found, a.features, closed.Found, closed.Features)
		}
		if a.caughtUp {
			caught++
		}
	}
	t.Logf("%d live answers equal history's, %d of them once the run had caught up", len(live), caught)
}

// askLive asks the run's server the features of q now; false before the
// run's first close (503: nothing to serve yet, an allowed lag).
func askLive(t *testing.T, addr string, q history.Query, caughtUp bool) (liveAnswer, bool) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s/v1/features?lat=%f&lng=%f&product=%s", addr, q.Lat, q.Lng, q.Product))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Minute   string `json:"minute"`
		Found    bool   `json:"found"`
		Features []struct {
			Value int32 `json:"value"`
		} `json:"features"`
	}
	if resp.StatusCode == http.StatusServiceUnavailable && !caughtUp {
		return liveAnswer{}, false
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET features: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	m, err := time.Parse(time.RFC3339, body.Minute)
	if err != nil {
		t.Fatal(err)
	}
	a := liveAnswer{q: q, caughtUp: caughtUp, minute: m.UnixMilli() / 60_000, found: body.Found}
	for _, f := range body.Features {
		a.features = append(a.features, f.Value)
	}
	return a, true
}

// waitForMinute waits until the server's latest closed minute is m, and
// fails if it passes m (the run closed a minute the input did not allow).
func waitForMinute(t *testing.T, addr string, m int64) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		latest := minutesServed(t, "http://"+addr+"/v1/minutes")
		if len(latest) == 0 {
			continue
		}
		lt, err := time.Parse(time.RFC3339, latest[0])
		if err != nil {
			t.Fatal(err)
		}
		switch got := lt.UnixMilli() / 60_000; {
		case got == m:
			return
		case got > m:
			t.Fatalf("the run closed %s, past %s, which the input allows", lt, encode.MinuteStart(m))
		}
	}
	t.Fatalf("minute %s not closed within a minute", encode.MinuteStart(m))
}

// lineTS is a generated line's ts.
func lineTS(t *testing.T, line []byte) int64 {
	var ev struct {
		TS int64 `json:"ts"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatalf("%v: %q", err, line)
	}
	return ev.TS
}
