package store

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/read"
)

// Row is one read answer (read.Row).
type Row = read.Row

var _ read.Reader = (*Store)(nil)

// LatestMinute is the newest closed minute.
func (s *Store) LatestMinute() (int64, bool) {
	if mins := *s.minutes.Load(); len(mins) > 0 {
		return mins[0].Minute, true
	}
	return 0, false
}

// Minutes appends the closed minutes still within retention to dst, latest
// first.
func (s *Store) Minutes(dst []MinuteInfo) []MinuteInfo {
	return append(dst, *s.minutes.Load()...)
}

// Minute describes closed minute m, if it is available.
func (s *Store) Minute(m int64) (MinuteInfo, bool) {
	mins := *s.minutes.Load()
	// Latest first: search on the negated order.
	i, ok := slices.BinarySearchFunc(mins, m, func(mi MinuteInfo, t int64) int { return cmp.Compare(t, mi.Minute) })
	if !ok {
		return MinuteInfo{}, false
	}
	return mins[i], true
}

func (s *Store) isClosedMinute(m int64) bool { _, ok := s.Minute(m); return ok }

// Products lists the products the store has rows for (ever, in code order).
func (s *Store) Products() []encode.UUID {
	return slices.Clone(s.products.Load().uuids)
}

// HasProduct reports whether the store knows product u.
func (s *Store) HasProduct(u encode.UUID) bool {
	_, ok := s.products.Load().codes[u]
	return ok
}

// resolve checks minute and product and returns the product's code.
func (s *Store) resolve(minute int64, product encode.UUID) (byte, error) {
	if !s.isClosedMinute(minute) {
		if _, ok := s.LatestMinute(); !ok {
			return 0, ErrNoMinute
		}
		return 0, fmt.Errorf("%w: %s", ErrMinuteNotFound, encode.MinuteStart(minute).Format("2006-01-02T15:04:05Z"))
	}
	code, ok := s.products.Load().codes[product]
	if !ok {
		return 0, fmt.Errorf("%w: %s", ErrUnknownProduct, product)
	}
	return code, nil
}

func (s *Store) zero(dst []int32) []int32 {
	dst = slices.Grow(dst[:0], s.nf)[:s.nf]
	clear(dst)
	return dst
}

// Get reads the row of (minute, product, cell), decoding its features into
// dst (reused when large enough).
func (s *Store) Get(dst []int32, minute int64, product encode.UUID, cell uint64) (Row, error) {
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	if s.closed {
		return Row{}, ErrClosed
	}
	code, err := s.resolve(minute, product)
	if err != nil {
		return Row{}, err
	}
	s.met.readGet.Inc()
	s.met.readRows.Inc()
	var kb [1 + encode.RowKeyLen]byte
	key := encode.AppendRowKey(append(kb[:0], tagRow), minute, code, cell)
	var r Row
	err = s.read(func() error {
		v, closer, err := s.db.Get(key)
		switch {
		case errors.Is(err, pebble.ErrNotFound):
			r = Row{Cell: cell, Features: s.zero(dst)}
		case err != nil:
			return fmt.Errorf("store: %w", err)
		default:
			f, err := encode.DecodeRowValue(dst[:0], v)
			closer.Close()
			if err != nil {
				return fmt.Errorf("store: row %x: %w", key, err)
			}
			r = Row{Cell: cell, Found: true, Features: f}
		}
		return nil
	})
	if err != nil {
		return Row{}, err
	}
	return r, s.stillListed(minute)
}

// read runs fn, the pebble part of a read, on the caller's goroutine (a
// goroutine per read, as guard does for writes, made a point read 2.8x
// slower: 2.8 -> 7.9 us), and fails the store on corruption: a table that
// does not check out will not heal, so the process ends with a clear error
// (Done) instead of answering some reads and not others. A pebble panic is
// recovered into the store's failure; a pebble Fatalf has failed the store
// before it ends the reading goroutine (an HTTP request then gets no
// answer, and serve exits on Done).
func (s *Store) read(fn func() error) (err error) {
	if err := s.faults.Err(); err != nil {
		return err
	}
	done := false
	defer func() {
		if done {
			return
		}
		if r := recover(); r != nil {
			s.faults.failPanic(r)
			err = s.faults.Err()
		}
	}()
	err = fn()
	done = true
	if err == nil {
		return nil
	}
	if errors.Is(err, pebble.ErrCorruption) {
		s.faults.fail(err)
	}
	if ferr := s.faults.Err(); ferr != nil {
		return ferr // failed by this read (pebble's DataCorruption event): one line, with the store and the file
	}
	return err
}

// Done is closed when the store has failed (corruption, a full disk, a
// pebble fatal error); Err then says why. A process serving the store
// stops then: every read and write after it fails.
func (s *Store) Done() <-chan struct{} { return s.faults.failed }

// stillListed is checked after a read: retention unlists a minute before
// deleting its rows, so a minute still listed after the read was whole
// during it. Without this check a read racing the expiry of its minute
// would answer zeros for rows that existed.
func (s *Store) stillListed(minute int64) error {
	if !s.isClosedMinute(minute) {
		return fmt.Errorf("%w: %s expired during the read", ErrMinuteNotFound, encode.MinuteStart(minute).Format("2006-01-02T15:04:05Z"))
	}
	return nil
}

