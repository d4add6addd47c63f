package buildinfo

import (
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
