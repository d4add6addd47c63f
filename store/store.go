package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/read"
)

// Key tags (doc.go).
const (
	tagDef     = 'd'
	tagMinute  = 'm'
	tagProduct = 'p'
	tagRow     = 'r'
	// engine state for resuming (sink.Checkpointer): the checkpoint, and
	// each recent minute's source counts
	tagCheckpoint = 'k'
	tagCounts     = 'c'
	// the retention clock (writer.clock)
	tagClock = 't'
)

// formatVersion is stored with the definition; a store written by a future
// incompatible layout is refused instead of misread.
const formatVersion = "demandpipe-store/1"

var compressions = map[string]*sstable.CompressionProfile{
	"snappy": sstable.SnappyCompression,
	"minlz":  sstable.MinLZCompression,
	"zstd":   sstable.ZstdCompression,
	"none":   sstable.NoCompression,
}

// Errors of the read API (package read); ErrClosed is the store's own.
var (
	ErrClosed         = errors.New("store: closed")
	ErrNoMinute       = read.ErrNoMinute
	ErrMinuteNotFound = read.ErrMinuteNotFound
	ErrUnknownProduct = read.ErrUnknownProduct
)

// MinuteInfo describes a closed minute (read.MinuteInfo).
type MinuteInfo = read.MinuteInfo

// Store is a feature store. It is a sink.Writer (one writer goroutine at a
// time) and serves reads concurrently (read.go).
type Store struct {
	cfg Config
	def feature.Definition
	nf  int
	db  *pebble.DB
	fs  io.Closer // pebble's disk-health checker, closed after db
	met *storeMetrics
	wo  *pebble.WriteOptions

	// rmu guards db against Close while reads run: reads hold it shared
	// (uncontended: the writer never takes it), Close exclusively.
	rmu    sync.RWMutex
	closed bool

	// Reader-visible state, replaced whole after each commit.
	products atomic.Pointer[productTable]
	minutes  atomic.Pointer[[]MinuteInfo] // closed minutes, latest first

	w writer // write.go; only the writer goroutine touches it

	bg sync.WaitGroup // background compaction

	faults *faults // fault.go: pebble's fatal and background errors
	vfs    vfs.FS  // for the free-space check
}

// Err is the failure that ended the store (a full disk, an unrecoverable
// pebble error), or nil.
func (s *Store) Err() error { return s.faults.Err() }

// productTable maps UUIDs to the store's persistent codes and back.
type productTable struct {
	uuids []encode.UUID
	codes map[encode.UUID]byte
}

// appendProduct is a product entry's value: the UUID, then the newest
// minute with rows as a uvarint.
func appendProduct(dst []byte, u encode.UUID, last int64) []byte {
	return binary.AppendUvarint(append(dst, u[:]...), uint64(last))
}

