package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The config file (-config=FILE): YAML, one key per flag, named as the
// flag without its dash (`sink.writers: 16`), a list where the flag takes
// one (`kring.rings: [0, 1, 2]`, or the flag's own "0,1,2"). Flags on the
// command line override the file, whatever their order. An unknown key is
// refused with the nearest flag names, and a bad value names the file, its
// line and the key. Secrets never go in it: no flag takes one (the Pulsar
// and Cassandra URLs refuse tokens and passwords; they come from the
// environment or from files named by password_file= and the like).
// `demandpipe config -format=yaml` prints a complete, commented file of
// the defaults that loads back to the same settings.

// configFileArg finds -config=FILE (or -config FILE) in args, as the flag
// package would, stopping at "--" or the first non-flag argument.
func configFileArg(args []string) (string, bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			return "", false
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != "config" {
			continue
		}
		if hasValue {
			return value, true
		}
		if i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// applyConfigFile sets fs's flags from the config file named by -config in
// args, if any; the command line, parsed after, overrides them.
func applyConfigFile(fs *flag.FlagSet, args []string) error {
	path, ok := configFileArg(args)
	if !ok || path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("-config: %w", err)
	}
	return loadConfig(fs, path, b)
}

// loadConfig applies the YAML config b (from path, for messages) to fs.
func loadConfig(fs *flag.FlagSet, path string, b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("-config=%s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty, or comments only
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("-config=%s: line %d: want a mapping of flag names to values (sink.writers: 16)", path, m.Line)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		name := k.Value
		if line, dup := seen[name]; dup {
			return fmt.Errorf("-config=%s: line %d: %s given twice (first on line %d)", path, k.Line, name, line)
		}
		seen[name] = k.Line
		f := fs.Lookup(name)
		if f == nil || name == "config" {
			msg := fmt.Sprintf("-config=%s: line %d: unknown key %q (keys are run's flags without the dash)", path, k.Line, name)
			if near := nearestFlags(fs, name); len(near) > 0 {
				msg += ": did you mean " + strings.Join(near, " or ") + "?"
			}
			return fmt.Errorf("%s", msg)
		}
		value, err := configValue(v)
		if err != nil {
			return fmt.Errorf("-config=%s: line %d: %s: %v", path, v.Line, name, err)
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("-config=%s: line %d: %s: %v", path, v.Line, name, err)
		}
	}
	return nil
}

// configValue is a YAML value as the flag's text: a scalar as written, a
// list of scalars joined by commas.
func configValue(v *yaml.Node) (string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return "", nil
		}
		return v.Value, nil
	case yaml.SequenceNode:
		parts := make([]string, len(v.Content))
		for i, c := range v.Content {
			if c.Kind != yaml.ScalarNode {
				return "", fmt.Errorf("want a list of values")
			}
			parts[i] = c.Value
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("want a value or a list of values, not a mapping")
}

// writeConfigYAML writes every flag of the groups as a commented YAML file
// of its current values (the defaults, for `config -format=yaml`).
func writeConfigYAML(groups []flagGroup) []byte {
	var b bytes.Buffer
	b.WriteString("# demandpipe run -config=FILE: one key per flag of run, named as the flag\n")
	b.WriteString("# without its dash. Flags on the command line override this file. Every\n")
	b.WriteString("# value below is the default on the machine that printed it.\n")
	for _, g := range groups {
		if g.title != "" {
			fmt.Fprintf(&b, "\n# --- %s\n", g.title)
		}
		for _, f := range g.flags {
			if f.Name == "config" {
				continue
			}
			for _, l := range wrapWords(f.Usage, 76) {
				fmt.Fprintf(&b, "# %s\n", l)
			}
			fmt.Fprintf(&b, "%s: %s\n", f.Name, yamlScalar(f.Value.String()))
		}
	}
	return b.Bytes()
}

// yamlScalar writes a flag's value: numbers and booleans plain (they load
// back as the same text), anything else as yaml quotes it when needed.
func yamlScalar(v string) string {
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return v
	}
	if v == "true" || v == "false" {
		return v
	}
	b, _ := yaml.Marshal(v)
	return strings.TrimSuffix(string(b), "\n")
}

// wrapWords cuts s into lines of at most width bytes at spaces.
func wrapWords(s string, width int) []string {
	var lines []string
	for _, para := range strings.Split(s, "\n") {
		line := ""
		for _, w := range strings.Fields(para) {
			if line != "" && len(line)+1+len(w) > width {
				lines = append(lines, line)
				line = ""
			}
			if line != "" {
				line += " "
			}
			line += w
		}
		lines = append(lines, line)
	}
	return lines
}
