package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A named path a command reads or writes, for checkOutputs.
type namedPath struct {
	flag string // how the user gave it, e.g. "-sink=ndjson:rows.ndjson"
	path string
}

// filePath returns the local path of a "file:PATH" or "ndjson:PATH" spec, or
// "" when the spec names no file (stdin/stdout "-", another scheme).
func filePath(spec, scheme string) string {
	p, ok := strings.CutPrefix(spec, scheme+":")
	if !ok || p == "" || p == "-" {
		return ""
	}
	return p
}

// checkOutputs refuses, before anything is opened for writing, an output
// that is one of the inputs or another output: os.Create would truncate
// the input while it is read (`run -source=file:X -sink=ndjson:X` used to
// leave X empty), or two writers would interleave in one file. Paths are
// compared as files (os.SameFile: links and other spellings of one file)
// when both exist, else as cleaned absolute paths.
func checkOutputs(inputs, outputs []namedPath) error {
	seen := append([]namedPath(nil), inputs...)
	for _, out := range outputs {
		if out.path == "" {
			continue
		}
		for _, other := range seen {
			if other.path != "" && samePath(out.path, other.path) {
				return fmt.Errorf("%s and %s name the same file (%s): writing it would destroy what is read or written there; choose another output path", other.flag, out.flag, out.path)
			}
		}
		seen = append(seen, out)
	}
	return nil
}

func samePath(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	if errA != nil && !errors.Is(errA, fs.ErrNotExist) || errB != nil && !errors.Is(errB, fs.ErrNotExist) {
		return false // not readable here: opening it reports the error
	}
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	return errA == nil && errB == nil && absA == absB
}
