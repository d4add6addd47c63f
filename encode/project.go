package encode

import (
	"encoding/binary"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxTS is the largest accepted ts (9999-12-31T23:59:59.999Z), so every minute
// has an RFC 3339 name. Negative timestamps are rejected too.
const MaxTS = 253402300799999

// MaxRiderIDBytes bounds a rider id: dedup keeps the ids of open minutes, so
// their size is part of the state bound.
const MaxRiderIDBytes = 256

// maxDepth bounds the nesting of ignored values (the scanner recurses).
const maxDepth = 512

// Event is a projected event: the five fields the pipeline uses.
type Event struct {
	TS      int64 // unix milliseconds
	Lat     float64
	Lng     float64
	Product UUID
	// Rider is the decoded rider_id. It aliases the input line, or the
	// Projector's scratch buffer when the id had escapes; valid until the
	// next call to Project.
	Rider []byte
}

// Projector extracts Events from raw JSON lines. The zero value is ready to
// use; it keeps scratch space between calls, so it is not safe for concurrent
// use (one per worker).
type Projector struct {
	scratch []byte
}

// field bits
const (
	fTS = 1 << iota
	fRider
	fLat
	fLng
	fProduct
	fAll = fTS | fRider | fLat | fLng | fProduct
)

// Project parses line (one JSON text, surrounding white space allowed) into ev.
// Only top-level keys count; all other content, at any depth, is validated as
// JSON and otherwise skipped. It never allocates on the common path.
func (p *Projector) Project(line []byte, ev *Event) Reason {
	s := scanner{b: line}
	s.ws()
	if s.i >= len(s.b) {
		return InvalidJSON
	}
	if s.b[s.i] != '{' {
		if !s.value(0) {
			return InvalidJSON
		}
		s.ws()
		if s.i != len(s.b) {
			return InvalidJSON
		}
		return NotObject
	}
	s.i++
	seen := 0
	var bad Reason // first field error; JSON validity still decides first
	p.scratch = p.scratch[:0]
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
	} else {
		for {
			if s.i >= len(s.b) || s.b[s.i] != '"' {
				return InvalidJSON
			}
			key, esc, ok := s.str()
			if !ok {
				return InvalidJSON
			}
			if esc {
				// Rare: an escaped key. Decode to compare.
				var tmp [32]byte
				d, ok := unescape(tmp[:0], key)
				if !ok {
					return InvalidJSON
				}
				key = d
			}
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] != ':' {
				return InvalidJSON
			}
			s.i++
			s.ws()
			f := fieldOf(key)
			if f != 0 && seen&f != 0 {
				if bad == OK {
					bad = DuplicateField
				}
				f = 0 // validate and skip the repeat
			}
			seen |= f
			var r Reason
			switch f {
			case fTS:
				r = s.ts(&ev.TS)
			case fLat:
				r = s.coord(&ev.Lat, 90, BadLat)
			case fLng:
				r = s.coord(&ev.Lng, 180, BadLng)
			case fRider:
				r = p.rider(&s, ev)
			case fProduct:
				r = p.product(&s, ev)
			default:
				if !s.value(0) {
					return InvalidJSON
				}
			}
			if r == InvalidJSON {
				return InvalidJSON
			}
			if r != OK && bad == OK {
				bad = r
			}
			done, ok := s.sep('}')
			if !ok {
				return InvalidJSON
			}
			if done {
				break
			}
		}
	}
	s.ws()
	if s.i != len(s.b) {
		return InvalidJSON
	}
	if bad != OK {
		return bad
	}
	switch {
	case seen&fTS == 0:
		return MissingTS
	case seen&fRider == 0:
		return MissingRiderID
	case seen&fLat == 0:
		return MissingLat
	case seen&fLng == 0:
		return MissingLng
	case seen&fProduct == 0:
		return MissingProduct
	}
	return OK
}

