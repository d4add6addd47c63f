package gen

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/demandpipe/demandpipe/encode"
)

// Pickup is one row of the NYC TLC pickup sample in ../shared/data
// (columns Date/Time,Lat,Lon,Base).
type Pickup struct {
	TS       int64 // unix ms: the minute's start plus a deterministic spread
	Lat, Lng float64
	Base     string // dispatching base, e.g. B02512: stands in for a product
}

// ReadPickupsFile reads the pickups CSV at path (see ReadPickups); a missing
// file is an error matching fs.ErrNotExist.
func ReadPickupsFile(path string) ([]Pickup, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadPickups(f)
}

// ReadPickups parses the CSV (plain or gzip), sorted by time (stable).
// Times are local New York time with minute resolution, in two spellings
// ("04-02-14 0:05" and "4/13/2014 0:01:00"); they are taken as UTC, and each
// pickup is spread inside its minute by its row number, so that arrival
// order is time order with realistic seconds.
func ReadPickups(r io.Reader) ([]Pickup, error) {
	br := bufio.NewReader(r)
	if head, _ := br.Peek(2); bytes.Equal(head, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		br = bufio.NewReader(zr)
	}
	sc := bufio.NewScanner(br)
	var out []Pickup
	row := 0
	for sc.Scan() {
		row++
		line := sc.Text()
		if row == 1 && strings.HasPrefix(line, "Date/Time") {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) != 4 {
			return nil, fmt.Errorf("pickups line %d: %d columns, want 4", row, len(f))
		}
		t, err := parsePickupTime(strings.Trim(f[0], `"`))
		if err != nil {
			return nil, fmt.Errorf("pickups line %d: %v", row, err)
		}
		lat, err1 := strconv.ParseFloat(f[1], 64)
		lng, err2 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("pickups line %d: bad coordinates %q,%q", row, f[1], f[2])
		}
		out = append(out, Pickup{TS: t.UnixMilli() + int64(row*7919%60000), Lat: lat, Lng: lng, Base: strings.Trim(f[3], `"`)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b Pickup) int { return int(a.TS - b.TS) })
	return out, nil
}

func parsePickupTime(s string) (time.Time, error) {
	for _, layout := range []string{"01-02-06 15:04", "1/2/2006 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q in neither pickup format", s)
}

// BaseProduct maps a base name to a product UUID: the base's hex digits
// (B02512 -> b0251200-…) when it has 6 of them, so the mapping can be read.
func BaseProduct(base string) encode.UUID {
	s := strings.ToLower(base)
	var u encode.UUID
	if len(s) == 6 {
		if p, ok := encode.ParseUUID([]byte(s + "00-0000-4000-8000-000000000000")); ok {
			return p
		}
	}
	for i := range len(s) {
		u[i%16] ^= s[i]
	}
	return u
}

// AppendPickupEvent appends pickup i as one event line (rider nyc-<i>).
func AppendPickupEvent(dst []byte, i int, p Pickup) []byte {
	dst = append(dst, `{"ts":`...)
	dst = strconv.AppendInt(dst, p.TS, 10)
	dst = append(dst, `,"rider_id":"nyc-`...)
	dst = strconv.AppendInt(dst, int64(i), 10)
	dst = append(dst, `","lat":`...)
	dst = strconv.AppendFloat(dst, p.Lat, 'f', -1, 64)
	dst = append(dst, `,"lng":`...)
	dst = strconv.AppendFloat(dst, p.Lng, 'f', -1, 64)
	dst = append(dst, `,"product_type":"`...)
	dst = BaseProduct(p.Base).AppendText(dst)
	dst = append(dst, `","source":"nyc-tlc-2014","base":"`...)
	dst = append(dst, p.Base...)
	return append(dst, "\"}\n"...)
}

// AppendPickupWindow appends, as event lines, the pickups with a time in
// [from, to) (unix ms), the way the tests replay real geography: arrival
// jittered by up to 4 s (pickup i is i%5 s early) and riders paired (two
// consecutive pickups share a rider, so some events are duplicates). It
// returns the lines and how many there are.
func AppendPickupWindow(dst []byte, ps []Pickup, from, to int64) ([]byte, int) {
	n := 0
	for i, p := range ps {
		if p.TS >= from && p.TS < to {
			p.TS -= int64(i % 5 * 1000)
			dst = AppendPickupEvent(dst, n/2, p)
			n++
		}
	}
	return dst, n
}
