package dashboards

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Static checks: always run. The promtool parts skip, saying so, without
// Debian's prometheus package.

var dashboardFiles = []string{"overview.json", "source.json", "sequence.json", "close.json", "sink.json", "store.json", "serve.json", "scaleout.json"}

// dashboard is the part of Grafana's JSON model the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

// query is one PromQL expression of a dashboard, an alert or a recording
// rule, with where it comes from.
type query struct {
	where string
	expr  string // with Grafana's variables substituted (see grafanaVars)
	alert bool   // an alert condition: may be empty when all is well
}

// grafanaVars are what the expressions' variables stand for when a test
// runs them: every job and instance, and a rate window that holds several
// samples at any scrape interval up to 15 s.
var grafanaVars = strings.NewReplacer(`$__rate_interval`, `1m`, `$job`, `.*`, `$instance`, `.*`)

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	out := map[string]dashboard{}
	for _, f := range dashboardFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: not a valid dashboard: %v", f, err)
		}
		out[f] = d
	}
	return out
}

// dashboardQueries lists every target of every panel, and the metric
// selector of every label_values variable.
func dashboardQueries(t *testing.T, ds map[string]dashboard) []query {
	var qs []query
	for _, f := range dashboardFiles {
		d := ds[f]
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				for _, tg := range p.Targets {
					qs = append(qs, query{where: fmt.Sprintf("%s panel %q target %s", f, p.Title, tg.RefID), expr: grafanaVars.Replace(tg.Expr)})
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
		for _, v := range d.Templating.List {
			if m := labelValues.FindStringSubmatch(v.Definition); m != nil {
				qs = append(qs, query{where: fmt.Sprintf("%s variable %s", f, v.Name), expr: grafanaVars.Replace(m[1])})
			}
		}
	}
	return qs
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// TestDashboards checks the Grafana JSON: schema version, the datasource
// variable (type prometheus) that every panel uses, job and instance
// variables, unique panel ids, a grid inside 24 columns, and targets whose
// metric names are ones demandpipe exports (or recording rules). The
// expressions are parsed by promtool (as recording rules) when it is
// installed; TestEndToEnd runs them.
func TestDashboards(t *testing.T) {
	ds := loadDashboards(t)
	uids := map[string]bool{}
	for _, f := range dashboardFiles {
		d := ds[f]
		if d.SchemaVersion < 39 {
			t.Errorf("%s: schemaVersion %d, want >= 39", f, d.SchemaVersion)
		}
		if d.UID == "" || uids[d.UID] || d.Title == "" {
			t.Errorf("%s: uid %q (unique, non-empty) and title %q", f, d.UID, d.Title)
		}
		uids[d.UID] = true
		vars := map[string]string{}
		for _, v := range d.Templating.List {
			vars[v.Name] = v.Type
			if v.Name == "datasource" && string(v.Query) != `"prometheus"` {
				t.Errorf("%s: datasource variable queries %s, want \"prometheus\"", f, v.Query)
			}
			if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
				t.Errorf("%s: variable %s does not use ${datasource}", f, v.Name)
			}
		}
		if vars["datasource"] != "datasource" || vars["job"] != "query" || vars["instance"] != "query" {
			t.Errorf("%s: variables %v, want datasource (type datasource), job and instance (type query)", f, vars)
		}
		ids := map[int]bool{}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				if ids[p.ID] {
					t.Errorf("%s: panel id %d twice", f, p.ID)
				}
				ids[p.ID] = true
				if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
					t.Errorf("%s: panel %q gridPos %+v", f, p.Title, p.GridPos)
				}
				if p.Type == "row" {
					walk(p.Panels)
					continue
				}
				if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
					t.Errorf("%s: panel %q datasource %+v, want prometheus ${datasource}", f, p.Title, p.Datasource)
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no target", f, p.Title)
				}
				for _, tg := range p.Targets {
					if tg.RefID == "" || strings.TrimSpace(tg.Expr) == "" {
						t.Errorf("%s: panel %q: a target without refId or expr", f, p.Title)
					}
					for _, v := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(tg.Expr, -1) {
						if _, ok := vars[v[1]]; !ok && v[1] != "__rate_interval" {
							t.Errorf("%s: panel %q uses an undefined variable $%s", f, p.Title, v[1])
						}
					}
				}
			}
		}
		walk(d.Panels)
	}

	known := exportedNames(t, fullRegistry(t))
	for name := range recordedNames(t) {
		known[name] = true
	}
	qs := dashboardQueries(t, ds)
	for _, q := range qs {
		for _, name := range metricNames(q.expr) {
			if !known[name] {
				t.Errorf("%s: %q names %s, which demandpipe does not export", q.where, q.expr, name)
			}
		}
	}
	promtoolParse(t, qs)
}

