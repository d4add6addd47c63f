// Package definitions keeps which feature definitions a store holds and
// which one the API answers by default (the active one): a small JSON file
// beside the store directory, DIR.definitions.json, that `run
// -definitions=FILE` writes, `demandpipe definitions promote` rewrites and
// `serve` reads at every request.
//
// The first definition's rows are in DIR itself (so a store written before
// definitions existed, or by a run of one definition, reads as before),
// each other's in DIR.NAME. The file is replaced atomically (a temporary
// file renamed over it), so a reader sees the old file or the new, never a
// mix: a promotion switches readers at their next request.
package definitions

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/demandpipe/demandpipe/feature"
)

// File is the registry's content.
type File struct {
	// Definitions are the names of the definitions the store holds, the
	// first in DIR itself, each other in DIR.NAME.
	Definitions []string `json:"definitions"`
	// Active is the definition the API answers when a request names none.
	Active string `json:"active"`
	// Promoted is when Active was last set (RFC 3339), for people.
	Promoted string `json:"promoted,omitempty"`
}

// Validate checks the names and that Active is one of them.
func (f File) Validate() error {
	if len(f.Definitions) == 0 {
		return errors.New("definitions file: no definition")
	}
	for i, n := range f.Definitions {
		if err := feature.ValidateName(n); err != nil {
			return fmt.Errorf("definitions file: %w", err)
		}
		if slices.Contains(f.Definitions[:i], n) {
			return fmt.Errorf("definitions file: %q listed twice", n)
		}
	}
	if !slices.Contains(f.Definitions, f.Active) {
		return fmt.Errorf("definitions file: the active definition %q is not one of %v", f.Active, f.Definitions)
	}
	return nil
}

// PathFor is the registry file of the store in dir.
func PathFor(dir string) string { return filepath.Clean(dir) + ".definitions.json" }

// StoreDir is where definition name's rows are: dir for the first, dir.NAME
// for the others.
func (f File) StoreDir(dir, name string) string {
	if len(f.Definitions) > 0 && f.Definitions[0] == name {
		return dir
	}
	return filepath.Clean(dir) + "." + name
}

// Load reads the registry of the store in dir; an error wrapping
// os.ErrNotExist means the store has none (one definition, in dir).
func Load(dir string) (File, error) {
	b, err := os.ReadFile(PathFor(dir))
	if err != nil {
		return File{}, err
	}
	f, err := Parse(b)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", PathFor(dir), err)
	}
	return f, nil
}

// Parse decodes and checks a registry (the file's bytes, or Cassandra's
// record of it).
func Parse(b []byte) (File, error) {
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return File{}, err
	}
	return f, f.Validate()
}

// Marshal encodes a checked registry.
func (f File) Marshal() ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	return append(b, '\n'), err
}

// With is f once a run writing names (the first in the store itself) has
// registered them: a new registry (f empty) makes the first active; an
// existing one keeps its active definition and gains the names it lacks.
// A first name other than the registry's is refused: the store holds that
// definition's rows. changed says whether f must be written again.
func (f File) With(where string, names []string) (out File, changed bool, err error) {
	if len(f.Definitions) == 0 {
		return File{Definitions: slices.Clone(names), Active: names[0], Promoted: time.Now().UTC().Format(time.RFC3339)}, true, nil
	}
	if f.Definitions[0] != names[0] {
		return File{}, false, fmt.Errorf("%s holds definition %q's rows, not %q's: put %q first in the definitions file, or use another store", where, f.Definitions[0], names[0], f.Definitions[0])
	}
	f.Definitions = slices.Clone(f.Definitions)
	for _, n := range names {
		if !slices.Contains(f.Definitions, n) {
			f.Definitions, changed = append(f.Definitions, n), true
		}
	}
	return f, changed, nil
}

// Promote is f with name active.
func (f File) Promote(where, name string) (File, error) {
	if !slices.Contains(f.Definitions, name) {
		return File{}, fmt.Errorf("%s holds no definition %q (it holds %v)", where, name, f.Definitions)
	}
	f.Active, f.Promoted = name, time.Now().UTC().Format(time.RFC3339)
	return f, nil
}

// Save replaces the registry of the store in dir atomically: written to a
// temporary file, synced, renamed over the old one, the directory synced.
func Save(dir string, f File) error {
	b, err := f.Marshal()
	if err != nil {
		return err
	}
	path := PathFor(dir)
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // the rename durable; a failure here leaves it in the page cache only
		d.Close()
	}
	return nil
}

// Register records that a run writes names (the first in dir) into the
// store in dir (File.With).
func Register(dir string, names []string) (File, error) {
	f, err := Load(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return File{}, err
	}
	f, changed, err := f.With(dir, names)
	if err != nil || !changed {
		return f, err
	}
	return f, Save(dir, f)
}

// Promote makes name the active definition of the store in dir.
func Promote(dir, name string) (File, error) {
	f, err := Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return File{}, fmt.Errorf("%s has no definitions file: it holds one definition (run -definitions=FILE writes %s)", dir, PathFor(dir))
	}
	if err != nil {
		return File{}, err
	}
	if f, err = f.Promote(dir, name); err != nil {
		return File{}, err
	}
	return f, Save(dir, f)
}

// Watcher answers the active definition of a store, re-reading the file
// when it changed (one stat per call, about a microsecond), so that a
// promotion reaches every reader at its next request. A file that cannot
// be read or does not check out keeps the last good answer.
type Watcher struct {
	dir string
	mu  sync.Mutex
	st  os.FileInfo
	cur File
	Err func(error) // told of a bad file, once per version; nil: ignored
}

// NewWatcher starts from f, the registry just loaded.
func NewWatcher(dir string, f File) *Watcher {
	w := &Watcher{dir: dir, cur: f}
	w.st, _ = os.Stat(PathFor(dir))
	return w
}

// Current is the registry as of now.
func (w *Watcher) Current() File {
	w.mu.Lock()
	defer w.mu.Unlock()
	st, err := os.Stat(PathFor(w.dir))
	if err != nil || w.st != nil && os.SameFile(st, w.st) && st.ModTime().Equal(w.st.ModTime()) && st.Size() == w.st.Size() {
		return w.cur
	}
	w.st = st
	f, err := Load(w.dir)
	if err != nil {
		if w.Err != nil {
			w.Err(err)
		}
		return w.cur
	}
	w.cur = f
	return f
}
