package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
)

const configMore = `Lists every knob of "demandpipe run": its flag, its default on this machine, and
what it does (ranges are in the descriptions, and each package's Validate enforces
them). -format=json gives the same as data, for scripts and for sweeps
("demandpipe tune" varies some of them); -format=yaml a complete, commented config file
for "demandpipe run -config=FILE" (flags override it). "demandpipe help run" explains
them by stage.`

// configCommand lists run's knobs.
func configCommand(args []string) error {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	format := fs.String("format", "text", "text, json or yaml (a config file for run -config)")
	if err := parse(fs, args, "demandpipe config [-format=text|json|yaml]: list the knobs of run with their defaults.", configMore); err != nil {
		return err
	}
	rf := newRunFlags()
	if *format == "yaml" {
		_, err := os.Stdout.Write(writeConfigYAML(flagGroups(rf.fs)))
		return err
	}
	type knob struct {
		Stage   string `json:"stage"`
		Flag    string `json:"flag"`
		Default string `json:"default"`
		Usage   string `json:"usage"`
	}
	var knobs []knob
	for _, g := range flagGroups(rf.fs) {
		stage, _, _ := strings.Cut(g.title, ":")
		for _, f := range g.flags {
			knobs = append(knobs, knob{stage, "-" + f.Name, f.DefValue, f.Usage})
		}
	}
	switch *format {
	case "json":
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(knobs)
	case "text":
		w := 0
		for _, k := range knobs {
			w = max(w, len(k.Flag)+len(k.Default)+3)
		}
		stage := ""
		for _, k := range knobs {
			if k.Stage != stage {
				stage = k.Stage
				fmt.Printf("%s\n", stage)
			}
			// The whole description, wrapped: a cut one hid the ranges.
			for i, l := range wrapWords(k.Usage, max(40, 100-w)) {
				flag := ""
				if i == 0 {
					flag = k.Flag + "=" + k.Default
				}
				fmt.Printf("  %-*s %s\n", w, flag, l)
			}
		}
		return nil
	}
	return fmt.Errorf("-format=%q: want text, json or yaml", *format)
}