// promtoolParse parses every expression with promtool, as recording rules
// of a scratch rule file (promtool has no bare expression checker).
func promtoolParse(t *testing.T, qs []query) {
	promtool := lookTool(t, "promtool")
	if promtool == "" {
		return
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboards\n    rules:\n")
	for i, q := range qs {
		e, _ := json.Marshal(q.expr) // a JSON string is a YAML string
		fmt.Fprintf(&b, "      - record: dashboard_expr_%d\n        expr: %s\n", i, e)
	}
	f := filepath.Join(t.TempDir(), "dashboards.yml")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboards' expressions: %v\n%s", err, out)
	}
}

// lookTool finds a Prometheus binary, or skips the caller's remaining
// promtool/Prometheus checks (not the test), saying why.
func lookTool(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		t.Logf("SKIP part: %s not found (apt-get install -y prometheus; .ci/run does): its checks did not run", name)
		return ""
	}
	return p
}

// ruleFile is a Prometheus rule file.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T, f string) ruleFile {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("%s: %v", f, err)
	}
	return rf
}

func recordedNames(t *testing.T) map[string]bool {
	out := map[string]bool{}
	for _, g := range loadRules(t, "rules.yml").Groups {
		for _, r := range g.Rules {
			out[r.Record] = true
		}
	}
	return out
}

// ruleQueries are the expressions of both rule files.
func ruleQueries(t *testing.T) []query {
	var qs []query
	for _, f := range []string{"rules.yml", "alerts.yml"} {
		for _, g := range loadRules(t, f).Groups {
			for _, r := range g.Rules {
				qs = append(qs, query{where: f + " " + r.Record + r.Alert, expr: r.Expr, alert: r.Alert != ""})
			}
		}
	}
	return qs
}

