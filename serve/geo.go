package serve

import (
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/feature"
)

// geo answers the H3 questions of the API for one definition: is a cell
// valid at the definition's resolution, which cell holds a point, how many
// cells a disk holds (for avg=true), and a cell's boundary (the map).
type geo struct {
	def   feature.Definition
	res   int
	rings []int
	maxK  int
	// pentagons at res and how close (km) a cell's centre must be to one
	// for its disks to be distorted; elsewhere a disk of radius k holds
	// 3k(k+1)+1 cells and no H3 call is needed.
	pentagons []h3.LatLng
	nearKm    float64

	bmu    sync.Mutex
	bcache map[uint64][]byte
	bmax   int
}

func newGeo(def feature.Definition, boundaryCache int) (*geo, error) {
	g := &geo{def: def, res: def.Resolution, rings: def.Rings, maxK: def.MaxRingValue(), bmax: boundaryCache}
	if boundaryCache > 0 {
		g.bcache = make(map[uint64][]byte)
	}
	ps, err := h3.Pentagons(g.res)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		ll, err := p.LatLng()
		if err != nil {
			return nil, err
		}
		g.pentagons = append(g.pentagons, ll)
	}
	edge, err := h3.HexagonEdgeLengthAvgKm(g.res)
	if err != nil {
		return nil, err
	}
	// A disk of radius k spans ~2k edge lengths (centre to centre ~1.73
	// edges per ring); double it for the distortion near a pentagon.
	g.nearKm = 4 * float64(g.maxK+1) * edge
	return g, nil
}

// parseCell parses a cell's hex form and checks it is a valid cell of the
// definition's resolution.
func (g *geo) parseCell(s []byte) (uint64, error) {
	if len(s) == 0 || len(s) > 16 {
		return 0, fmt.Errorf("h3 %q: want a cell's 15-16 hex digits, e.g. 882a100d65fffff", s)
	}
	var c uint64
	for _, b := range s {
		var d byte
		switch {
		case b >= '0' && b <= '9':
			d = b - '0'
		case b >= 'a' && b <= 'f':
			d = b - 'a' + 10
		case b >= 'A' && b <= 'F':
			d = b - 'A' + 10
		default:
			return 0, fmt.Errorf("h3 %q: not hexadecimal", s)
		}
		c = c<<4 | uint64(d)
	}
	hc := h3.Cell(c)
	if !hc.IsValid() {
		return 0, fmt.Errorf("h3 %q: not a valid H3 cell", s)
	}
	if r := hc.Resolution(); r != g.res {
		return 0, fmt.Errorf("h3 %q: resolution %d, the store holds resolution %d", s, r, g.res)
	}
	return c, nil
}

// cellAt is the cell of the definition's resolution holding (lat, lng).
func (g *geo) cellAt(lat, lng float64) (uint64, error) {
	if math.IsNaN(lat) || lat < -90 || lat > 90 {
		return 0, fmt.Errorf("lat %v: must be in -90..90", lat)
	}
	if math.IsNaN(lng) || lng < -180 || lng > 180 {
		return 0, fmt.Errorf("lng %v: must be in -180..180", lng)
	}
	c, err := h3.LatLngToCell(h3.NewLatLng(lat, lng), g.res)
	if err != nil {
		return 0, fmt.Errorf("lat,lng %v,%v: %v", lat, lng, err)
	}
	return uint64(c), nil
}

// diskSizes writes into dst[i] the number of cells of the disk of radius
// def.Rings[i] around cell: the avg=true divisors.
func (g *geo) diskSizes(dst []int, cell uint64) []int {
	dst = dst[:0]
	for _, k := range g.rings {
		dst = append(dst, feature.DiskCells(k))
	}
	ll, err := h3.Cell(cell).LatLng()
	if err != nil {
		return dst
	}
	near := false
	for _, p := range g.pentagons {
		if h3.GreatCircleDistanceKm(ll, p) < g.nearKm {
			near = true
			break
		}
	}
	if !near {
		return dst
	}
	// Near a pentagon: count the disk's real cells by distance.
	rings, err := h3.GridDiskDistances(h3.Cell(cell), g.maxK)
	if err != nil {
		return dst
	}
	for i, k := range g.rings {
		n := 0
		for d := 0; d <= k && d < len(rings); d++ {
			for _, c := range rings[d] {
				if c != 0 { // unfilled slots (a pentagon's missing cells) read as distance 0
					n++
				}
			}
		}
		dst[i] = n
	}
	return dst
}

// appendBoundary appends a cell's boundary as a JSON array of [lat,lng]
// pairs (5 decimals, ~1 m), from the cache when possible.
func (g *geo) appendBoundary(dst []byte, cell uint64) []byte {
	if g.bcache != nil {
		g.bmu.Lock()
		b, ok := g.bcache[cell]
		g.bmu.Unlock()
		if ok {
			return append(dst, b...)
		}
	}
	start := len(dst)
	dst = append(dst, '[')
	bd, err := h3.Cell(cell).Boundary()
	if err == nil {
		for i, v := range bd {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '[')
			dst = strconv.AppendFloat(dst, v.Lat, 'f', 5, 64)
			dst = append(dst, ',')
			dst = strconv.AppendFloat(dst, v.Lng, 'f', 5, 64)
			dst = append(dst, ']')
		}
	}
	dst = append(dst, ']')
	if g.bcache != nil {
		g.bmu.Lock()
		if len(g.bcache) >= g.bmax {
			clear(g.bcache) // crude but bounded: the hot set refills in one refresh
		}
		g.bcache[cell] = append([]byte(nil), dst[start:]...)
		g.bmu.Unlock()
	}
	return dst
}
