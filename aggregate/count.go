package aggregate

import (
	"github.com/demandpipe/demandpipe/internal/cellindex"
)

// Counted is where dedup meets aggregation: one event that counts, as the
// count stage sees it. Everything before it (parsing, the watermark, dedup,
// H3) is about deciding which events these are; everything after it (the
// close) is sums of them. A process that only dedups can hand these on
// (a few bytes each) to processes that only aggregate.
type Counted struct {
	Minute  int64  // unix minute
	Cell    uint64 // H3 cell at the definition's resolution
	Product byte   // the run's product code
}

// counter counts events per open minute (the count stage, on its own
// goroutine) and hands minutes to the closer as CloseRequests. It owns its
// fields; it shares with the closer only the free list of minuteCounts.
type counter struct {
	open        []*minuteCounts
	first       int64 // smallest minute counted before the first close request
	sent        int64 // through of the last close request
	free        chan *minuteCounts
	dropThrough int64 // after a resume: minutes <= it are committed already
	last        *minuteCounts
	received    int64 // read time of the batch being counted (unix ns)
}

func newCounter(free chan *minuteCounts) *counter {
	return &counter{first: NoMinute, sent: NoMinute, free: free, dropThrough: NoMinute}
}

// add counts one event.
func (a *counter) add(c Counted) { a.addN(c, 1) }

// addN counts n events like c.
func (a *counter) addN(c Counted, n int32) {
	if c.Minute <= a.dropThrough {
		return // committed before a restart: re-read, not re-counted
	}
	mc := a.last
	if mc == nil || mc.minute != c.Minute {
		mc = a.counts(c.Minute)
		a.last = mc
	}
	ix := mc.cells[c.Product]
	if ix == nil {
		ix = cellindex.New(1024)
		mc.cells[c.Product] = ix
	}
	k := ix.Insert(c.Cell)
	if int(k) == len(mc.counts[c.Product]) {
		mc.counts[c.Product] = append(mc.counts[c.Product], 0)
	}
	mc.counts[c.Product][k] += n
	mc.received = a.received
}

// resumeAt makes closed the last closed minute (after a restore).
func (a *counter) resumeAt(closed int64) {
	a.sent, a.first, a.dropThrough = closed, closed+1, closed
}

func (a *counter) counts(m int64) *minuteCounts {
	for _, mc := range a.open {
		if mc.minute == m {
			return mc
		}
	}
	var mc *minuteCounts
	select {
	case mc = <-a.free:
	default:
		mc = &minuteCounts{}
	}
	mc.minute = m
	a.open = append(a.open, mc)
	if a.first == NoMinute || m < a.first {
		a.first = m
	}
	return mc
}

// request takes the counts of every minute up to through out of the open
// set; ok is false when there is nothing new to close.
func (a *counter) request(through, clock int64, resume Resume) (CloseRequest, bool) {
	if a.first == NoMinute || through <= a.sent {
		return CloseRequest{}, false
	}
	a.sent = through
	a.last = nil // its minute may go to the closer now
	req := CloseRequest{through: through, clock: min(clock, through), first: a.first, resume: resume}
	keep := a.open[:0]
	for _, mc := range a.open {
		if mc.minute <= through {
			req.counts = append(req.counts, mc)
		} else {
			keep = append(keep, mc)
		}
	}
	clear(a.open[len(keep):])
	a.open = keep
	return req, true
}