// Open opens (creating unless cfg.ReadOnly) the store in cfg.Dir. reg may be
// nil; metrics are registered on it otherwise.
func Open(cfg Config, reg prometheus.Registerer) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ReadOnly {
		if _, err := os.Stat(cfg.Dir); err != nil {
			return nil, fmt.Errorf("store %s: %w (serve reads a store that `demandpipe run -sink=store:DIR` wrote)", cfg.Dir, err)
		}
	}
	base := cfg.FS
	if base == nil {
		base = vfs.Default
	}
	f := newFaults(cfg.Dir)
	if !cfg.ReadOnly {
		// A full disk is refused before pebble meets it (a rerun on a
		// still-full disk used to spin inside pebble.Open forever).
		probe := cfg.Dir
		if _, err := os.Stat(probe); err != nil {
			probe = filepath.Dir(filepath.Clean(probe))
		}
		if err := checkFree(base, probe, cfg.MinFreeBytes); err != nil {
			return nil, f.describe(err)
		}
	}
	cache := pebble.NewCache(cfg.CacheBytes)
	defer cache.Unref()
	// Our own disk-health wrapper (pebble's default one is not closed when
	// Open fails, which leaks its goroutine): a write stuck for 5 s is
	// reported on stderr.
	fs, fsCloser := vfs.WithDiskHealthChecks(base, 5*time.Second, nil, func(info vfs.DiskSlowInfo) {
		quietLogger{}.Errorf("disk slow: %s", info)
	})
	opts := &pebble.Options{
		FS:                 fs,
		Cache:              cache,
		MemTableSize:       uint64(cfg.MemTableBytes),
		ReadOnly:           cfg.ReadOnly,
		ErrorIfNotExists:   cfg.ReadOnly,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             fatalLogger{f},
		EventListener:      f.listener(),
	}
	profile := compressions[cfg.Compression]
	for i := range opts.Levels {
		opts.Levels[i].Compression = func() *sstable.CompressionProfile { return profile }
	}
	var db *pebble.DB
	err := f.guard(func() (err error) {
		db, err = pebble.Open(cfg.Dir, opts)
		return err
	})
	if err != nil {
		fsCloser.Close()
		// Another process holds the lock: EAGAIN from flock (the text says
		// only "resource temporarily unavailable"); this process already
		// holding it says "lock held by current process".
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock held") {
			return nil, fmt.Errorf("store %s is in use by another process (a running `demandpipe run`? serve it with run -serve=ADDR): %w", cfg.Dir, err)
		}
		if f.Err() != nil {
			return nil, err // the failure names the store already
		}
		return nil, fmt.Errorf("store %s: %w", cfg.Dir, err)
	}
	s := &Store{cfg: cfg, db: db, fs: fsCloser, wo: pebble.NoSync, faults: f, vfs: base}
	if cfg.Sync {
		s.wo = pebble.Sync
	}
	// load reads pebble on this goroutine's behalf: under guard, so that
	// corruption, which pebble reports through Logger.Fatalf, is an error
	// here (it ended the caller's goroutine inside Fatalf, and a `serve`
	// or `run` opening a corrupt store hung).
	if err := f.guard(s.load); err != nil {
		closeFailed(db, f)
		fsCloser.Close()
		if f.Err() != nil {
			return nil, err // the failure names the store already
		}
		return nil, fmt.Errorf("store %s: %w", cfg.Dir, err)
	}
	s.nf = s.def.NumFeatures()
	s.w.init(s)
	if s.met, err = newMetrics(reg, s); err != nil {
		s.w.cancel()
		db.Close()
		fsCloser.Close()
		return nil, err
	}
	return s, nil
}

// load reads the definition, the product table and the closed minutes.
func (s *Store) load() error {
	v, closer, err := s.db.Get([]byte{tagDef})
	switch {
	case err == nil:
		stored := string(v)
		closer.Close()
		vers, name, _ := strings.Cut(stored, "\n")
		if vers != formatVersion {
			return fmt.Errorf("written in format %q, this build reads %q", vers, formatVersion)
		}
		d, err := feature.Parse(name)
		if err != nil {
			return fmt.Errorf("stored definition: %w", err)
		}
		if s.cfg.Definition.Rings != nil && s.cfg.Definition.String() != d.String() {
			return fmt.Errorf("holds features of definition %q, but the engine computes %q: use another store directory, or the flags that match it", d, s.cfg.Definition)
		}
		s.def = d
	case errors.Is(err, pebble.ErrNotFound):
		s.def = s.cfg.Definition
		if s.def.Rings == nil {
			s.def = feature.Default()
		}
		if !s.cfg.ReadOnly {
			if err := s.db.Set([]byte{tagDef}, []byte(formatVersion+"\n"+s.def.String()), pebble.Sync); err != nil {
				return err
			}
		}
	default:
		return err
	}

	pt := &productTable{codes: map[encode.UUID]byte{}}
	unknownLast := false
	if err := s.scanPrefix(tagProduct, func(k, v []byte) error {
		if len(k) != 2 || len(v) < 16 || int(k[1]) != len(pt.uuids) {
			return fmt.Errorf("corrupt product entry %x=%x", k, v)
		}
		u := encode.UUID(v[:16])
		last := int64(-1)
		if len(v) > 16 {
			x, n := binary.Uvarint(v[16:])
			if n != len(v)-16 || x > encode.MaxMinute {
				return fmt.Errorf("corrupt product entry %x=%x", k, v)
			}
			last = int64(x)
		} else {
			unknownLast = true
		}
		s.w.last[k[1]] = last
		pt.codes[u] = k[1]
		pt.uuids = append(pt.uuids, u)
		return nil
	}); err != nil {
		return err
	}

	var mins []MinuteInfo
	if err := s.scanPrefix(tagMinute, func(k, v []byte) error {
		mi, err := decodeMarker(k, v)
		mins = append(mins, mi)
		return err
	}); err != nil {
		return err
	}
	slices.Reverse(mins)
	s.minutes.Store(&mins)
	if unknownLast && len(mins) > 0 {
		for c := range pt.uuids {
			if s.w.last[c] < 0 {
				s.w.last[c] = mins[0].Minute // conservative: as if used in the newest minute
			}
		}
	}
	s.products.Store(pt)
	return nil
}

