package feature

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"

	"gopkg.in/yaml.v3"
)

// Named is a definition with the name users, sinks and the API know it by
// (issue 23): a pricing team changes rings, windows or resolution by
// adding a definition under a new name, not by changing one in place.
type Named struct {
	Name string
	Definition
}

// DefaultName names the one definition the flags -h3.resolution,
// -kring.rings and -windows.minutes describe.
const DefaultName = "default"

// MaxDefinitions bounds a definitions file: each definition holds its own
// windows, so each costs about as much close state as the first.
const MaxDefinitions = 8

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// ValidateName reports whether name can name a definition: a lower-case
// letter, then up to 31 lower-case letters, digits or underscores (it
// becomes part of file names and of Cassandra table names).
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("definition name %q: want a lower-case letter, then up to 31 lower-case letters, digits or _", name)
	}
	return nil
}

// Validate checks the name and the definition.
func (n Named) Validate() error {
	if err := ValidateName(n.Name); err != nil {
		return err
	}
	if err := n.Definition.Validate(); err != nil {
		return fmt.Errorf("definition %s: %w", n.Name, err)
	}
	return nil
}

// String is "name: res=… K=… W=…".
func (n Named) String() string { return n.Name + ": " + n.Definition.String() }

// ValidateSet checks a list of definitions: at least one, at most
// MaxDefinitions, each valid, names unique.
func ValidateSet(defs []Named) error {
	if len(defs) == 0 {
		return errors.New("definitions: none given")
	}
	if len(defs) > MaxDefinitions {
		return fmt.Errorf("definitions: %d given, at most %d (each holds windows of its own)", len(defs), MaxDefinitions)
	}
	for i, d := range defs {
		if err := d.Validate(); err != nil {
			return err
		}
		for _, e := range defs[:i] {
			if e.Name == d.Name {
				return fmt.Errorf("definitions: name %q given twice", d.Name)
			}
		}
	}
	return nil
}

// fileDef is one entry of a definitions file.
type fileDef struct {
	Name       string `yaml:"name"`
	Resolution *int   `yaml:"resolution"`
	Rings      []int  `yaml:"rings"`
	Windows    []int  `yaml:"windows"`
	Aggregate  string `yaml:"aggregate"`
}

// ParseDefinitions reads a definitions file: a YAML list whose entries
// have name, resolution, rings and windows (all required; an unknown key
// is refused, so a misspelled one is not silently the default) and may
// name an aggregate (default count):
//
//   - name: default
//     resolution: 8
//     rings: [0, 1, 2, 3, 4, 5, 10, 15, 20]
//     windows: [1, 2, 4, 8, 16, 32]
//   - name: fine
//     resolution: 9
//     rings: [0, 2, 7]
//     windows: [3, 5, 1]
//   - name: peak
//     resolution: 8
//     rings: [0, 1, 2]
//     windows: [4, 16]
//     aggregate: max
//
// The first is the run's default definition.
func ParseDefinitions(r io.Reader) ([]Named, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var list []fileDef
	if err := dec.Decode(&list); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("definitions: the file is empty")
		}
		return nil, fmt.Errorf("definitions: %w (want a YAML list of {name, resolution, rings, windows})", err)
	}
	defs := make([]Named, 0, len(list))
	for i, f := range list {
		switch {
		case f.Name == "":
			return nil, fmt.Errorf("definitions: entry %d has no name", i+1)
		case f.Resolution == nil:
			return nil, fmt.Errorf("definitions: %s has no resolution", f.Name)
		case f.Rings == nil:
			return nil, fmt.Errorf("definitions: %s has no rings", f.Name)
		case f.Windows == nil:
			return nil, fmt.Errorf("definitions: %s has no windows", f.Name)
		}
		defs = append(defs, Named{Name: f.Name, Definition: Definition{Resolution: *f.Resolution, Rings: f.Rings, Windows: f.Windows, Aggregate: f.Aggregate}})
	}
	if err := ValidateSet(defs); err != nil {
		return nil, err
	}
	return defs, nil
}
