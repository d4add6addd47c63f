package doubles

import (
	"os/exec"
	"strings"
	"testing"
)

// TestReleaseBuildLeavesThemOut: the binary built with -tags nodoubles
// (make build, the Dockerfile) links no test server, while a development
// build does (so the test sees the tag at work, not a package renamed).
func TestReleaseBuildLeavesThemOut(t *testing.T) {
	t.Parallel()
	deps := func(tags ...string) string {
		args := append([]string{"list"}, tags...)
		out, err := exec.Command("go", append(args, "-deps", "github.com/demandpipe/demandpipe/cmd/demandpipe")...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		return string(out)
	}
	servers := []string{"/internal/cqltest\n", "/internal/pulsartest\n"}
	release := deps("-tags", "nodoubles")
	for _, s := range servers {
		if strings.Contains(release, s) {
			t.Errorf("the release build (-tags nodoubles) links %s", strings.TrimSpace(s))
		}
	}
	if dev := deps(); !strings.Contains(dev, servers[0]) {
		t.Errorf("the development build no longer links the CQL double: tune's default target is gone")
	}
	if !Included() {
		t.Error("Included() is false in a test build without the tag")
	}
}

// TestStartCQL: the door opens onto a working double.
func TestStartCQL(t *testing.T) {
	t.Parallel()
	s, err := StartCQL(0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Port() <= 0 || s.BytesReceived() != 0 {
		t.Fatalf("port %d, %d bytes received before any client", s.Port(), s.BytesReceived())
	}
}
