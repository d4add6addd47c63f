package pipeline

import (
	"math"

	"github.com/demandpipe/demandpipe/dedup"
)

const noMinute = math.MinInt64 / 4

// sequencer applies the watermark, lateness and dedup in arrival order. It is
// the one stage that must see events one at a time in order; it does only a
// compare and a hash-table probe per event (~30 ns), so it keeps up with
// several parse workers.
type sequencer struct {
	lateness int64 // ms
	idle     int64 // ms
	dedup    *dedup.Table
	haveTS   bool
	maxTS    int64
	frontier int64 // minutes <= frontier are closed
	// idle clock: event time advances with the wall clock while no input
	// arrives; anchored at the last event.
	lastEventWall int64
	anchorTS      int64
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func minuteOf(ts int64) int64 { return floorDiv(ts, 60000) }

// advance raises the largest ts and closes the minutes it passes.
func (s *sequencer) advance(ts int64) {
	if s.haveTS && ts <= s.maxTS {
		return
	}
	s.haveTS = true
	s.maxTS = ts
	if f := floorDiv(ts-s.lateness, 60000) - 1; f > s.frontier {
		s.frontier = f
		s.dedup.Release(f)
	}
}

// sequence marks the counted events of b (in order) and stamps the frontier.
func (s *sequencer) sequence(b *batch, st *Stats, wallNow int64) {
	if b.idle {
		if s.haveTS && wallNow-s.lastEventWall >= s.idle {
			s.advance(s.anchorTS + (wallNow - s.lastEventWall))
		}
	}
	var late, dups int64
	for i, ts := range b.ts {
		m := minuteOf(ts)
		if m <= s.frontier {
			late++
			continue
		}
		if s.dedup.First(m, b.prod[i], b.hash[i], b.rider(i)) {
			b.counted = append(b.counted, int32(i))
			b.minute = append(b.minute, m)
		} else {
			dups++
		}
		s.advance(ts)
	}
	if int64(len(b.ts)) > late {
		s.lastEventWall = wallNow
		s.anchorTS = s.maxTS
	}
	b.frontier = s.frontier
	if b.eof && s.haveTS {
		b.final, b.hasFinal = minuteOf(s.maxTS), true
	}
	st.Late.Add(late)
	st.Duplicates.Add(dups)
	st.Counted.Add(int64(len(b.counted)))
	if s.haveTS {
		st.MaxTS.Store(s.maxTS)
	}
}
