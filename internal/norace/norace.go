// Package norace runs a test's heavy data in a test binary built without
// the race detector.
//
// Under -race the engine costs six to nine times the CPU it costs without
// it (measured here: TestCellIndexFollowsTheInput 16.6 s of CPU against
// 2.9 s, TestMemoryBudgetHolds 9.6 s against 1.9 s), and the suite has to
// fit 5 minutes on 2 cores. The race detector finds races in code that
// runs, not in data volume: each package keeps tests of every concurrent
// path under -race, on small inputs, and the tests that are about what
// large or many inputs produce (a row-for-row equality over a city, a
// memory bound, a kill at every point) call Run first, so that under
// -race they run again, alone, in this package's test binary built once
// without it. Without -race Run does nothing and the test runs as is.
package norace

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Enabled says whether this binary was built with -race.
const Enabled = raceEnabled

var child struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// M is a TestMain's m that removes the binary Run built once the tests
// are done: goleak.VerifyTestMain(norace.M(m)), or os.Exit(norace.M(m).Run()).
func M(m *testing.M) interface{ Run() int } { return runner{m} }

type runner struct{ m *testing.M }

func (r runner) Run() int {
	code := r.m.Run()
	if child.dir != "" {
		os.RemoveAll(child.dir)
	}
	return code
}

// Binary is the package's test binary without -race: this one without
// -race, else one built at the first call (-trimpath: its objects are the
// ones the deploy tests' build already cached; go's cache keeps the
// binary too). Tests that start processes of their own test binary use it.
func Binary(t *testing.T) string {
	t.Helper()
	if !Enabled {
		return os.Args[0]
	}
	child.once.Do(func() {
		if child.dir, child.err = os.MkdirTemp("", "demandpipe-norace"); child.err != nil {
			return
		}
		child.path = filepath.Join(child.dir, "pkg.test")
		cmd := exec.Command("go", "test", "-c", "-trimpath", "-o", child.path, ".")
		child.out, child.err = cmd.CombinedOutput()
	})
	if child.err != nil {
		t.Fatalf("norace: building the package's test binary without -race: %v\n%s", child.err, child.out)
	}
	return child.path
}

// Run runs t again in the package's test binary built without -race when
// this one has it, and reports whether it did: the caller then returns.
// The child's output is logged (go test -v shows it); its failure or skip
// is t's. Call it first in the test (after t.Parallel).
func Run(t *testing.T) bool {
	t.Helper()
	if !Enabled {
		return false
	}
	bin := Binary(t)
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	args := []string{"-test.run", strings.Join(parts, "/"), "-test.v", "-test.count=1"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-5*time.Second))
		defer cancel()
		args = append(args, "-test.timeout", time.Until(d).Round(time.Second).String())
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	text := string(out)
	switch {
	case err != nil:
		t.Fatalf("norace: %s without -race: %v after %v\n%s", t.Name(), err, time.Since(start).Round(time.Millisecond), text)
	case strings.Contains(text, "--- SKIP: "+t.Name()+" "):
		t.Skipf("norace: skipped without -race:\n%s", text)
	case !strings.Contains(text, "--- PASS: "+t.Name()+" "):
		t.Fatalf("norace: %s did not run without -race (pattern %q):\n%s", t.Name(), args[1], text)
	}
	t.Logf("norace: ran without -race in %v:\n%s", time.Since(start).Round(time.Millisecond), text)
	return true
}