func (s *Store) scanPrefix(tag byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tag}, UpperBound: []byte{tag + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return errors.Join(it.Error(), it.Close())
}

func markerKey(dst []byte, m int64) []byte {
	return encode.AppendMinuteKey(append(dst, tagMinute), m)
}

func appendMarker(dst []byte, rows int, closedMS int64) []byte {
	return binary.AppendVarint(binary.AppendUvarint(dst, uint64(rows)), closedMS)
}

func decodeMarker(k, v []byte) (MinuteInfo, error) {
	if len(k) != 5 {
		return MinuteInfo{}, fmt.Errorf("corrupt minute key %x", k)
	}
	rows, n := binary.Uvarint(v)
	ms, n2 := 0, 0
	if n > 0 {
		var x int64
		x, n2 = binary.Varint(v[n:])
		ms = int(x)
	}
	if n <= 0 || n2 <= 0 || n+n2 != len(v) || rows > 1<<40 {
		return MinuteInfo{}, fmt.Errorf("corrupt minute marker %x=%x", k, v)
	}
	return MinuteInfo{Minute: int64(binary.BigEndian.Uint32(k[1:])), Rows: int(rows), ClosedMS: int64(ms)}, nil
}

// Definition is the feature definition of the stored rows.
func (s *Store) Definition() feature.Definition { return s.def }

// Dir is the store's directory.
func (s *Store) Dir() string { return s.cfg.Dir }

// Close commits nothing new: rows of a minute that was written but never
// closed are dropped (counted in rows_dropped_total), since a reader must
// never see half a minute. The engine closes every minute it flushes before
// calling Close. Committed minutes are already in the WAL; Close waits for
// background compaction and closes pebble, which flushes its memtable.
// Reads after Close return ErrClosed.
func (s *Store) Close() error {
	s.w.cancel()
	s.bg.Wait()
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.w.discard()
	s.met.unregister()
	var err error
	if ferr := s.faults.Err(); ferr != nil {
		// Pebble may be stuck behind a flush that cannot finish: give it
		// a moment, then leave it to the process's exit. After a corrupt
		// block its Close may also panic on a reference the failed read
		// left (genericcache: "element has outstanding references"),
		// which would end the process with a stack trace instead of the
		// store's error: recovered here.
		done := make(chan error, 1)
		go func() {
			defer func() {
				if r := recover(); r != nil {
					done <- fmt.Errorf("pebble close: %v", r)
				}
			}()
			done <- s.db.Close()
		}()
		select {
		case <-done:
		case <-time.After(closeTimeout):
		}
		s.fs.Close()
		return ferr
	}
	err = s.db.Close()
	s.fs.Close()
	if err != nil {
		return fmt.Errorf("store %s: %w", s.cfg.Dir, err)
	}
	return nil
}

// quietLogger prints the store's own error lines on stderr (pebble's
// logger is fatalLogger, fault.go).
type quietLogger struct{}

func (quietLogger) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "store: "+format+"\n", args...)
}

// closeFailed closes db after a failure: pebble may end the closing
// goroutine inside Fatalf, or wait on work that will not finish, so it
// closes on a goroutine of its own and is given 5 s.
func closeFailed(db *pebble.DB, f *faults) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { recover() }() // a failed pebble may panic on Close
		db.Close()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		quietLogger{}.Errorf("store %s: closing after the failure did not finish within 5 s; going on", f.dir)
	}
}