// readScratch is GetMany's reusable sort order and key buffer.
type readScratch struct {
	order  []cellIndex
	key    []byte
	bounds [12]byte
}

type cellIndex struct {
	cell uint64
	i    int
}

var scratchPool = sync.Pool{New: func() any { return new(readScratch) }}

// GetMany reads the rows of cells for (minute, product), in the order of
// cells, into rows (reused, with each row's Features, when large enough).
// It seeks through one iterator in cell order: rows of a (minute, product)
// are contiguous and sorted by cell, so each seek moves forward.
func (s *Store) GetMany(rows []Row, minute int64, product encode.UUID, cells []uint64) ([]Row, error) {
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	if s.closed {
		return rows, ErrClosed
	}
	code, err := s.resolve(minute, product)
	if err != nil {
		return rows, err
	}
	s.met.readMany.Inc()
	s.met.readRows.Add(float64(len(cells)))
	rows = slices.Grow(rows[:0], len(cells))[:len(cells)]
	sc := scratchPool.Get().(*readScratch)
	defer scratchPool.Put(sc)
	sc.order = sc.order[:0]
	for i, c := range cells {
		sc.order = append(sc.order, cellIndex{c, i})
	}
	slices.SortFunc(sc.order, func(a, b cellIndex) int { return cmp.Compare(a.cell, b.cell) })

	err = s.read(func() error {
		lo, hi := s.productBounds(sc, minute, code)
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		for _, ci := range sc.order {
			r := &rows[ci.i]
			r.Cell, r.Found = ci.cell, false
			sc.key = encode.AppendRowKey(append(sc.key[:0], tagRow), minute, code, ci.cell)
			if it.SeekGE(sc.key) && bytes.Equal(it.Key(), sc.key) {
				v, err := it.ValueAndErr()
				if err == nil {
					r.Features, err = encode.DecodeRowValue(r.Features[:0], v)
				}
				if err != nil {
					it.Close()
					return fmt.Errorf("store: row %x: %w", sc.key, err)
				}
				r.Found = true
				continue
			}
			if err := it.Error(); err != nil {
				// A block that does not check out: stop here, not seek
				// into it again for every cell left (a corrupt block made
				// a 3,000-cell read take 3.5 s).
				it.Close()
				return fmt.Errorf("store: %w", err)
			}
			r.Features = s.zero(r.Features)
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return nil
	})
	if err != nil {
		return rows, err
	}
	return rows, s.stillListed(minute)
}

// productBounds returns the key range of the rows of (minute, code), in
// sc.bounds (the pebble iterator keeps the slices while it lives).
func (s *Store) productBounds(sc *readScratch, minute int64, code byte) (lo, hi []byte) {
	lo = encode.AppendMinuteKey(append(sc.bounds[:0], tagRow), minute)
	lo = append(lo, code)
	if code < 255 {
		hi = encode.AppendMinuteKey(append(sc.bounds[6:6], tagRow), minute)
		hi = append(hi, code+1)
	} else {
		hi = encode.AppendMinuteKey(append(sc.bounds[6:6], tagRow), minute+1)
	}
	return lo, hi
}

// Scan calls fn with every row of (minute, product) in cell order until fn
// returns false. features is only valid during the call.
func (s *Store) Scan(minute int64, product encode.UUID, fn func(cell uint64, features []int32) bool) error {
	return s.scan(minute, product, encode.RowsDecoder(fn))
}

// ScanFeature calls fn with feature index of every row of (minute, product)
// in cell order until fn returns false, decoding no feature past index.
func (s *Store) ScanFeature(minute int64, product encode.UUID, index int, fn func(cell uint64, v int32) bool) error {
	if index < 0 || index >= s.nf {
		return fmt.Errorf("store: feature index %d out of range 0..%d", index, s.nf-1)
	}
	return s.scan(minute, product, encode.FeatureDecoder(index, fn))
}

func (s *Store) scan(minute int64, product encode.UUID, fn func(cell uint64, v []byte) (bool, error)) error {
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	code, err := s.resolve(minute, product)
	if err != nil {
		return err
	}
	s.met.readScan.Inc()
	err = s.read(func() error {
		var sc readScratch
		lo, hi := s.productBounds(&sc, minute, code)
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		n := 0
		for it.First(); it.Valid(); it.Next() {
			k, err := encode.ParseRowKey(it.Key()[1:])
			if err != nil {
				it.Close()
				return fmt.Errorf("store: %w", err)
			}
			v, err := it.ValueAndErr()
			if err != nil {
				it.Close()
				return fmt.Errorf("store: %w", err)
			}
			n++
			more, err := fn(k.Cell, v)
			if err != nil {
				it.Close()
				return fmt.Errorf("store: row %x: %w", it.Key(), err)
			}
			if !more {
				break
			}
		}
		s.met.readRows.Add(float64(n))
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.stillListed(minute)
}
