package store

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/sink"
)

// Engine state per part (sink.PartCheckpointer), for the scale-out
// aggregate role's key slots: keys "K" | len(part) part | minute(4) hold a
// part's checkpoint after minute, "C" | len(part) part | minute(4) its
// count record of minute. Checkpoints are keyed by minute so that the
// newest is the last key of the part's range, whatever order they were
// written in.
const (
	tagPartCheckpoint = 'K'
	tagPartCounts     = 'C'
)

// stagedPart is a part's state staged for the open minute.
type stagedPart struct {
	part string
	st   sink.State
}

func partKey(dst []byte, tag byte, part string, m int64) []byte {
	dst = append(dst, tag, byte(len(part)))
	return encode.AppendMinuteKey(append(dst, part...), m)
}

func checkPart(part string) error {
	if part == "" || len(part) > 255 {
		return fmt.Errorf("store: part name %q: want 1..255 bytes", part)
	}
	return nil
}

// StagePartState keeps st for part, to commit with minute m
// (sink.PartCheckpointer); its slices are copied.
func (s *Store) StagePartState(part string, m int64, st sink.State) {
	w := &s.w
	if w.partsMinute != m {
		w.parts, w.partsMinute = w.parts[:0], m
	}
	st.Counts, st.Checkpoint = slices.Clone(st.Counts), slices.Clone(st.Checkpoint)
	w.parts = append(w.parts, stagedPart{part, st})
}

// commitParts adds the parts staged for m to the open batch.
func (w *writer) commitParts(m int64) error {
	if w.partsMinute != m {
		w.parts = w.parts[:0]
		return nil
	}
	for _, p := range w.parts {
		if err := checkPart(p.part); err != nil {
			return err
		}
		if p.st.Counts != nil {
			if err := w.batch.Set(partKey(nil, tagPartCounts, p.part, m), p.st.Counts, nil); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		}
		if p.st.Checkpoint != nil {
			if err := w.batch.Set(partKey(nil, tagPartCheckpoint, p.part, m), p.st.Checkpoint, nil); err != nil {
				return fmt.Errorf("store: %w", err)
			}
			// Older checkpoints of the part are no longer read.
			if err := w.batch.DeleteRange(partKey(nil, tagPartCheckpoint, p.part, 0), partKey(nil, tagPartCheckpoint, p.part, m), nil); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		}
		if p.st.KeepFrom > 0 {
			if err := w.batch.DeleteRange(partKey(nil, tagPartCounts, p.part, 0), partKey(nil, tagPartCounts, p.part, min(p.st.KeepFrom, encode.MaxMinute)), nil); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		}
	}
	w.parts = w.parts[:0]
	return nil
}

// LoadPartState returns part's newest checkpoint (nil if none) and a
// reader of its count records (sink.PartCheckpointer).
func (s *Store) LoadPartState(part string) ([]byte, func(m int64) ([]byte, bool, error), error) {
	if err := checkPart(part); err != nil {
		return nil, nil, err
	}
	lo := partKey(nil, tagPartCheckpoint, part, 0)
	hi := partKey(nil, tagPartCheckpoint, part, encode.MaxMinute)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, nil, fmt.Errorf("store %s: %w", s.cfg.Dir, err)
	}
	var cp []byte
	if it.Last() {
		cp = slices.Clone(it.Value())
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, nil, fmt.Errorf("store %s: %w", s.cfg.Dir, err)
	}
	if cp == nil {
		return nil, nil, nil
	}
	return cp, func(m int64) ([]byte, bool, error) {
		return s.getCopy(partKey(nil, tagPartCounts, part, m))
	}, nil
}

var _ sink.PartCheckpointer = (*Store)(nil)
