// Package h3batch locates many points with one cgo call.
//
// h3-go's LatLngToCell costs one cgo transition and one or two heap
// allocations per point (its out-parameter escapes to the heap). The engine
// locates hundreds of thousands of points a second, so this package calls
// the same C function, latLngToCell from the H3 library that h3-go compiles
// into the binary, in a loop on the C side: one transition per batch, no
// allocation. Coordinates are converted to radians in Go with h3-go's own
// constant, so the cells are identical to h3.LatLngToCell's (pinned by a
// test over random points).
package h3batch

/*
#include <stdint.h>
typedef struct { double lat; double lng; } dpLatLng;
// Declared here, defined by the H3 C library inside github.com/uber/h3-go/v4.
extern uint32_t latLngToCell(const dpLatLng *g, int res, uint64_t *out);
extern uint32_t gridDiskDistances(uint64_t origin, int k, uint64_t *out, int *distances);

static int dp_cells(const double *rad, int n, int res, uint64_t *out) {
	int errs = 0;
	for (int i = 0; i < n; i++) {
		dpLatLng g = { rad[2*i], rad[2*i+1] };
		if (latLngToCell(&g, res, &out[i]) != 0) {
			out[i] = 0;
			errs++;
		}
	}
	return errs;
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/feature"
)

// Locator converts points to cells; it keeps scratch space, so use one per
// goroutine.
type Locator struct {
	rad []float64
}

// Cells appends the cell of every (lat[i], lng[i]) in degrees to out, and
// returns how many failed (their cell is 0).
func (l *Locator) Cells(lat, lng []float64, res int, out []uint64) ([]uint64, int) {
	n := len(lat)
	if n == 0 {
		return out, 0
	}
	l.rad = l.rad[:0]
	for i := range n {
		l.rad = append(l.rad, h3.DegsToRads*lat[i], h3.DegsToRads*lng[i])
	}
	start := len(out)
	out = append(out, make([]uint64, n)...)[:start+n]
	errs := C.dp_cells((*C.double)(unsafe.Pointer(&l.rad[0])), C.int(n), C.int(res), (*C.uint64_t)(unsafe.Pointer(&out[start])))
	return out, int(errs)
}

// Disk appends the cells within grid distance k of origin and their
// distances (h3's gridDiskDistances, into caller-owned buffers: no per-ring
// slices). Slots that H3 leaves empty next to pentagons are dropped.
func Disk(origin uint64, k int, cells []uint64, dists []int32) ([]uint64, []int32, error) {
	n := feature.DiskCells(k)
	start := len(cells)
	cells = append(cells, make([]uint64, n)...)
	dists = append(dists, make([]int32, n)...)
	if e := C.gridDiskDistances(C.uint64_t(origin), C.int(k), (*C.uint64_t)(unsafe.Pointer(&cells[start])), (*C.int)(unsafe.Pointer(&dists[start]))); e != 0 {
		return cells[:start], dists[:start], fmt.Errorf("h3 gridDiskDistances(%x, %d): error %d", origin, k, int(e))
	}
	j := start
	for i := start; i < start+n; i++ {
		if cells[i] != 0 {
			cells[j], dists[j] = cells[i], dists[i]
			j++
		}
	}
	return cells[:j], dists[:j], nil
}
