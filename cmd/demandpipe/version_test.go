package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := writeVersion(&b); err != nil {
		t.Fatal(err)
	}
	// A test binary carries no VCS stamp: the line still names all three.
	s := b.String()
	if !strings.HasPrefix(s, "demandpipe ") || !strings.Contains(s, " commit ") || !strings.HasSuffix(s, runtime.Version()+"\n") {
		t.Fatalf("version line %q", s)
	}
	if err := versionCommand([]string{"extra"}); err == nil {
		t.Fatal("version with an argument: no error")
	}
}