func fieldOf(key []byte) int {
	switch len(key) {
	case 2:
		if key[0] == 't' && key[1] == 's' {
			return fTS
		}
	case 3:
		if string(key) == "lat" {
			return fLat
		}
		if string(key) == "lng" {
			return fLng
		}
	case 8:
		if string(key) == "rider_id" {
			return fRider
		}
	case 12:
		if string(key) == "product_type" {
			return fProduct
		}
	}
	return 0
}

func (p *Projector) rider(s *scanner, ev *Event) Reason {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		if !s.value(0) {
			return InvalidJSON
		}
		return BadRiderID
	}
	v, esc, ok := s.str()
	if !ok {
		return InvalidJSON
	}
	if esc {
		start := len(p.scratch)
		d, ok := unescape(p.scratch, v)
		if !ok {
			return InvalidJSON
		}
		p.scratch = d
		v = d[start:]
	}
	if len(v) == 0 || len(v) > MaxRiderIDBytes {
		return BadRiderID
	}
	ev.Rider = v
	return OK
}

func (p *Projector) product(s *scanner, ev *Event) Reason {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		if !s.value(0) {
			return InvalidJSON
		}
		return BadProduct
	}
	v, esc, ok := s.str()
	if !ok {
		return InvalidJSON
	}
	if esc {
		var tmp [64]byte
		d, ok := unescape(tmp[:0], v)
		if !ok {
			return InvalidJSON
		}
		v = d
	}
	u, ok := ParseUUID(v)
	if !ok {
		return BadProduct
	}
	ev.Product = u
	return OK
}

// scanner walks one JSON text.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// sep reads what follows a member or element: the closing bracket (done)
// or a comma; ok is false for anything else.
func (s *scanner) sep(closing byte) (done, ok bool) {
	s.ws()
	if s.i >= len(s.b) {
		return false, false
	}
	c := s.b[s.i]
	s.i++
	if c == closing {
		return true, true
	}
	if c != ',' {
		return false, false
	}
	s.ws()
	return false, true
}

// strStop marks bytes that end the fast run inside a string: the quote, the
// backslash and control characters (invalid unescaped in JSON).
var strStop = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'] = true
	t['\\'] = true
	return t
}()

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// hasZero is non-zero iff some byte of w is zero.
func hasZero(w uint64) uint64 { return (w - lsb) & ^w & msb }

// hasLess is non-zero iff some byte of w is below n (n <= 128).
func hasLess(w, n uint64) uint64 { return (w - lsb*n) & ^w & msb }

// str scans a string starting at the opening quote. It returns the raw
// content (escapes not decoded), whether it had escapes, and validity.
func (s *scanner) str() (raw []byte, esc bool, ok bool) {
	b := s.b
	i := s.i + 1
	start := i
	for {
		// Eight bytes at a time while none is a quote, a backslash or a
		// control character (SWAR): strings are most of an event's bytes.
		for i+8 <= len(b) {
			w := binary.LittleEndian.Uint64(b[i:])
			if hasZero(w^(lsb*'"'))|hasZero(w^(lsb*'\\'))|hasLess(w, 0x20) != 0 {
				break
			}
			i += 8
		}
		for i < len(b) && !strStop[b[i]] {
			i++
		}
		if i >= len(b) {
			return nil, false, false
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return b[start:i], esc, true
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				return nil, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return nil, false, false
				}
				for _, h := range b[i+2 : i+6] {
					if hexVal[h] > 15 {
						return nil, false, false
					}
				}
				i += 6
			default:
				return nil, false, false
			}
		default: // control character
			return nil, false, false
		}
	}
}

// number scans a JSON number; it returns its bytes and whether it is a plain
// integer (no fraction or exponent).
func (s *scanner) number() (num []byte, integer bool, ok bool) {
	b := s.b
	i := s.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return nil, false, false
	}
	if b[i] == '0' {
		i++
	} else if b[i] >= '1' && b[i] <= '9' {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	} else {
		return nil, false, false
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		integer = false
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false, false
		}
	}
	s.i = i
	return b[start:i], integer, true
}

