package main

import (
	"os"
	"testing"

	"github.com/demandpipe/demandpipe/internal/norace"
)

// TestMain removes the binary norace built. The processes the
// kill-and-resume and role tests start (startChild) run this package's
// tests again in a child mode, in the test binary without -race
// (norace.Binary): under -race they would be race-instrumented too, five
// to ten times the CPU for code whose races the in-process tests already
// look for.
func TestMain(m *testing.M) { os.Exit(norace.M(m).Run()) }
