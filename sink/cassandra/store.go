package cassandra

import (
	"cmp"
	"context"
	"fmt"
	"log"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/read"
)

// Store answers serve's queries (it satisfies serve.Reader) from what a
// Sink wrote, as the embedded store answers them from its directory: the
// same minutes, products, rows and errors (read.ErrNoMinute,
// read.ErrMinuteNotFound, read.ErrUnknownProduct).
//
// The closed minutes come from the minutes table (a minute is listed once
// its rows are all written), newest first, those within the TTL of the
// newest (the store's retention rule, on event time); the list is read
// again at most every StoreOptions.Refresh. Products are those of the
// listed minutes, in order of first appearance (the store's code order
// while no code has been reused). Reads go to the partitions the minutes
// row names, so a cell whose region has no rows costs no query.
//
// Differences from the embedded store: a minute whose rows expire (TTL,
// wall clock) during a read may answer zeros for them; Products forgets a
// product once no listed minute has rows of it.
type Store struct {
	sess    *gocql.Session
	own     bool
	cfg     Config
	name    string
	def     feature.Definition
	nf      int
	r       *Reader
	opt     StoreOptions
	list    string
	scanQ   string
	refresh sync.Mutex
	snap    atomic.Pointer[snapshot]
}

// StoreOptions tune a Store.
type StoreOptions struct {
	// Refresh is how stale the list of minutes may be (default 1s: one
	// small query a second however many requests come).
	Refresh time.Duration
	// Timeout bounds one read (default 5s).
	Timeout time.Duration
	// Logf receives failures to refresh the list (the last list stays).
	// nil: log.Printf.
	Logf func(format string, args ...any)
	// Now is the clock of Refresh. nil: time.Now.
	Now func() time.Time
}

// snapshot is one reading of the minutes table.
type snapshot struct {
	at       time.Time
	minutes  []read.MinuteInfo                 // newest first
	regions  map[int64]map[encode.UUID][]int64 // minute -> product -> its partitions' regions, sorted
	products []encode.UUID
	known    map[encode.UUID]bool
}

// OpenStore connects a session of its own and reads the definition.
//
//	cfg, err := cassandra.ParseURL("cassandra://host/ks?table=features")
//	st, err := cassandra.OpenStore(ctx, cfg, cassandra.StoreOptions{})
//	srv, err := serve.New(serveCfg, st, reg)
//	defer st.Close()
func OpenStore(ctx context.Context, cfg Config, opt StoreOptions) (*Store, error) {
	sess, _, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s, err := NewStore(ctx, sess, cfg, opt)
	if err != nil {
		sess.Close()
		return nil, err
	}
	s.own = true
	return s, nil
}