func (s *scanner) lit(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// value validates and skips any JSON value.
func (s *scanner) value(depth int) bool {
	if s.i >= len(s.b) || depth > maxDepth {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, _, ok := s.str()
		return ok
	case '{':
		s.i++
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == '}' {
			s.i++
			return true
		}
		for {
			if s.i >= len(s.b) || s.b[s.i] != '"' {
				return false
			}
			if _, _, ok := s.str(); !ok {
				return false
			}
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] != ':' {
				return false
			}
			s.i++
			s.ws()
			if !s.value(depth + 1) {
				return false
			}
			if done, ok := s.sep('}'); done || !ok {
				return ok
			}
		}
	case '[':
		s.i++
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			if done, ok := s.sep(']'); done || !ok {
				return ok
			}
		}
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	default:
		_, _, ok := s.number()
		return ok
	}
}

// ts parses the ts value: an integer in 0..MaxTS.
func (s *scanner) ts(dst *int64) Reason {
	if s.i >= len(s.b) || (s.b[s.i] != '-' && (s.b[s.i] < '0' || s.b[s.i] > '9')) {
		if !s.value(0) {
			return InvalidJSON
		}
		return BadTS
	}
	num, integer, ok := s.number()
	if !ok {
		return InvalidJSON
	}
	if !integer || num[0] == '-' || len(num) > 15 {
		return BadTS // MaxTS has 15 digits
	}
	var v int64
	for _, c := range num {
		v = v*10 + int64(c-'0')
	}
	if v > MaxTS {
		return BadTS
	}
	*dst = v
	return OK
}

// pow10 holds the exactly representable powers of ten.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// coord parses a number in -limit..limit.
func (s *scanner) coord(dst *float64, limit float64, bad Reason) Reason {
	if s.i >= len(s.b) || (s.b[s.i] != '-' && (s.b[s.i] < '0' || s.b[s.i] > '9')) {
		if !s.value(0) {
			return InvalidJSON
		}
		return bad
	}
	num, _, ok := s.number()
	if !ok {
		return InvalidJSON
	}
	v, ok := parseFloat(num)
	if !ok || v < -limit || v > limit {
		return bad
	}
	*dst = v
	return OK
}

// parseFloat converts a validated JSON number. Fast path (Clinger): at most
// 15 significant digits and no exponent, so mantissa and 10^frac are exact
// float64s and one IEEE division rounds correctly. That covers coordinates
// as apps send them (e.g. 40.7580123); anything else goes to strconv.
func parseFloat(num []byte) (float64, bool) {
	neg := false
	b := num
	if b[0] == '-' {
		neg = true
		b = b[1:]
	}
	var mant uint64
	digits, frac := 0, -1
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
		case c == '.':
			frac = i
		default:
			goto slow
		}
	}
	if digits <= 15 {
		f := float64(mant)
		if frac >= 0 {
			f /= pow10[len(b)-frac-1]
		}
		if neg {
			f = -f
		}
		return f, true
	}
slow:
	f, err := strconv.ParseFloat(string(num), 64)
	return f, err == nil
}

// unescape appends the decoded content of a JSON string (without quotes) to
// dst. Invalid surrogates become U+FFFD, as encoding/json does.
func unescape(dst, raw []byte) ([]byte, bool) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(raw) {
			return dst, false
		}
		switch raw[i+1] {
		case '"', '\\', '/':
			dst = append(dst, raw[i+1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(raw[i+2:])
			if !ok {
				return dst, false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if r2, ok := hex4(raw[i+2:]); ok {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							dst = utf8.AppendRune(dst, d)
							i += 6
							continue
						}
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default:
			return dst, false
		}
		i += 2
	}
	return dst, true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		v := hexVal[c]
		if v > 15 {
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}
