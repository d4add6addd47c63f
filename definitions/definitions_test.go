package definitions

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRegistry: a run registers its definitions, a second run with more
// names adds them and keeps the active one, a run whose first definition
// differs is refused, promote switches the active definition and a
// watcher sees it at its next call; a bad file keeps the last good answer.
func TestRegistry(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "features")
	if _, err := Promote(dir, "fine"); err == nil || !strings.Contains(err.Error(), "has no definitions file") {
		t.Errorf("promote without a registry: %v", err)
	}
	f, err := Register(dir, []string{"default", "fine"})
	if err != nil || f.Active != "default" || f.StoreDir(dir, "fine") != dir+".fine" || f.StoreDir(dir, "default") != dir {
		t.Fatalf("register: %+v %v", f, err)
	}
	w := NewWatcher(dir, f)
	if f, err = Register(dir, []string{"default", "fine", "wide"}); err != nil || len(f.Definitions) != 3 || f.Active != "default" {
		t.Fatalf("register more: %+v %v", f, err)
	}
	if _, err := Register(dir, []string{"fine"}); err == nil || !strings.Contains(err.Error(), `holds definition "default"'s rows`) {
		t.Errorf("another first definition: %v", err)
	}
	if _, err := Promote(dir, "nope"); err == nil || !strings.Contains(err.Error(), `no definition "nope"`) {
		t.Errorf("promote an unknown name: %v", err)
	}
	if _, err := Promote(dir, "fine"); err != nil {
		t.Fatal(err)
	}
	if got := w.Current(); got.Active != "fine" || len(got.Definitions) != 3 {
		t.Fatalf("watcher after promote: %+v", got)
	}
	var bad error
	w.Err = func(err error) { bad = err }
	if err := os.WriteFile(PathFor(dir), []byte(`{"definitions":["default"],"active":"gone"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := w.Current(); got.Active != "fine" || bad == nil {
		t.Fatalf("a bad file: %+v, told %v", got, bad)
	}
	if matches, _ := filepath.Glob(PathFor(dir) + ".tmp*"); len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}
