package dashboards

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/internal/pulsartest"
)

// TestEndToEnd runs the real binary under a real Prometheus and evaluates
// every dashboard, variable, recording-rule and alert expression through
// the query API:
//
//   - no expression errors;
//   - every metric name it selects is one the running processes export
//     (read from their /metrics: a `run`, and a scale-out deployment of one
//     dedup and one aggregate process), a recording rule, Prometheus's `up`, or a
//     Cassandra-sink metric (demandpipe_sink_*: a store run has no sink
//     queue, so those are checked against the full registry instead),
//     or a recording rule over those;
//   - every expression returns a series, except alert conditions (empty
//     while all is well; each name inside them must have series instead)
//     and the Cassandra-specific ones (sinkOnly);
//   - every rule is healthy after a few evaluations (/api/v1/rules).
//
// The run and the dedup process read `-source=gen:speed=60,rate=6000`:
// event time runs 60 times faster, so minutes close every second; a small
// city (6,000 events a minute) leaves the CPU to the tests beside it (the
// default 100,000 made each process replay 100,000 events a second).
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the end-to-end run builds demandpipe and runs Prometheus (~30 s)")
	}
	prom := lookTool(t, "prometheus")
	if prom == "" {
		t.Skip("prometheus not installed (apt-get install -y prometheus): end-to-end check skipped")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "demandpipe")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	build := exec.Command(gobin, "build", "-o", bin, "./cmd/demandpipe")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	dpAddr, promAddr := freeAddr(t), freeAddr(t)
	// -store.max-ahead: event time runs a minute a second, so the store
	// would refuse minutes 10 minutes ahead of the clock after 10 s.
	// Two definitions (the default and a cheap second), so that the
	// per-definition series the alerts read exist.
	defs := filepath.Join(dir, "defs.yaml")
	if err := os.WriteFile(defs, []byte("- name: default\n  resolution: 8\n  rings: [0, 1, 2, 3, 4, 5, 10, 15, 20]\n  windows: [1, 2, 4, 8, 16, 32]\n- name: second\n  resolution: 8\n  rings: [0]\n  windows: [1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, "demandpipe", bin, "run", "-source=gen:speed=60,rate=6000", "-sink=store:"+filepath.Join(dir, "store"),
		"-serve="+dpAddr, "-progress=never", "-shutdown-timeout=10s", "-store.max-ahead=2h", "-definitions="+defs)
	waitHTTP(t, "http://"+dpAddr+"/healthz", 30*time.Second)

	// A scale-out deployment beside it (one dedup and one aggregate
	// process) on the project's Pulsar test double: the Scale-out
	// dashboard's and alerts' series come from real roles.
	ps, err := pulsartest.Start(pulsartest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	dedupAddr, aggAddr := freeAddr(t), freeAddr(t)
	roles := []string{"-scaleout.url=" + ps.URL(), "-scaleout.topic=persistent://public/default/e2e-counted", "-progress=never"}
	start(t, "aggregate", bin, append([]string{"run", "-role=aggregate", "-scaleout.ranges=0-65535",
		"-sink=store:" + filepath.Join(dir, "agg"), "-store.max-ahead=2h", "-serve=" + aggAddr}, roles...)...)
	start(t, "dedup", bin, append([]string{"run", "-role=dedup", "-source=gen:speed=60,rate=6000", "-serve=" + dedupAddr}, roles...)...)
	waitHTTP(t, "http://"+aggAddr+"/healthz", 30*time.Second)
	waitHTTP(t, "http://"+dedupAddr+"/healthz", 30*time.Second)
	targets := []string{dpAddr, dedupAddr, aggAddr}

	rules, _ := filepath.Abs("rules.yml")
	alerts, _ := filepath.Abs("alerts.yml")
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files: [%q, %q]
scrape_configs:
  - job_name: demandpipe
    static_configs:
      - targets: [%q, %q, %q]
`, rules, alerts, targets[0], targets[1], targets[2])
	cfgFile := filepath.Join(dir, "prom.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, "prometheus", prom, "--web.listen-address="+promAddr, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--config.file="+cfgFile, "--log.level=warn")
	api := "http://" + promAddr

	// A few scrapes, minutes committed, and the API exercised so that the
	// serve histograms hold observations.
	deadline := time.Now().Add(40 * time.Second)
	for {
		for _, p := range []string{"/v1/minutes", "/v1/products", "/healthz", "/readyz", "/nope"} {
			if r, err := http.Get("http://" + dpAddr + p); err == nil {
				r.Body.Close()
			}
		}
		n, _ := instant(api, `count_over_time(up{job="demandpipe"}[1m]) >= 5 and on () demandpipe_store_minute_commits_total > 1`+
			` and on () demandpipe_scaleout_closed_minute_timestamp_seconds > 0`)
		if len(n) == len(targets) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Prometheus did not scrape the three processes 5 times with 2 minutes committed by the run and one closed by the aggregate process within 40 s")
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // two more rule evaluations
	// A dedup process's closed minute is its last watermark: it used to
	// stay 0, and DemandpipeFeaturesStale fired on every dedup process.
	if zero, err := instant(api, `demandpipe_pipeline_last_closed_minute_timestamp_seconds == 0`); err != nil || len(zero) > 0 {
		t.Errorf("processes that have not closed a minute after it all: %s (%v)", zero, err)
	}

	exported := map[string]bool{}
	for _, a := range targets {
		maps.Copy(exported, scrapedNames(t, "http://"+a+"/metrics"))
	}
	full := exportedNames(t, fullRegistry(t))
	recorded := recordedNames(t)
	sinkRecorded := map[string]bool{} // recording rules over sink metrics
	for _, g := range loadRules(t, "rules.yml").Groups {
		for _, r := range g.Rules {
			for _, name := range metricNames(r.Expr) {
				sinkRecorded[r.Record] = sinkRecorded[r.Record] || strings.HasPrefix(name, "demandpipe_sink_")
			}
		}
	}
	// Metrics of another sink or source than this run's (Cassandra, Pulsar)
	// may be named without series.
	sinkOnly := func(name string) bool {
		other := strings.HasPrefix(name, "demandpipe_sink_") || strings.HasPrefix(name, "demandpipe_source_pulsar_")
		return other && full[name] || sinkRecorded[name]
	}

	qs := append(dashboardQueries(t, loadDashboards(t)), ruleQueries(t)...)
	for _, q := range qs {
		res, err := instant(api, q.expr)
		if err != nil {
			t.Errorf("%s: %q: %v", q.where, q.expr, err)
			continue
		}
		specific := false
		for _, name := range metricNames(q.expr) {
			switch {
			case sinkOnly(name):
				specific = true
			case exported[name] || recorded[name] || name == "up":
				if q.alert {
					if s, err := instant(api, name); err != nil || len(s) == 0 {
						t.Errorf("%s: %s (in the alert condition) has no series (%v)", q.where, name, err)
					}
				}
			default:
				t.Errorf("%s: %q names %s, which the running demandpipe does not export", q.where, q.expr, name)
			}
		}
		if len(res) == 0 && !q.alert && !specific {
			t.Errorf("%s: %q returned no series", q.where, q.expr)
		}
	}
	t.Logf("%d expressions evaluated", len(qs))

	var rr struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name, Health, LastError string
				}
			}
		}
	}
	if err := getJSON(api+"/api/v1/rules", &rr); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rr.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" || r.LastError != "" {
				t.Errorf("rule %s: health %q, error %q", r.Name, r.Health, r.LastError)
			}
		}
	}
	if want := len(ruleQueries(t)); n != want {
		t.Errorf("Prometheus loaded %d rules, the files hold %d", n, want)
	}
}

// start runs a process until the test ends: SIGTERM then, SIGKILL 10 s
// later, and waits for it (no process outlives the test).
func start(t *testing.T, name, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	log := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-done
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("%s output:\n%s", name, b)
		}
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitHTTP(t *testing.T, u string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		r, err := http.Get(u)
		if err == nil {
			r.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not up after %s: %v", u, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func getJSON(u string, v any) error {
	c := http.Client{Timeout: 10 * time.Second}
	r, err := c.Get(u)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	return json.NewDecoder(r.Body).Decode(v)
}

// instant evaluates expr now; it returns the result's series (a scalar
// counts as one) or the API's error.
func instant(api, expr string) ([]json.RawMessage, error) {
	var res struct {
		Status, Error string
		Data          struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		}
	}
	if err := getJSON(api+"/api/v1/query?query="+url.QueryEscape(expr), &res); err != nil {
		return nil, err
	}
	if res.Status != "success" {
		return nil, fmt.Errorf("%s", res.Error)
	}
	if res.Data.ResultType == "scalar" || res.Data.ResultType == "string" {
		return []json.RawMessage{res.Data.Result}, nil
	}
	var series []json.RawMessage
	if err := json.Unmarshal(res.Data.Result, &series); err != nil {
		return nil, err
	}
	return series, nil
}

// scrapedNames are the metric names in a text exposition, with the
// _bucket/_sum/_count series of histograms and summaries as they appear.
func scrapedNames(t *testing.T, u string) map[string]bool {
	t.Helper()
	r, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}
