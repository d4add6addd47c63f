package pipeline

import (
	"bytes"

	"github.com/cespare/xxhash/v2"

	"github.com/demandpipe/demandpipe/dedup"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/h3batch"
)

// batch is the unit that flows through every stage: a chunk of whole input
// lines, then its projected events (columns), then which of them count and
// their cells. Batches are pooled, so after warm-up no stage allocates.
type batch struct {
	seq       uint64
	buf       []byte // whole lines
	firstLine int64  // 1-based number of the first line in buf
	// pos is the input offset (decompressed bytes) of buf[0]; endPos and
	// endLine are where the next line starts: a resume position.
	pos, endPos, endLine int64
	readAt               int64 // when the reader handed it out (unix ns)
	tooLong              []tooLong
	idle                 bool  // no input: a clock tick (wall ms in now)
	now                  int64 // wall ms, idle batches only
	eof                  bool  // last batch

	// parse stage
	ts       []int64
	lat, lng []float64
	prod     []byte
	hash     []uint64 // dedup.Mix(rkey, product)
	rkey     []uint64 // xxhash of the rider id: the rider clock's key
	rcheck   []uint64 // dedup.CheckOf the rider id
	riderOff []uint32
	riders   []byte
	rejects  []reject
	blank    int64
	lines    int64
	// where each event's line is (for the rejects file: an event the
	// sequencer rejects later, as future, is written with its text)
	evLine         []int64
	evStart, evEnd []int32
	newProds       []newProd // events whose product had no code at parse time
	gen            uint64    // the product registry's generation at parse time

	// sequence stage
	endRejects  []aheadEvent // eof: counted events the final close leaves out (future)
	heldRejects []heldReject // events that waited for their product in vain (hold.go)
	counted     []int32      // indices of counted events
	minute      []int64      // per counted event
	frontier    int64        // minutes <= frontier are closed after this batch
	final       int64        // eof: close through this minute
	hasFinal    bool
	resume      *seqState // where a restart after the close this batch triggers resumes (checkpoint.go)
	finalResume *seqState // eof: the same for the final close

	// locate stage
	cells      []uint64   // per counted event, at the definition's resolution; 0 = H3 error
	more       [][]uint64 // the same at each further resolution of a run's definitions (Engine.resolutions[1:])
	clat, clng []float64

	parsed, located chan struct{}
}

type newProd struct {
	idx  int32
	uuid encode.UUID
}

type reject struct {
	line       int64
	reason     encode.Reason
	start, end int32 // in buf; end < 0 for a too-long line (prefix kept in tooLong)
}

type tooLong struct {
	line   int64
	prefix []byte
}

func newBatch() *batch {
	return &batch{parsed: make(chan struct{}, 1), located: make(chan struct{}, 1)}
}

func (b *batch) reset() {
	b.buf = b.buf[:0]
	b.tooLong = b.tooLong[:0]
	b.idle, b.eof, b.hasFinal = false, false, false
	b.resume, b.finalResume = nil, nil
	b.ts, b.lat, b.lng, b.prod, b.hash, b.rkey, b.rcheck = b.ts[:0], b.lat[:0], b.lng[:0], b.prod[:0], b.hash[:0], b.rkey[:0], b.rcheck[:0]
	b.riderOff, b.riders, b.rejects = b.riderOff[:0], b.riders[:0], b.rejects[:0]
	b.blank, b.lines = 0, 0
	b.counted, b.minute, b.cells = b.counted[:0], b.minute[:0], b.cells[:0]
	for i := range b.more {
		b.more[i] = b.more[i][:0]
	}
	b.evLine, b.evStart, b.evEnd = b.evLine[:0], b.evStart[:0], b.evEnd[:0]
	b.newProds = b.newProds[:0]
	clear(b.endRejects)
	b.endRejects = b.endRejects[:0]
	clear(b.heldRejects)
	b.heldRejects = b.heldRejects[:0]
}

func (b *batch) rider(i int) []byte { return b.riders[b.riderOff[i]:b.riderOff[i+1]] }

