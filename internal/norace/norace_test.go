package norace

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(M(m).Run()) }

// TestRunsWithoutRace: under -race, Run runs this test again in a binary
// built without it, where Enabled is false and Run does nothing; without
// -race Run does nothing at once.
func TestRunsWithoutRace(t *testing.T) {
	ran := Run(t)
	if ran != Enabled {
		t.Fatalf("Run returned %v in a binary with race detector %v", ran, Enabled)
	}
	if ran {
		return
	}
	if Enabled {
		t.Fatal("the child has the race detector")
	}
	if Binary(t) != os.Args[0] {
		t.Fatalf("without -race Binary is %q, want this binary %q", Binary(t), os.Args[0])
	}
}

// TestSubtestRunsAlone: a subtest's Run selects that subtest only (its
// name quoted: "b.c" is not a pattern).
func TestSubtestRunsAlone(t *testing.T) {
	for _, name := range []string{"a", "b.c"} {
		t.Run(name, func(t *testing.T) {
			if ran := Run(t); ran != Enabled {
				t.Fatalf("Run returned %v in a binary with race detector %v", ran, Enabled)
			}
		})
	}
}

// TestChildFailureIsTheTests: this binary run on TestFailsWithoutRace
// (which fails only without -race, when asked) fails, saying so.
func TestChildFailureIsTheTests(t *testing.T) {
	if !Enabled {
		t.Skip("without -race Run runs nothing else")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFailsWithoutRace$")
	cmd.Env = append(os.Environ(), "NORACE_TEST_FAIL=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "failing as asked") || !strings.Contains(string(out), "without -race") {
		t.Fatalf("a child's failure: exit %v, output:\n%s", err, out)
	}
}

func TestFailsWithoutRace(t *testing.T) {
	if Run(t) {
		return
	}
	if os.Getenv("NORACE_TEST_FAIL") == "1" {
		t.Fatal("failing as asked")
	}
}
