package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The processes the kill-and-resume and role tests start (startChild) run
// this package's tests again in a child mode. Under -race they would be
// race-instrumented too: five to ten times the CPU for code whose races
// the in-process tests already look for, and most of the package's time.
// So under -race the children are a test binary built once without it;
// -trimpath keeps its objects independent of the clone's path, so they are
// the ones the deploy tests' build already cached.
var child struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// TestMain removes the children's binary at the end.
func TestMain(m *testing.M) {
	code := m.Run()
	if child.path != "" {
		os.RemoveAll(filepath.Dir(child.path))
	}
	os.Exit(code)
}

// childBinary is the test binary children run: this one, or under -race
// the one built without it.
func childBinary(t *testing.T) string {
	t.Helper()
	if !raceEnabled {
		return os.Args[0]
	}
	child.once.Do(func() {
		dir, err := os.MkdirTemp("", "demandpipe-child")
		if err != nil {
			child.err = err
			return
		}
		child.path = filepath.Join(dir, "demandpipe.test")
		cmd := exec.Command("go", "test", "-c", "-trimpath", "-o", child.path, ".")
		child.out, child.err = cmd.CombinedOutput()
	})
	if child.err != nil {
		t.Fatalf("building the children's test binary: %v\n%s", child.err, child.out)
	}
	return child.path
}
