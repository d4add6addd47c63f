package buildinfo

import (
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/demandpipe/demandpipe", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "2842f7f0a1b2c3d4"},
			{Key: "vcs.time", Value: "2026-11-24T10:15:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	got := fromBuildInfo(bi)
	want := Info{Version: "v1.2.3", Revision: "2842f7f0a1b2c3d4", Modified: true, Time: "2026-11-24T10:15:00Z", GoVersion: "go1.26.0"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if s := got.String(); s != "demandpipe v1.2.3 commit 2842f7f0a1b2c3d4 (modified) 2026-11-24T10:15:00Z go1.26.0" {
		t.Fatalf("String() = %q", s)
	}
}

func TestFromBuildInfoEmpty(t *testing.T) {
	got := fromBuildInfo(&debug.BuildInfo{})
	if got.Version != Unknown || got.Revision != Unknown || got.GoVersion != runtime.Version() || got.Modified {
		t.Fatalf("got %+v", got)
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	i := Info{Version: "v1.2.3", Revision: "abc", GoVersion: "go1.26.0"}
	reg.MustRegister(i.Collector())
	want := `# HELP demandpipe_build_info Always 1; the labels name the running build: module version, VCS revision and Go version.
# TYPE demandpipe_build_info gauge
demandpipe_build_info{goversion="go1.26.0",revision="abc",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if err := Register(nil); err != nil {
		t.Fatal(err)
	}
	reg2 := prometheus.NewRegistry()
	if err := Register(reg2); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg2, "demandpipe_build_info"); err != nil || n != 1 {
		t.Fatalf("Register: %d series, %v", n, err)
	}
}

// TestStamped: the release build's -ldflags values win over what the
// toolchain recorded (a source archive has no VCS), each on its own.
func TestStamped(t *testing.T) {
	base := Info{Version: "(devel)", Revision: Unknown, GoVersion: "go1.26.0"}
	got := base.stamped("v0.9.0-12-g2842f7f-dirty", "2842f7f0a1b2c3d4", "2026-12-06T23:00:00Z")
	if s := got.String(); s != "demandpipe v0.9.0-12-g2842f7f-dirty commit 2842f7f0a1b2c3d4 (modified) 2026-12-06T23:00:00Z go1.26.0" {
		t.Fatalf("String() = %q", s)
	}
	if got := base.stamped("", "", ""); got != base {
		t.Fatalf("nothing stamped changed %+v", got)
	}
}

// TestMakefileStampsThese: the release build's -X flags name variables
// that exist here (the linker ignores a misspelled one silently).
func TestMakefileStampsThese(t *testing.T) {
	b, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"stampedVersion", "stampedCommit", "stampedDate"} {
		if !strings.Contains(string(b), "internal/buildinfo."+v+"=") {
			t.Errorf("the Makefile does not stamp %s", v)
		}
	}
	if strings.Count(string(b), "-X ") != 3 {
		t.Errorf("the Makefile stamps %d variables, this package has 3", strings.Count(string(b), "-X "))
	}
}
