// Command demandpipe turns raw rider events into near-real-time geospatial
// demand features. It only parses flags and wires packages; see the
// packages for the logic, in the order data meets them: source, encode
// (projection), dedup, kring, windows, pipeline, sink.
package main

import (
	"fmt"
	"os"
	"strings"
)

const usage = `demandpipe: raw rider events in, merged demand-feature rows out.

Usage:
  demandpipe run   [flags]   run the pipeline (default: live generator -> feature store,
                             served with a heat map on http://127.0.0.1:8080/)
  demandpipe gen   [flags]   write a synthetic event file (NDJSON, .gz or .zst)
  demandpipe publish -to=pulsar://HOST:6650/TOPIC FILE  publish an event file to Pulsar, one message a line
  demandpipe bench [flags]   replay generated events from memory, report throughput
  demandpipe tune  [flags]   sweep parallelism, sink writers and batch size; table, CSV, chart, advice
  demandpipe serve [flags]   serve features from a store over HTTP
  demandpipe schema cassandra  print the CQL of the Cassandra sink's tables
  demandpipe definitions list|promote|diff -store=DIR …  a store's feature definitions; make one active
  demandpipe history -source=file:EVENTS -at=QUERIES.csv  features as served at past times (point in time)
  demandpipe config [-format=json]  list every knob of run with its default
  demandpipe version         print the module version, commit and Go version (also --version)
  demandpipe healthcheck [flags]  exit 0 when /readyz on :8080 answers 200 (the container's HEALTHCHECK)
  demandpipe help  COMMAND   explain a command's flags

Data flow: source -> projection (ts, rider_id, lat, lng, product_type) -> dedup
(first event per rider, product and minute) -> H3 cell -> k-ring smoothing and
sliding windows -> one row per hexagon, product and minute -> sink.

Examples:
  demandpipe run                                   # live city -> store -> API and page on :8080
  demandpipe run -sink=ndjson:-                    # live city, rows on stdout
  demandpipe gen -o events.ndjson.zst -events 2000000
  demandpipe run -source=file:events.ndjson.zst -sink=ndjson:rows.ndjson
  demandpipe bench -events 2000000
  demandpipe publish -to=pulsar://localhost:6650/persistent://public/default/rides events.ndjson.zst
  demandpipe run -source='pulsar://localhost:6650/persistent://public/default/rides?subscription=dp' -sink=store:features
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "run":
		err = runCommand(args)
	case "gen":
		err = genCommand(args)
	case "publish":
		err = publishCommand(args)
	case "bench":
		err = benchCommand(args)
	case "tune":
		err = tuneCommand(args)
	case "serve":
		err = serveCommand(args)
	case "schema":
		err = schemaCommand(args)
	case "config":
		err = configCommand(args)
	case "version", "-version", "--version":
		err = versionCommand(args)
	case "healthcheck":
		err = healthcheckCommand(args)
	case "definitions":
		err = definitionsCommand(args)
	case "history":
		err = historyCommand(args)
	case "help", "-h", "-help", "--help":
		if len(args) > 0 {
			switch args[0] {
			case "run", "gen", "publish", "bench", "tune", "serve", "schema", "config", "healthcheck", "definitions", "history":
				// Asked for: help goes to stdout, so it pipes into grep.
				helpOut = os.Stdout
				os.Args = []string{os.Args[0], args[0], "-h"}
				if args[0] == "schema" {
					os.Args = []string{os.Args[0], "schema", "cassandra", "-h"}
				}
				main()
				return
			case "version":
				fmt.Println("demandpipe version (also --version): prints the module version, commit, build date and Go version; it takes no flags.")
				return
			case "help":
				fmt.Print(usage)
				return
			default:
				fmt.Fprintf(os.Stderr, "demandpipe help: unknown command %q%s\n", args[0], suggestCommand(args[0]))
				os.Exit(2)
			}
		}
		fmt.Print(usage)
		return
	default:
		// One line and a pointer, not the whole usage: a typo's answer
		// should fit on the screen it was typed on.
		fmt.Fprintf(os.Stderr, "demandpipe: unknown command %q%s\n", cmd, suggestCommand(cmd))
		os.Exit(2)
	}
	if err != nil {
		if err == errUsage {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "demandpipe %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

// commands are the commands main knows, for suggestions.
var commands = []string{"run", "gen", "publish", "bench", "tune", "serve", "schema", "config", "definitions", "history", "version", "healthcheck", "help"}

// suggestCommand is ": did you mean X?" for the nearest command to name
// (or names sharing its prefix), followed by where the list is.
func suggestCommand(name string) string {
	best, bestD := []string(nil), 3
	for _, c := range commands {
		switch d := editDistance(strings.ToLower(name), c); {
		case d < bestD:
			best, bestD = []string{c}, d
		case d == bestD:
			best = append(best, c)
		}
	}
	if len(best) == 0 {
		for _, c := range commands {
			if len(name) >= 2 && strings.HasPrefix(c, strings.ToLower(name)) {
				best = append(best, c)
			}
		}
	}
	out := ""
	if len(best) > 0 {
		out = ": did you mean " + strings.Join(best, " or ") + "?"
	}
	return out + " (demandpipe help lists the commands)"
}
