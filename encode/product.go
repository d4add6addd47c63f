package encode

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// UUID is a product type's 16 bytes.
type UUID [16]byte

// MaxProducts is how many product types can hold a code at once: codes are
// one byte. The engine reuses the code of a product no window holds any
// more; a 257th product active at once is rejected (too_many_products)
// rather than mixed into another product's counts.
const MaxProducts = 256

// ErrTooManyProducts is returned by Products.Code past MaxProducts.
var ErrTooManyProducts = errors.New("more than 256 distinct product types")

var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
		t[c-'a'+'A'] = byte(c - 'a' + 10)
	}
	return t
}()

// ParseUUID parses the 36-character 8-4-4-4-12 hex form, in any case.
func ParseUUID(s []byte) (u UUID, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, lo := hexVal[s[i]], hexVal[s[i+1]]
		if hi|lo == 0xff || hi > 15 || lo > 15 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
		i += 2
	}
	return u, true
}

const hexDigits = "0123456789abcdef"

// AppendText appends the lower-case 36-character form.
func (u UUID) AppendText(dst []byte) []byte {
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&15])
	}
	return dst
}

// String is the lower-case 36-character form.
func (u UUID) String() string { return string(u.AppendText(make([]byte, 0, 36))) }

// Products maps product-type UUIDs to one-byte codes. Lookups are lock-free
// (an immutable snapshot behind an atomic pointer); changes take a mutex and
// publish a new snapshot. Safe for concurrent use.
//
// Codes are run-local: rows carry the registry (Batch.Names), and every sink
// stores the UUID or its own persistent code, never this one. The engine
// assigns codes in arrival order (Assign), so which product meets the limit
// does not depend on the parallelism; and once all 256 codes are taken it
// reuses the code of a product that no window holds any more. A reused code
// keeps its former owner for the minutes before the reuse (UUIDAt), so rows
// of those minutes still closing are named right.
type Products struct {
	mu   sync.Mutex
	snap atomic.Pointer[productSnap]
}

type productSnap struct {
	gen   uint64 // bumped when a code changes owner
	uuids []UUID // current owner of each code used so far
	names []string
	index map[UUID]byte
	past  []pastOwner // former owners, oldest first
}

// pastOwner owned code until minute until (inclusive).
type pastOwner struct {
	code  byte
	until int64
	uuid  UUID
	name  string
}

// maxPastOwners bounds the history of reassigned codes. A code changes owner
// only after its product has been idle for a whole window (32 minutes by
// default) and rows name past owners only while their minutes close, so a
// few per code is plenty.
const maxPastOwners = 1024

// NewProducts returns an empty registry.
func NewProducts() *Products {
	p := &Products{}
	p.snap.Store(&productSnap{index: map[UUID]byte{}})
	return p
}

// Code returns u's code, adding u if there is a free code (no reuse).
func (p *Products) Code(u UUID) (byte, error) {
	return p.Assign(u, 0, nil)
}

// Assign returns u's code, adding u if it is new. When every code is taken
// it reuses the first code c (in code order) for which reusable(c) holds,
// recording the former owner as the owner of minutes before from; with no
// such code it returns ErrTooManyProducts. reusable may be nil (no reuse).
func (p *Products) Assign(u UUID, from int64, reusable func(c byte) bool) (byte, error) {
	if c, ok := p.snap.Load().index[u]; ok {
		return c, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.snap.Load()
	if c, ok := old.index[u]; ok {
		return c, nil
	}
	n := &productSnap{
		gen:   old.gen,
		uuids: append([]UUID(nil), old.uuids...),
		names: append([]string(nil), old.names...),
		index: make(map[UUID]byte, len(old.index)+1),
		past:  old.past,
	}
	for k, v := range old.index {
		n.index[k] = v
	}
	var c byte
	switch {
	case len(old.uuids) < MaxProducts:
		c = byte(len(old.uuids))
		n.uuids = append(n.uuids, u)
		n.names = append(n.names, u.String())
	case reusable != nil:
		found := false
		for i := range MaxProducts {
			if reusable(byte(i)) {
				c, found = byte(i), true
				break
			}
		}
		if !found {
			return 0, ErrTooManyProducts
		}
		n.gen++
		past := old.past
		if len(past) >= maxPastOwners {
			past = past[1:]
		}
		n.past = append(past[:len(past):len(past)], pastOwner{code: c, until: from - 1, uuid: old.uuids[c], name: old.names[c]})
		delete(n.index, old.uuids[c])
		n.uuids[c] = u
		n.names[c] = u.String()
	default:
		return 0, ErrTooManyProducts
	}
	n.index[u] = c
	p.snap.Store(n)
	return c, nil
}

// Gen changes whenever a code changes owner: a cache of codes keyed by the
// registry must be dropped when it does.
func (p *Products) Gen() uint64 { return p.snap.Load().gen }

// Lookup returns u's code without adding it.
func (p *Products) Lookup(u UUID) (byte, bool) {
	c, ok := p.snap.Load().index[u]
	return c, ok
}

// Name returns the lower-case UUID string of code c's current owner.
func (p *Products) Name(c byte) string {
	s := p.snap.Load()
	if int(c) >= len(s.names) {
		panic(fmt.Sprintf("encode: product code %d not assigned", c))
	}
	return s.names[c]
}

// UUID returns the UUID of code c's current owner.
func (p *Products) UUID(c byte) UUID { return p.snap.Load().uuids[c] }

// UUIDAt returns the UUID that code c named in minute m.
func (p *Products) UUIDAt(c byte, m int64) UUID {
	s := p.snap.Load()
	if o := s.pastAt(c, m); o != nil {
		return o.uuid
	}
	return s.uuids[c]
}

// NameAt returns the lower-case UUID string that code c named in minute m.
func (p *Products) NameAt(c byte, m int64) string {
	s := p.snap.Load()
	if o := s.pastAt(c, m); o != nil {
		return o.name
	}
	return s.names[c]
}

// pastAt finds the former owner of c in minute m: the earliest one whose
// ownership ended at or after m. Almost always past is empty.
func (s *productSnap) pastAt(c byte, m int64) *pastOwner {
	for i := range s.past {
		if o := &s.past[i]; o.code == c && o.until >= m {
			return o
		}
	}
	return nil
}

// Len is the number of codes in use.
func (p *Products) Len() int { return len(p.snap.Load().uuids) }