// parse projects every line of the batch (parse stage; runs in parallel
// across batches).
func (b *batch) parse(p *encode.Projector, products *encode.Products, maxLine int, allow map[encode.UUID]string) {
	var ev encode.Event
	b.gen = products.Gen()
	b.riderOff = append(b.riderOff, 0)
	buf := b.buf
	line := b.firstLine
	for start := 0; start < len(buf); line++ {
		end := bytes.IndexByte(buf[start:], '\n')
		if end < 0 {
			end = len(buf)
		} else {
			end += start
		}
		l := buf[start:end]
		s := start
		start = end + 1
		if isBlank(l) {
			b.blank++
			continue
		}
		b.lines++
		r := encode.LineTooLong
		if len(l) <= maxLine {
			r = p.Project(l, &ev)
		}
		// A product seen for the first time gets its code from the
		// sequencer, in arrival order (so the limit of 256 codes meets the
		// same product whatever the parallelism).
		code, known := byte(0), true
		if r == encode.OK {
			code, known = products.Lookup(ev.Product)
			if _, ok := allow[ev.Product]; !known && allow != nil && !ok {
				r = encode.UnknownProduct // a map probe only for a product without a code yet
			}
		}
		if r != encode.OK {
			b.rejects = append(b.rejects, reject{line: line, reason: r, start: int32(s), end: int32(end)})
			continue
		}
		if !known {
			b.newProds = append(b.newProds, newProd{idx: int32(len(b.ts)), uuid: ev.Product})
		}
		b.ts = append(b.ts, ev.TS)
		b.lat = append(b.lat, ev.Lat)
		b.lng = append(b.lng, ev.Lng)
		b.prod = append(b.prod, code)
		rk := xxhash.Sum64(ev.Rider)
		b.rkey = append(b.rkey, rk)
		b.rcheck = append(b.rcheck, dedup.CheckOf(ev.Rider))
		b.hash = append(b.hash, dedup.Mix(rk, code))
		b.riders = append(b.riders, ev.Rider...)
		b.riderOff = append(b.riderOff, uint32(len(b.riders)))
		b.evLine = append(b.evLine, line)
		b.evStart = append(b.evStart, int32(s))
		b.evEnd = append(b.evEnd, int32(end))
	}
	for _, t := range b.tooLong {
		b.lines++
		b.rejects = append(b.rejects, reject{line: t.line, reason: encode.LineTooLong, end: -1})
	}
}

func isBlank(l []byte) bool {
	for _, c := range l {
		if c != ' ' && c != '\t' && c != '\r' {
			return false
		}
	}
	return true
}

// locate computes the cell of every counted event (locate stage; parallel)
// at res[0], and at each further resolution of the run's definitions into
// more. Only counted events pay for H3, in one cgo call per batch and
// resolution. A coarser definition's cells are located again rather than
// taken as parents of finer ones: H3 is not exactly hierarchical, and the
// parent of a point's res-9 cell is not its res-8 cell for 7.1% of points
// (measured over New York), so parents would change a definition's rows.
func (b *batch) locate(l *h3batch.Locator, res []int) (errs int64) {
	b.clat, b.clng = b.clat[:0], b.clng[:0]
	for _, i := range b.counted {
		b.clat = append(b.clat, b.lat[i])
		b.clng = append(b.clng, b.lng[i])
	}
	var n int
	b.cells, n = l.Cells(b.clat, b.clng, res[0], b.cells[:0])
	errs = int64(n)
	for len(b.more) < len(res)-1 {
		b.more = append(b.more, nil)
	}
	for i, r := range res[1:] {
		b.more[i], n = l.Cells(b.clat, b.clng, r, b.more[i][:0])
		errs += int64(n)
	}
	return errs
}

// cellsAt is the counted events' cells at the run's ri-th resolution.
func (b *batch) cellsAt(ri int) []uint64 {
	if ri == 0 {
		return b.cells
	}
	return b.more[ri-1]
}
