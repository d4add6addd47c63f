package main

import (
	"fmt"
	"io"
	"os"

	"github.com/demandpipe/demandpipe/internal/buildinfo"
)

// versionCommand implements `demandpipe version` (and --version): the
// module version, the commit and the Go version, on stdout. The same three
// are exported as demandpipe_build_info.
func versionCommand(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("version takes no arguments, got %q", args)
	}
	return writeVersion(os.Stdout)
}

func writeVersion(w io.Writer) error {
	_, err := fmt.Fprintln(w, buildinfo.Get())
	return err
}
