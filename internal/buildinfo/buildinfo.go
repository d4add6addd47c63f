// Package buildinfo says which build of demandpipe is running: the main
// module's version, the VCS revision and the Go version, as the Go
// toolchain stamped them into the binary (runtime/debug.ReadBuildInfo).
// `demandpipe version` prints them and every registry exports them as
//
//	demandpipe_build_info{version,revision,goversion} 1
//
// A binary built outside a VCS checkout, or a test binary, has no
// revision: "unknown" stands in for any value the toolchain left empty.
// The release build (`make build`, Makefile) stamps the version (git
// describe), the commit and the build date with -ldflags -X into stamped*,
// which take precedence: a binary built from a source archive, with no
// VCS at hand, still says what it is.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/internal/metrics"
)

// Unknown stands for a value the build did not record.
const Unknown = "unknown"

// Info describes one build.
type Info struct {
	Version   string // main module version: a tag, a pseudo-version, or "(devel)"
	Revision  string // vcs.revision (the commit), Unknown without VCS stamping
	Modified  bool   // vcs.modified: built from a tree with uncommitted changes
	Time      string // vcs.time (RFC 3339 commit time), "" when not stamped
	GoVersion string // the Go toolchain that built the binary
}

// Set by the release build: go build -ldflags "-X
// github.com/demandpipe/demandpipe/internal/buildinfo.stampedVersion=…"
// (Makefile, target build).
var stampedVersion, stampedCommit, stampedDate string

// Get reads the running binary's build information.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	i := Info{Version: Unknown, Revision: Unknown, GoVersion: runtime.Version()}
	if ok {
		i = fromBuildInfo(bi)
	}
	return i.stamped(stampedVersion, stampedCommit, stampedDate)
}

// stamped overrides i with the release build's values, those it was given.
func (i Info) stamped(version, commit, date string) Info {
	if version != "" {
		i.Version = version
	}
	if commit != "" {
		i.Revision, i.Modified = commit, strings.HasSuffix(version, "-dirty")
	}
	if date != "" {
		i.Time = date
	}
	return i
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	i := Info{Version: bi.Main.Version, Revision: Unknown, GoVersion: bi.GoVersion}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		case "vcs.time":
			i.Time = s.Value
		}
	}
	if i.Version == "" {
		i.Version = Unknown
	}
	if i.Revision == "" {
		i.Revision = Unknown
	}
	if i.GoVersion == "" {
		i.GoVersion = runtime.Version()
	}
	return i
}

// String is the line `demandpipe version` prints, e.g.
// "demandpipe v0.0.0-20261124101500-2842f7f0a1b2 commit 2842f7f0a1b2… (modified) go1.26.0".
func (i Info) String() string {
	rev := i.Revision
	if i.Modified {
		rev += " (modified)"
	}
	if i.Time != "" {
		rev += " " + i.Time
	}
	return fmt.Sprintf("demandpipe %s commit %s %s", i.Version, rev, i.GoVersion)
}

// Collector is the demandpipe_build_info gauge: always 1, the build in its
// labels (three fixed values per process, so bounded).
func (i Info) Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: metrics.Namespace, Name: "build_info",
		Help:        "Always 1; the labels name the running build: module version, VCS revision and Go version.",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": i.Revision, "goversion": i.GoVersion},
	})
	g.Set(1)
	return g
}

// Register registers the running binary's demandpipe_build_info with reg
// (metrics.Register; nil registers nothing).
func Register(reg prometheus.Registerer) error {
	return metrics.Register(reg, Get().Collector())
}
