// Package dashboards holds demandpipe's operational views and alerts, and
// the tests that keep them true to the metrics the binary exports:
//
//	overview.json, source.json, sequence.json, close.json, sink.json,
//	store.json, serve.json   Grafana dashboards (schemaVersion 39, a
//	                         "datasource" variable of type prometheus)
//	rules.yml                Prometheus recording rules
//	alerts.yml               Prometheus alerting rules (severity,
//	                         summary, description, runbook_url)
//	tests/*.yml              promtool unit tests: every alert fires and
//	                         stays silent
//	README.md                how to load them; a runbook entry per alert
//
// The package has no code: `go test ./dashboards` lints every metric a
// `demandpipe run` can register, checks the rules and their unit tests with
// promtool, checks the dashboards' JSON and PromQL, and runs demandpipe
// under a real Prometheus to evaluate every expression against live
// metrics. The promtool and Prometheus checks skip, saying so, when Debian's
// prometheus package is not installed (.ci/run installs it).
package dashboards
