package job

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Path is a named path a command reads or writes, for CheckOutputs.
type Path struct {
	Flag string // how the user gave it, e.g. "-sink=ndjson:rows.ndjson"
	Path string
}

// FilePath returns the local path of a "file:PATH" or "ndjson:PATH" spec, or
// "" when the spec names no file (stdin/stdout "-", another scheme).
func FilePath(spec, scheme string) string {
	p, ok := strings.CutPrefix(spec, scheme+":")
	if !ok || p == "" || p == "-" {
		return ""
	}
	return p
}

// CheckOutputs refuses, before anything is opened for writing, an output
// that is one of the inputs or another output: os.Create would truncate
// the input while it is read (`run -source=file:X -sink=ndjson:X` used to
// leave X empty), or two writers would interleave in one file. Paths are
// compared as files (os.SameFile: links and other spellings of one file)
// when both exist, else as cleaned absolute paths.
func CheckOutputs(inputs, outputs []Path) error {
	seen := append([]Path(nil), inputs...)
	for _, out := range outputs {
		if out.Path == "" {
			continue
		}
		for _, other := range seen {
			if other.Path != "" && samePath(out.Path, other.Path) {
				return fmt.Errorf("%s and %s name the same file (%s): writing it would destroy what is read or written there; choose another output path", other.Flag, out.Flag, out.Path)
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
