package procmem

import (
	"runtime"
	"testing"
)

func TestPeakRSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("VmHWM is Linux's")
	}
	before := PeakRSS()
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = 1 // touch every page
	}
	after := PeakRSS()
	runtime.KeepAlive(b)
	if before <= 0 || after < before+60<<20 {
		t.Fatalf("peak RSS %d before and %d after touching 64 MiB", before, after)
	}
}