// NewStore reads through an existing session (e.g. Sink.Session); Close
// leaves it open.
func NewStore(ctx context.Context, sess *gocql.Session, cfg Config, opt StoreOptions) (*Store, error) {
	if opt.Refresh <= 0 {
		opt.Refresh = time.Second
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Second
	}
	if opt.Logf == nil {
		opt.Logf = log.Printf
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Store{sess: sess, cfg: cfg, name: cfg.StateName(), r: NewReader(sess, cfg), opt: opt,
		list:  fmt.Sprintf("SELECT minute, rows, closed_ms, regions FROM %s.%s WHERE name = ? LIMIT ?", cfg.Keyspace, MinutesTable),
		scanQ: fmt.Sprintf("SELECT cell, f FROM %s.%s WHERE product = ? AND minute = ? AND region = ?", cfg.Keyspace, cfg.Table)}
	got, ok, err := readRecord(ctx, sess, newStateStmts(cfg), stateConsistency(cfg.Consistency), s.name, kindDefinition, 0)
	if err != nil {
		return nil, fmt.Errorf("sink cassandra: %s.%s: %w", cfg.Keyspace, StateTable, err)
	}
	s.def = cfg.definition()
	if ok {
		d, err := feature.Parse(string(got))
		if err != nil {
			return nil, fmt.Errorf("sink cassandra: stored definition: %w", err)
		}
		if cfg.Definition.Rings != nil && d.String() != cfg.Definition.String() {
			return nil, fmt.Errorf("sink cassandra: %s.%s (state=%s) holds features of definition %q, not %q", cfg.Keyspace, cfg.Table, s.name, d, cfg.Definition)
		}
		s.def = d
	}
	s.nf = s.def.NumFeatures()
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Close closes the session if the Store opened it.
func (s *Store) Close() error {
	if s.own {
		s.sess.Close()
	}
	return nil
}

// Definition is the feature definition of the stored rows.
func (s *Store) Definition() feature.Definition { return s.def }

// load reads the minutes table into a new snapshot.
func (s *Store) load(ctx context.Context) error {
	ttlMin := int64(s.cfg.TTL / time.Minute)
	iter := s.sess.Query(s.list, s.name, int(max(ttlMin, 1))).Idempotent(true).IterContext(ctx)
	sn := &snapshot{at: s.opt.Now(), regions: map[int64]map[encode.UUID][]int64{}, known: map[encode.UUID]bool{}}
	var (
		mi      read.MinuteInfo
		regions []byte
		derr    error
	)
	for iter.Scan(&mi.Minute, &mi.Rows, &mi.ClosedMS, &regions) {
		if len(sn.minutes) > 0 && mi.Minute < sn.minutes[0].Minute-ttlMin+1 {
			continue // past the retention of the newest (event time)
		}
		sn.minutes = append(sn.minutes, mi)
		byProduct := map[encode.UUID][]int64{}
		if err := decodeRegions(regions, func(p encode.UUID, rs []int64) { byProduct[p] = rs }); err != nil && derr == nil {
			derr = fmt.Errorf("minute %d: %w", mi.Minute, err)
		}
		sn.regions[mi.Minute] = byProduct
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("sink cassandra: list minutes: %w", err)
	}
	if derr != nil {
		return fmt.Errorf("sink cassandra: list minutes: %w", derr)
	}
	// Products in order of first appearance: oldest minute first, UUID
	// order within a minute.
	for i := len(sn.minutes) - 1; i >= 0; i-- {
		byProduct := sn.regions[sn.minutes[i].Minute]
		var fresh []encode.UUID
		for p := range byProduct {
			if !sn.known[p] {
				fresh = append(fresh, p)
			}
		}
		slices.SortFunc(fresh, compareUUID)
		for _, p := range fresh {
			sn.known[p] = true
		}
		sn.products = append(sn.products, fresh...)
	}
	s.snap.Store(sn)
	return nil
}

// current returns the snapshot, read again if older than Refresh.
func (s *Store) current() *snapshot {
	sn := s.snap.Load()
	if s.opt.Now().Sub(sn.at) < s.opt.Refresh {
		return sn
	}
	s.refresh.Lock()
	defer s.refresh.Unlock()
	if sn2 := s.snap.Load(); sn2 != sn {
		return sn2 // refreshed while we waited
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.Timeout)
	defer cancel()
	if err := s.load(ctx); err != nil {
		s.opt.Logf("sink cassandra: serving the list of minutes read at %s: %v", sn.at.Format(time.RFC3339), err)
		cp := *sn
		cp.at = s.opt.Now() // try again after Refresh, not on every request
		s.snap.Store(&cp)
		return &cp
	}
	return s.snap.Load()
}

// LatestMinute is the newest closed minute.
func (s *Store) LatestMinute() (int64, bool) {
	if mins := s.current().minutes; len(mins) > 0 {
		return mins[0].Minute, true
	}
	return 0, false
}

// Minutes appends the closed minutes within the TTL to dst, latest first.
func (s *Store) Minutes(dst []read.MinuteInfo) []read.MinuteInfo {
	return append(dst, s.current().minutes...)
}

// Minute describes closed minute m, if it is listed.
func (s *Store) Minute(m int64) (read.MinuteInfo, bool) {
	mins := s.current().minutes
	i, ok := slices.BinarySearchFunc(mins, m, func(mi read.MinuteInfo, t int64) int { return cmp.Compare(t, mi.Minute) })
	if !ok {
		return read.MinuteInfo{}, false
	}
	return mins[i], true
}

// Products lists the products of the listed minutes.
func (s *Store) Products() []encode.UUID { return slices.Clone(s.current().products) }

// HasProduct reports whether a listed minute has rows of product u.
func (s *Store) HasProduct(u encode.UUID) bool { return s.current().known[u] }

// resolve checks minute and product as the embedded store does and
// returns the product's regions in that minute (nil: no rows).
func (s *Store) resolve(minute int64, product encode.UUID) ([]int64, error) {
	sn := s.current()
	byProduct, ok := sn.regions[minute]
	if !ok {
		if len(sn.minutes) == 0 {
			return nil, read.ErrNoMinute
		}
		return nil, fmt.Errorf("%w: %s", read.ErrMinuteNotFound, encode.MinuteStart(minute).Format("2006-01-02T15:04:05Z"))
	}
	if !sn.known[product] {
		return nil, fmt.Errorf("%w: %s", read.ErrUnknownProduct, product)
	}
	return byProduct[product], nil
}

func (s *Store) zero(dst []int32) []int32 {
	dst = slices.Grow(dst[:0], s.nf)[:s.nf]
	clear(dst)
	return dst
}

// Get reads the row of (minute, product, cell); absent rows are zeros
// with Found false.
func (s *Store) Get(dst []int32, minute int64, product encode.UUID, cell uint64) (read.Row, error) {
	rows, err := s.GetMany([]read.Row{{Features: dst}}, minute, product, []uint64{cell})
	if err != nil {
		return read.Row{}, err
	}
	return rows[0], nil
}

// GetMany reads the rows of cells for (minute, product), in the order of
// cells, into rows (reused when large enough): one query per region that
// has rows in that minute (Reader.Get), none for the others.
func (s *Store) GetMany(rows []read.Row, minute int64, product encode.UUID, cells []uint64) ([]read.Row, error) {
	regions, err := s.resolve(minute, product)
	if err != nil {
		return rows, err
	}
	rows = slices.Grow(rows[:0], len(cells))[:len(cells)]
	var ask []uint64
	for _, c := range cells {
		if _, ok := slices.BinarySearch(regions, int64(region(c, s.cfg.RegionResolution))); ok {
			ask = append(ask, c)
		}
	}
	found := map[uint64][]int32{}
	if len(ask) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), s.opt.Timeout)
		got, err := s.r.Get(ctx, minute, product, ask)
		cancel()
		if err != nil {
			return rows, err
		}
		for _, r := range got {
			if r.Found {
				found[r.Cell] = r.Features
			}
		}
	}
	for i, c := range cells {
		r := &rows[i]
		r.Cell = c
		if f, ok := found[c]; ok {
			r.Found, r.Features = true, append(r.Features[:0], f...)
		} else {
			r.Found, r.Features = false, s.zero(r.Features)
		}
	}
	return rows, nil
}

