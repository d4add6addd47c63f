package encode

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// UUID is a product type's 16 bytes.
type UUID [16]byte

// MaxProducts is how many distinct product types one run can hold: codes are
// one byte. The 257th distinct product is rejected (reason too_many_products)
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

// Products maps product-type UUIDs to one-byte codes, assigned in order of
// first sight. Lookups are lock-free (an immutable snapshot behind an atomic
// pointer); adding a product takes a mutex and publishes a new snapshot, which
// happens at most 256 times in a run. Safe for concurrent use.
type Products struct {
	mu   sync.Mutex
	snap atomic.Pointer[productSnap]
}

type productSnap struct {
	uuids []UUID
	names []string
	index map[UUID]byte
}

// NewProducts returns an empty registry.
func NewProducts() *Products {
	p := &Products{}
	p.snap.Store(&productSnap{index: map[UUID]byte{}})
	return p
}

// Code returns u's code, adding u if it is new.
func (p *Products) Code(u UUID) (byte, error) {
	if c, ok := p.snap.Load().index[u]; ok {
		return c, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.snap.Load()
	if c, ok := old.index[u]; ok {
		return c, nil
	}
	if len(old.uuids) >= MaxProducts {
		return 0, ErrTooManyProducts
	}
	n := &productSnap{
		uuids: append(old.uuids[:len(old.uuids):len(old.uuids)], u),
		names: append(old.names[:len(old.names):len(old.names)], u.String()),
		index: make(map[UUID]byte, len(old.index)+1),
	}
	for k, v := range old.index {
		n.index[k] = v
	}
	c := byte(len(old.uuids))
	n.index[u] = c
	p.snap.Store(n)
	return c, nil
}

// Lookup returns u's code without adding it.
func (p *Products) Lookup(u UUID) (byte, bool) {
	c, ok := p.snap.Load().index[u]
	return c, ok
}

// Name returns the lower-case UUID string of code c.
func (p *Products) Name(c byte) string {
	s := p.snap.Load()
	if int(c) >= len(s.names) {
		panic(fmt.Sprintf("encode: product code %d not assigned", c))
	}
	return s.names[c]
}

// UUID returns the UUID of code c.
func (p *Products) UUID(c byte) UUID { return p.snap.Load().uuids[c] }

// Len is the number of known products.
func (p *Products) Len() int { return len(p.snap.Load().uuids) }
