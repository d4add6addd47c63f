// Package read is what a feature store answers, shared by every store
// that can be read (the embedded store, Cassandra) and by what reads them
// (serve, the Go client's server side): the answer types, the errors the
// API maps to HTTP statuses, and the Reader interface.
//
// It sits below both sides so that no import runs back up: sink/cassandra
// implements Reader without importing store, and serve reads either.
package read

import (
	"errors"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
)

// Errors of the read API; serve maps them to HTTP statuses (404 for the
// three of them).
var (
	ErrNoMinute       = errors.New("store: no closed minute yet")
	ErrMinuteNotFound = errors.New("store: minute not closed, or past retention")
	ErrUnknownProduct = errors.New("store: unknown product")
)

// MinuteInfo describes a closed minute.
type MinuteInfo struct {
	Minute   int64 // unix minute
	Rows     int   // rows stored for it (all products)
	ClosedMS int64 // wall-clock unix ms when it was committed
}

// Row is one read answer. Features is all zeros with Found=false when the
// cell had no row in the (closed) minute: the engine writes rows for cells
// with a non-zero feature only, so a missing row means zero demand, not
// missing data.
type Row struct {
	Cell     uint64
	Found    bool
	Features []int32
}

// Reader is what the API reads: the embedded store (store.Store) and
// Cassandra (cassandra.Store) implement it.
type Reader interface {
	Definition() feature.Definition
	LatestMinute() (int64, bool)
	Minute(m int64) (MinuteInfo, bool)
	Minutes(dst []MinuteInfo) []MinuteInfo
	Products() []encode.UUID
	HasProduct(u encode.UUID) bool
	Get(dst []int32, minute int64, product encode.UUID, cell uint64) (Row, error)
	GetMany(rows []Row, minute int64, product encode.UUID, cells []uint64) ([]Row, error)
	ScanFeature(minute int64, product encode.UUID, index int, fn func(cell uint64, v int32) bool) error
	Scan(minute int64, product encode.UUID, fn func(cell uint64, features []int32) bool) error
}