// Scan calls fn with every row of (minute, product) in cell order until
// fn returns false. features is only valid during the call.
func (s *Store) Scan(minute int64, product encode.UUID, fn func(cell uint64, features []int32) bool) error {
	return s.scan(minute, product, encode.RowsDecoder(fn))
}

// ScanFeature calls fn with feature index of every row of (minute,
// product) in cell order until fn returns false.
func (s *Store) ScanFeature(minute int64, product encode.UUID, index int, fn func(cell uint64, v int32) bool) error {
	if index < 0 || index >= s.nf {
		return fmt.Errorf("store: feature index %d out of range 0..%d", index, s.nf-1)
	}
	return s.scan(minute, product, encode.FeatureDecoder(index, fn))
}

// scanWorkers bounds a scan's concurrent partition reads: a dense metro
// minute has ~160 partitions per product; 8 at a time keep a scan to ~20
// round trips without flooding the cluster for one map request.
const scanWorkers = 8

type cellValue struct {
	cell uint64
	v    []byte
}

// scan reads every partition of (minute, product) (at most scanWorkers at
// a time), then calls fn in cell order.
func (s *Store) scan(minute int64, product encode.UUID, fn func(cell uint64, v []byte) (bool, error)) error {
	regions, err := s.resolve(minute, product)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.Timeout)
	defer cancel()
	parts := make([][]cellValue, len(regions))
	errs := make([]error, len(regions))
	sem := make(chan struct{}, scanWorkers)
	var wg sync.WaitGroup
	for i, reg := range regions {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			iter := s.sess.Query(s.scanQ, gocql.UUID(product), minute, reg).Idempotent(true).IterContext(ctx)
			var (
				cell int64
				v    []byte
			)
			for iter.Scan(&cell, &v) {
				parts[i] = append(parts[i], cellValue{uint64(cell), v})
				v = nil // Scan reuses nothing, but be explicit: each value is kept
			}
			errs[i] = iter.Close()
		})
	}
	wg.Wait()
	var all []cellValue
	for i := range parts {
		if errs[i] != nil {
			return fmt.Errorf("sink cassandra: scan: %w", errs[i])
		}
		all = append(all, parts[i]...)
	}
	slices.SortFunc(all, func(a, b cellValue) int { return cmp.Compare(a.cell, b.cell) })
	for _, cv := range all {
		more, err := fn(cv.cell, cv.v)
		if err != nil {
			return fmt.Errorf("sink cassandra: cell %x: %w", cv.cell, err)
		}
		if !more {
			break
		}
	}
	return nil
}

// Store answers the API as the embedded store does.
var _ read.Reader = (*Store)(nil)