// TestRules checks the rule files: promtool check rules, promtool test
// rules over tests/*.yml, and, without promtool too: every alert has a
// severity, summary, description and a runbook_url whose anchor is a
// heading of README.md; every alert has unit tests that make it fire and
// that keep it silent; every name in an expression is exported by
// demandpipe, recorded by rules.yml, or Prometheus's own `up`.
func TestRules(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if h, ok := strings.CutPrefix(line, "### "); ok {
			anchors[strings.ToLower(strings.TrimSpace(h))] = true
		}
	}
	tests, _ := filepath.Glob("tests/*.yml")
	if len(tests) == 0 {
		t.Fatal("no rule unit tests in tests/")
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, f := range tests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var ut struct {
			RuleFiles []string `yaml:"rule_files"`
			Tests     []struct {
				AlertRuleTest []struct {
					Alertname string           `yaml:"alertname"`
					ExpAlerts []map[string]any `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		if err := yaml.Unmarshal(b, &ut); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !slices.Contains(ut.RuleFiles, "../rules.yml") || !slices.Contains(ut.RuleFiles, "../alerts.yml") {
			t.Errorf("%s: rule_files %v, want ../rules.yml and ../alerts.yml", f, ut.RuleFiles)
		}
		for _, tc := range ut.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					silent[a.Alertname] = true
				}
			}
		}
	}
	alerts := 0
	for _, g := range loadRules(t, "alerts.yml").Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("alerts.yml: a recording rule %s: those go in rules.yml", r.Record)
				continue
			}
			alerts++
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			_, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "#")
			if anchor != strings.ToLower(r.Alert) || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q: want #%s and a README.md heading '### %s'", r.Alert, r.Annotations["runbook_url"], strings.ToLower(r.Alert), r.Alert)
			}
			if !fires[r.Alert] || !silent[r.Alert] {
				t.Errorf("%s: unit tests that fire it: %v, that keep it silent: %v; want both", r.Alert, fires[r.Alert], silent[r.Alert])
			}
		}
	}
	if alerts < 6 {
		t.Errorf("%d alerts", alerts)
	}
	known := exportedNames(t, fullRegistry(t))
	for name := range recordedNames(t) {
		known[name] = true
	}
	known["up"] = true
	for _, q := range ruleQueries(t) {
		for _, name := range metricNames(q.expr) {
			if !known[name] {
				t.Errorf("%s: %q names %s, which demandpipe does not export", q.where, q.expr, name)
			}
		}
	}

	promtool := lookTool(t, "promtool")
	if promtool == "" {
		return
	}
	if out, err := exec.Command(promtool, "check", "rules", "rules.yml", "alerts.yml").CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	args := append([]string{"test", "rules"}, tests...)
	if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}

var (
	promqlStrings  = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promqlMatchers = regexp.MustCompile(`\{[^{}]*\}|\[[^\[\]]*\]`)
	promqlLists    = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlNumbers  = regexp.MustCompile(`\b(?:0x[0-9a-fA-F]+|(?:[0-9]+(?:ms|[smhdwy]))+|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\b`)
	promqlIdents   = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true, "atan2": true, "group_left": true, "group_right": true}
)

// metricNames are the metric names an expression selects: identifiers
// that are not functions, keywords, label names or grouping lists. A small
// lexer, not a parser: enough for the expressions in this directory.
func metricNames(expr string) []string {
	s := promqlStrings.ReplaceAllString(expr, `""`)
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlLists.ReplaceAllString(s, " ")
	s = promqlNumbers.ReplaceAllString(s, " ")
	var out []string
	for _, m := range promqlIdents.FindAllStringSubmatch(s, -1) {
		name := m[0]
		if m[1] != "" || promqlKeywords[strings.ToLower(name)] {
			continue // a function or aggregation call, or a keyword
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (instance, le) (rate(a_bucket{job=~".*", x="by(y)"}[1m])) / on () group_left () b:c:d`: "a_bucket b:c:d",
		`time() - x_timestamp_seconds offset 5m > 1e9 and y > bool 0x1F`:                               "x_timestamp_seconds y",
		`vector(4 * 1024 * 1024) or absent(up{job="demandpipe"})`:                                      "up",
		`histogram_quantile(0.99, sum without (handler) (rate(h_bucket[5m])))`:                         "h_bucket",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// TestProvisioning: the Grafana provisioning files parse, provide a
// Prometheus data source the dashboards' `datasource` variable lists (its
// query is the data source type), and load the dashboards from one folder.
func TestProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, Access, URL string
			IsDefault                    bool `yaml:"isDefault"`
		}
	}
	readYAML(t, "provisioning/datasources/demandpipe.yml", &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 {
		t.Fatalf("datasources: %+v", ds)
	}
	d := ds.Datasources[0]
	if d.Type != "prometheus" || d.Access != "proxy" || d.URL == "" || d.UID == "" || !d.IsDefault {
		t.Fatalf("data source %+v", d)
	}
	for f, db := range loadDashboards(t) {
		found := false
		for _, v := range db.Templating.List {
			if v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"`+d.Type+`"` {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no datasource variable of type %s: the provisioned data source would not be offered", f, d.Type)
		}
	}
	var dp struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Folder, Type string
			Options            struct{ Path string }
		}
	}
	readYAML(t, "provisioning/dashboards/demandpipe.yml", &dp)
	if dp.APIVersion != 1 || len(dp.Providers) != 1 || dp.Providers[0].Type != "file" || dp.Providers[0].Options.Path == "" || dp.Providers[0].Folder == "" {
		t.Fatalf("dashboards provider: %+v", dp)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
