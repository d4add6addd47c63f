// Package procmem reads this process's memory as the kernel counts it
// (Linux): what `bench` reports and the memory tests bound.
package procmem

import (
	"os"
	"strconv"
	"strings"
)

// PeakRSS is the process's resident high-water mark (VmHWM) in bytes, or
// -1 where /proc/self/status cannot tell. A child started by exec counts
// only its own pages here (its rusage would count its parent's: exec
// follows a vfork that shares them).
func PeakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return -1
}
