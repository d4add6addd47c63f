package naive

import (
	"os"
	"testing"

	"github.com/demandpipe/demandpipe/internal/norace"
)

// TestMain removes the binary norace.Run built (internal/norace).
func TestMain(m *testing.M) { os.Exit(norace.M(m).Run()) }
