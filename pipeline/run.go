package pipeline

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/dedup"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/sink"
)

// Engine runs the stages:
//
//	read -> parse (N workers) -> sequence (1) -> locate (N workers) -> aggregate (1) -> sink
//
// read cuts the input into chunks of whole lines; parse projects them (the
// bulk of the CPU: JSON scanning); sequence applies watermark, lateness and
// dedup in arrival order; locate computes H3 cells of counted events only;
// aggregate counts per open minute and closes minutes. Order between the
// parallel stages is restored by waiting on batches in sequence, so the
// output is a function of the input's arrival order alone, whatever the
// parallelism.
type Engine struct {
	cfg      Config
	Products *encode.Products
	Stats    Stats
	// Rejects, if set, receives every rejected line as one JSON object
	// per line: {"line":N,"reason":"…","text":"…"}.
	Rejects io.Writer
	// Identity names the input (source.File.Identity), recorded in
	// checkpoints so that a resume never continues another input.
	Identity string
	// Durable, if set, is told, on the close goroutine, the input position
	// (decompressed byte offset) before which no event will ever be needed
	// again, each time a checkpoint commits: positions only grow. This is
	// the acknowledgement a source that can let input go (a message
	// broker) needs; with a sink that keeps no checkpoint it is never
	// called: nothing would survive a restart.
	Durable func(pos int64)

	// ExtraSinks receive the rows of Config.Extra, one sink per definition
	// in order; they must keep no state (sink.Checkpointer): a resume
	// restores only the run's definition for now (issue 23).
	ExtraSinks []sink.Writer
	// ExtraStats are the count and close counters of Config.Extra's
	// definitions (Stats holds the run's definition's).
	ExtraStats []aggregate.Stats

	// Emit, if set, makes Run the dedup role of a scale-out (roles.go):
	// counted events and watermarks go to Emit instead of being counted,
	// and the sink is not used (it may be nil).
	Emit CountedWriter
	// OnClose, if set, is told each minute closed (committed by the sink),
	// its rows and how long the close took, on the close goroutine: the
	// command logs one line per minute with it.
	OnClose func(minute, rows int64, took time.Duration)

	// observeClose feeds the latency histograms (RegisterMetrics).
	observeClose func(minute int64, took time.Duration, received int64)
	clock        func() time.Time // the run's event-time clock (the source's, or Config.Now)

	// resume (Resume): where Run starts and the state it restores
	startPos, startLine int64
	resume              *checkpoint
	resumeCounts        func(m int64) ([]byte, bool, error)
	// extraResume: where each further definition resumes (its own sink's
	// checkpoint, or a backfill from another's), when Resume found them
	extraResume []defResume
	// Backfills are the definitions Run started from another's count
	// records (a definition added to a running deployment), once Run has
	// begun; for the log.
	Backfills []Backfill
	// OnBackfill, if set, is told each backfill as it ends (before the
	// first batch is read).
	OnBackfill func(Backfill)
	// resumeClosed: the run's definition's last committed minute (the
	// resume point's, unless an earlier definition's checkpoint is it)
	resumeClosed int64
}

// New builds an engine.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Engine{cfg: cfg, Products: encode.NewProducts(), startLine: 1, ExtraStats: make([]aggregate.Stats, len(cfg.Extra))}, nil
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// Run reads src to its end (or until ctx is done), writing rows to snk.
// At the end of input every minute up to the minute of the largest ts is
// closed. When ctx is cancelled Run stops reading, closes nothing further
// and returns ctx's error after the batches in flight are counted: a
// caller that wants the final minutes on shutdown ends the source instead
// (see source.Gen's Stop) so that Run sees end of input.
func (e *Engine) Run(ctx context.Context, src io.Reader, snk sink.Writer) error {
	cfg := e.cfg
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	dc := cfg.Dedup
	dc.MaxBytes = dedupShare(cfg.MaxMemory)
	dt, err := dedup.New(dc)
	if err != nil {
		return err
	}
	l, ok := src.(interface{ Live() bool })
	live := ok && l.Live()
	fr := cfg.Future.rule()
	fr.maxBytes = seqShare(cfg.MaxMemory)
	seq := newSequencer(cfg.Lateness.Milliseconds(), cfg.IdleTimeout.Milliseconds(), dt, fr, e.Products, slices.Max(cfg.Def.Windows))
	aggs, err := e.newLocalAggregators(ctx, src, snk, seq)
	if err != nil {
		return err
	}
	var rejects *bufio.Writer
	if e.Rejects != nil {
		rejects = bufio.NewWriterSize(e.Rejects, 64<<10)
	}

	// The stages (stages.go), in the order data meets them, each on its
	// own goroutine(s), joined by bounded queues.
	n := cfg.Parallelism
	q := newQueues(4*n + 4) // batches in flight: bounds memory to that many chunks
	sv := &supervisor{cancel: cancel}
	rd := &reader{e: e, src: src}
	// The source says what time it is in event time, when it knows better
	// than the wall clock (the generator runs event time faster with
	// speed): idle progress and the clock bound on ts (future) follow it.
	now := cfg.Now
	if c, ok := src.(interface{ EventClock() time.Time }); ok {
		now = c.EventClock
	}
	e.clock = now
	disp := &dispatcher{idle: cfg.IdleTimeout, now: now}
	parse := &parserPool{n: n, products: e.Products, maxLine: cfg.MaxLineBytes, allow: cfg.Products}
	sq := &sequenceStage{seq: seq, stats: &e.Stats, now: now, rejects: rejects, flushEach: live, fail: sv.fail}
	res, resOf := cfg.resolutions()
	loc := &locatorPool{n: n, res: res, stats: &e.Stats}
	em := &emitStage{products: e.Products, fail: sv.fail}
	if e.Emit != nil {
		// The dedup role: its counted events leave the process.
		cp := e.checkpointer(src)
		closed := int64(aggregate.NoMinute)
		if e.resume != nil {
			closed = e.resume.closed
			e.Stats.Closed.Store(closed)
		}
		em.outs = []*emitOut{newEmitOut(e.Emit, 0, &cp, closed)}
		em.durable, em.closed = e.Durable, &e.Stats.Closed
		em.fail = func(err error) { sv.fail(fmt.Errorf("dedup role: %w", err)) }
	} else {
		// The single process: each definition counts and closes here.
		for k, a := range aggs {
			cfgK := cfg
			if k > 0 {
				cfgK = cfg.forDef(cfg.Extra[k-1])
			}
			cp := e.checkpointer(src)
			cp.config = cfgK.configKey() // each definition's checkpoint names its own
			w := &localWriter{ctx: ctx, local: a, closeQ: q.close}
			em.outs = append(em.outs, newEmitOut(w, resOf[k], &cp, aggregate.NoMinute))
		}
	}
	cls := &closeStage{fail: sv.fail}

	// The reader is not waited for after a failure: a Read blocked on a
	// quiet pipe must not hold up the error (it ends at its next Read).
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(q.chunks)
		if err := rd.run(ctx, q.free, q.chunks); err != nil {
			sv.fail(err)
		}
	}()
	sv.spawn(func() { disp.run(ctx, q) })
	parse.spawn(sv, q.parse)
	sv.spawn(func() { sq.run(ctx, q.seq, q.count, q.loc) })
	loc.spawn(sv, q.loc)
	emitAndClose(ctx, em, cls, sv, q, readDone)
	fail := sv.err()
	if rejects != nil {
		if err := rejects.Flush(); err != nil && fail == nil {
			fail = fmt.Errorf("rejects file: %w", err)
		}
	}
	if fail != nil {
		return fail
	}
	return context.Cause(ctx)
}

// newLocalAggregators builds the count and close of the run's definition
// (newLocalAggregator) and of each further definition (Config.Extra) on its
// sink.
func (e *Engine) newLocalAggregators(ctx context.Context, src io.Reader, snk sink.Writer, seq *sequencer) ([]*aggregate.Local, error) {
	if len(e.ExtraSinks) != len(e.cfg.Extra) {
		return nil, fmt.Errorf("pipeline: %d further definitions and %d sinks for them", len(e.cfg.Extra), len(e.ExtraSinks))
	}
	if len(e.cfg.Extra) > 0 && e.Emit != nil {
		return nil, errors.New("pipeline: the dedup role computes no definition: give the definitions to the aggregate role")
	}
	_, keeps := snk.(sink.Checkpointer)
	for k, d := range e.cfg.Extra {
		if _, ok := e.ExtraSinks[k].(sink.Checkpointer); ok != keeps {
			return nil, fmt.Errorf("definition %s: its sink keeps state and the first definition's does not, or the other way round: give every definition the same kind of sink, so that a restart resumes all of them", d.Name)
		}
	}
	agg, err := e.newLocalAggregator(ctx, snk, seq)
	if err != nil {
		return nil, err
	}
	aggs := []*aggregate.Local{agg}
	var start time.Time
	for k, d := range e.cfg.Extra {
		ac := e.cfg.forDef(d).Aggregate()
		ac.MaxMemory = e.cfg.closeShare() // the definitions share what dedup leaves
		a, err := aggregate.NewLocal(ac, e.Products, e.ExtraSinks[k], &e.ExtraStats[k])
		if err != nil {
			return nil, fmt.Errorf("definition %s: %w", d.Name, err)
		}
		if k < len(e.extraResume) {
			start = time.Now()
			r := e.extraResume[k]
			if r.from != nil {
				if err := e.backfill(ctx, src, a, d, r); err != nil {
					return nil, err
				}
			} else if err := a.Restore(ctx, r.closed, r.counts); err != nil {
				return nil, fmt.Errorf("resume definition %s: %w", d.Name, err)
			}
			e.ExtraStats[k].RestoreNanos.Store(int64(time.Since(start)))
		}
		aggs = append(aggs, a)
	}
	if len(aggs) > 1 && e.Durable != nil {
		e.shareDurable(aggs)
	}
	return aggs, nil
}

// shareDurable reports an input position durable only once every
// definition's sink has committed a checkpoint at or past it: a restart
// resumes from the earliest of their checkpoints, so the source must keep
// the input from there.
func (e *Engine) shareDurable(aggs []*aggregate.Local) {
	at := make([]int64, len(aggs))
	for k := range at {
		at[k] = -1
	}
	reported := int64(-1)
	for k, a := range aggs {
		a.OnDurable(func(pos int64) { // all on the close goroutine
			at[k] = max(at[k], pos)
			if low := slices.Min(at); low > reported {
				reported = low
				e.Durable(low)
			}
		})
	}
}

// newLocalAggregator builds the single process's count and close on snk
// with the run's callbacks, and restores the sequencer and the windows from
// a resume checkpoint.
func (e *Engine) newLocalAggregator(ctx context.Context, snk sink.Writer, seq *sequencer) (*aggregate.Local, error) {
	agg, err := aggregate.NewLocal(e.cfg.Aggregate(), e.Products, snk, &e.Stats.Stats)
	if err != nil {
		return nil, err
	}
	agg.OnDurable(e.Durable)
	if e.OnClose != nil || e.observeClose != nil {
		agg.OnClose(func(m, rows int64, took time.Duration, received int64) {
			if e.observeClose != nil {
				e.observeClose(m, took, received)
			}
			if e.OnClose != nil {
				e.OnClose(m, rows, took)
			}
		})
	}
	if cp := e.resume; cp != nil {
		start := time.Now()
		seq.restore(&cp.seq)
		if e.Emit == nil {
			if err := agg.Restore(ctx, e.resumeClosed, e.resumeCounts); err != nil {
				return nil, fmt.Errorf("resume: %w", err)
			}
		}
		e.Stats.RestoreNanos.Store(int64(time.Since(start)))
	}
	return agg, nil
}

// checkpointer assembles this run's checkpoints over src: its identity,
// the settings a resume must match, and src's cursor when it has one.
func (e *Engine) checkpointer(src io.Reader) checkpointer {
	cp := checkpointer{identity: e.Identity, config: e.cfg.configKey(), products: e.Products}
	if c, ok := src.(Cursored); ok {
		cp.cursor = c.Cursor
	}
	return cp
}

// emitAndClose is the tail of the run, on this goroutine: hand the located
// batches on (emitStage) while the close stage closes the minutes the
// single process's watermarks pass, on its own goroutine (the dedup role
// asks it for none); then, once ingest has ended without a failure, hand
// on the end of input's watermark.
func emitAndClose(ctx context.Context, em *emitStage, cls *closeStage, sv *supervisor, q *queues, readDone <-chan struct{}) {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		cls.run(ctx, q.close)
	}()
	em.run(ctx, q.count, q.free)
	sv.wg.Wait()
	if ctx.Err() == nil {
		<-readDone // chunks is closed: the reader has returned or is returning
		if err := em.finish(); err != nil {
			em.fail(err)
		}
	}
	close(q.close)
	<-closed
}

// read (the reader stage) fills batches with whole lines. A line longer than MaxLineBytes ends
// its batch: its first bytes are kept for the rejects file and the rest is
// skipped as it is read, so memory stays bounded by MaxLineBytes plus a
// chunk however long the line is, and the lines after it are untouched.
// A UTF-8 byte-order mark at the start of the input is dropped.
func (e *Engine) read(ctx context.Context, src io.Reader, free chan *batch, out chan<- *batch) error {
	l, ok := src.(interface{ Live() bool })
	c := &chunker{cfg: e.cfg, src: src, stats: &e.Stats, live: ok && l.Live(),
		line: e.startLine, next: e.startPos, streamOff: e.startPos}
	if err := e.seekStart(src); err != nil {
		return err
	}
	for !c.eof {
		var b *batch
		select {
		case b = <-free:
		case <-ctx.Done():
			return nil
		}
		if err := c.fill(b); err != nil {
			return err
		}
		if len(b.buf) == 0 && len(b.tooLong) == 0 && !c.eof {
			free <- b // the pool has room for every batch: never blocks
			continue
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// seekStart positions src at the resume point: the source goes there
// itself when it has cursors (a message broker: the messages after the
// cursor's); else the input up to it, read by the run that wrote the
// checkpoint, is skipped (a seekable source could seek instead; this also
// works through gzip and zstd).
func (e *Engine) seekStart(src io.Reader) error {
	if c, ok := src.(Cursored); ok && e.resume != nil {
		if err := c.ResumeAt(e.startPos, e.resume.cursor); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
	} else if e.startPos > 0 {
		if _, err := io.CopyN(io.Discard, src, e.startPos); err != nil {
			return fmt.Errorf("resume: skipping to input offset %d: %w (is it the same input?)", e.startPos, err)
		}
	}
	return nil
}

// chunker cuts the input into batches of whole lines (Engine.read).
type chunker struct {
	cfg       Config
	src       io.Reader
	stats     *Stats
	live      bool
	line      int64  // number of the next line
	next      int64  // input offset of the next batch's first byte
	streamOff int64  // bytes read from src so far (src starts at the resume offset)
	carry     []byte // partial line carried to the next chunk
	skipping  bool   // inside an over-long line: drop bytes up to its end
	bomDone   bool
	eof       bool
}

// fill reads into b up to a chunk of whole lines (or what a live source has
// now, or up to an over-long line, which ends the batch) and sets its
// positions.
func (c *chunker) fill(b *batch) error {
	cfg := c.cfg
	b.reset()
	if cap(b.buf) > 4*cfg.ChunkBytes {
		b.buf = nil // a long line grew it: give the memory back
	}
	b.firstLine = c.line
	b.pos = c.next // stream offset of b.buf[0] (set again below while skipping)
	b.buf = append(b.buf[:0], c.carry...)
	c.carry = c.carry[:0]
	// lineStart is the offset just past the last newline in b.buf.
	lineStart := 0
	cut := false // an over-long line was cut: the batch ends with it
	for !c.eof && (len(b.buf) < cfg.ChunkBytes || lineStart == 0) {
		n, k, err := c.readMore(b)
		if err != nil {
			return err
		}
		if j := bytes.LastIndexByte(b.buf[n:], '\n'); j >= 0 {
			lineStart = n + j + 1
		}
		if len(b.buf)-lineStart > cfg.MaxLineBytes {
			// The line in progress is over the limit: keep a prefix for
			// the rejects file, drop the rest as it arrives.
			lineNo := c.line + int64(bytes.Count(b.buf[:lineStart], newline))
			b.tooLong = append(b.tooLong, tooLong{line: lineNo, prefix: append([]byte(nil), b.buf[lineStart:lineStart+1024]...)})
			b.buf = b.buf[:lineStart]
			c.skipping = !c.eof
			cut = true
			break
		}
		if k > 0 && c.live && lineStart > 0 {
			break // hand over what we have: keeps latency low
		}
	}
	c.line += int64(bytes.Count(b.buf, newline))
	b.endPos, b.endLine = b.pos+int64(len(b.buf)), c.line // after the cut: the long line's start
	switch {
	case cut:
		c.line++ // the over-long line, whole
	case c.eof:
		if len(b.buf) > 0 && b.buf[len(b.buf)-1] != '\n' {
			c.line++
		}
	default:
		// Cut at the last newline; keep the tail for the next chunk.
		c.carry = append(c.carry, b.buf[lineStart:]...)
		b.buf = b.buf[:lineStart]
		b.endPos = b.pos + int64(lineStart)
		c.next = b.endPos
	}
	b.eof = c.eof
	b.readAt = time.Now().UnixNano()
	return nil
}

// readMore appends one read of src to b.buf, dropping what belongs to an
// over-long line being skipped and a byte-order mark at the start of the
// input. n is where the new bytes start in b.buf, k how many were kept.
func (c *chunker) readMore(b *batch) (n, k int, err error) {
	if cap(b.buf)-len(b.buf) < c.cfg.ChunkBytes/4 {
		// Amortised doubling: a long line costs O(its length) in copies,
		// not O(length^2 / chunk).
		b.buf = slices.Grow(b.buf, max(c.cfg.ChunkBytes, len(b.buf)))
	}
	n = len(b.buf)
	k, rerr := c.src.Read(b.buf[n:cap(b.buf)])
	c.stats.Bytes.Add(int64(k))
	c.streamOff += int64(k)
	if c.skipping && k > 0 {
		data := b.buf[n : n+k]
		if j := bytes.IndexByte(data, '\n'); j >= 0 {
			k = copy(b.buf[n:cap(b.buf)], data[j+1:])
			c.skipping = false
			b.pos = c.streamOff - int64(k) // b.buf is empty while skipping
		} else {
			k = 0
		}
	}
	b.buf = b.buf[:n+k]
	if errors.Is(rerr, io.EOF) {
		c.eof = true
	} else if rerr != nil {
		return n, k, fmt.Errorf("read input: %w", rerr)
	}
	if !c.bomDone && (len(b.buf) >= len(utf8BOM) || c.eof) {
		c.bomDone = true
		if bytes.HasPrefix(b.buf, utf8BOM) {
			b.buf = b.buf[:copy(b.buf, b.buf[len(utf8BOM):])]
			b.pos += int64(len(utf8BOM))
			n = 0
		}
	}
	return n, k, nil
}

var (
	utf8BOM = []byte{0xef, 0xbb, 0xbf}
	newline = []byte{'\n'}
)

func writeRejects(w *bufio.Writer, b *batch) error {
	var line []byte
	for _, r := range b.rejects {
		line = append(line[:0], `{"line":`...)
		line = strconv.AppendInt(line, r.line, 10)
		line = append(line, `,"reason":"`...)
		line = append(line, r.reason.String()...)
		line = append(line, `","text":`...)
		var text []byte
		if r.end >= 0 {
			text = bytes.TrimRight(b.buf[r.start:r.end], "\r")
			if r.reason == encode.LineTooLong {
				text = text[:min(len(text), 1024)] // a prefix is enough to find it
			}
		} else {
			for _, t := range b.tooLong {
				if t.line == r.line {
					text = t.prefix
				}
			}
		}
		line = encode.AppendJSONString(line, text)
		line = append(line, "}\n"...)
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	for _, a := range b.endRejects {
		if err := writeTextReject(w, &line, a.line, encode.Future, a.text); err != nil {
			return err
		}
	}
	for _, h := range b.heldRejects {
		if err := writeTextReject(w, &line, h.line, h.reason, h.text); err != nil {
			return err
		}
	}
	return nil
}

// writeTextReject writes the reject of a line kept apart from its batch.
func writeTextReject(w io.Writer, buf *[]byte, n int64, r encode.Reason, text []byte) error {
	line := append((*buf)[:0], `{"line":`...)
	line = strconv.AppendInt(line, n, 10)
	line = append(line, `,"reason":"`...)
	line = append(line, r.String()...)
	line = append(line, `","text":`...)
	line = encode.AppendJSONString(line, text)
	line = append(line, "}\n"...)
	*buf = line
	_, err := w.Write(line)
	return err
}

// Cursored is a source that names positions in its own terms (a message
// broker: message ids), for inputs whose byte offsets do not survive a
// restart. The engine stores the cursor of a checkpoint's position with it
// and hands it back on resume.
type Cursored interface {
	// Cursor names input position pos: a line boundary the engine was
	// handed, at or after the last position told to Engine.Durable. Called
	// on the close goroutine, concurrently with Read.
	Cursor(pos int64) ([]byte, error)
	// ResumeAt is called once, before the first Read, when resuming: the
	// stream continues at pos (offsets count from pos, not 0) with the
	// input just after what cursor names (nil: the source's start).
	ResumeAt(pos int64, cursor []byte) error
}

// ErrNotResumable: the sink's checkpoint is of another input or of other
// settings; the run starts from the beginning instead (stored minutes are
// replaced as they close again).
var ErrNotResumable = errors.New("not resuming")

// Resumed says where a run resumes.
type Resumed struct {
	Minute int64 // the last minute committed before
	Pos    int64 // input offset (decompressed bytes) read from
	Line   int64 // line number at Pos
}

// Resume prepares Run to continue the run whose checkpoint the sink holds:
// windows restored, input read from the checkpoint's position on (RECOVERY.md).
// It returns nil when the sink holds no checkpoint. identity names the input
// (it must be the checkpoint's); the definition and the knobs that change
// results must be the same too.
//
// With further definitions (Config.Extra, whose sinks ExtraSinks must be
// set first), each definition's sink holds its own checkpoint: the run
// reads the input from the earliest of them, and each definition restores
// its windows from its own and counts only minutes after it. Replaying the
// input from an earlier point makes the same decisions as the first run
// (RECOVERY.md), so every definition's rows equal an uninterrupted run's.
func (e *Engine) Resume(snk sink.Checkpointer, identity string) (*Resumed, error) {
	raw, counts, err := snk.LoadState()
	if err != nil {
		return nil, err
	}
	if len(e.cfg.Extra) > 0 {
		return e.resumeDefs(raw, counts, identity)
	}
	if raw == nil {
		return nil, nil
	}
	return e.resumeFrom(raw, counts, identity)
}

// defResume is where one definition resumes: its last committed minute and
// its sink's count records.
type defResume struct {
	closed int64
	counts func(m int64) ([]byte, bool, error)
	// from, when set, is the definition whose count records this one is
	// backfilled from (it has no checkpoint of its own)
	from     *checkpoint
	fromName string
	fromMaxW int
}

// Backfill says how a definition was started from another's counts.
type Backfill struct {
	Name, From    string
	First, Closed int64 // minutes whose rows were written from the counts
	Took          time.Duration
}

// resumeDefs is Resume with further definitions: every sink's checkpoint
// is checked against its definition, and the earliest becomes the run's
// resume point.
func (e *Engine) resumeDefs(raw []byte, counts func(m int64) ([]byte, bool, error), identity string) (*Resumed, error) {
	if len(e.ExtraSinks) != len(e.cfg.Extra) {
		return nil, fmt.Errorf("resume: %d further definitions and %d sinks for them", len(e.cfg.Extra), len(e.ExtraSinks))
	}
	type loaded struct {
		cp     *checkpoint
		counts func(m int64) ([]byte, bool, error)
	}
	all := make([]loaded, 1+len(e.cfg.Extra))
	named := append([]feature.Named{e.cfg.Named()}, e.cfg.Extra...)
	have := 0
	for k := range all {
		rawK, countsK := raw, counts
		cfgK := e.cfg
		if k > 0 {
			cs, ok := e.ExtraSinks[k-1].(sink.Checkpointer)
			if !ok {
				return nil, nil // sinks that keep no state: nothing to resume
			}
			var err error
			if rawK, countsK, err = cs.LoadState(); err != nil {
				return nil, fmt.Errorf("resume definition %s: %w", named[k].Name, err)
			}
			cfgK = e.cfg.forDef(named[k])
		}
		if rawK == nil {
			continue
		}
		cp, err := e.checkResumable(rawK, identity, cfgK.configKey())
		if err != nil {
			return nil, fmt.Errorf("definition %s: %w", named[k].Name, err)
		}
		all[k], have = loaded{cp, countsK}, have+1
	}
	if have == 0 {
		return nil, nil
	}
	// A definition without a checkpoint while others have one was added to
	// a running deployment: it starts from the count records of one of the
	// same resolution whose records span its longest window.
	from := make([]int, len(all))
	for k, l := range all {
		from[k] = -1
		if l.cp != nil {
			continue
		}
		for s, src := range all {
			if src.cp != nil && named[s].Resolution == named[k].Resolution && slices.Max(named[s].Windows) >= slices.Max(named[k].Windows) {
				from[k] = s
				break
			}
		}
		if from[k] < 0 || k == 0 {
			return nil, fmt.Errorf("%w: definition %s has no checkpoint in its sink while the others do, and no definition of resolution %d with windows as long keeps counts to start it from (counts of another resolution would move 7%% of events to other cells: docs/DEFINITIONS.md); run it into a new sink with -resume=false, or give it a definition to start from", ErrNotResumable, named[k].Name, named[k].Resolution)
		}
	}
	// The earliest: by input position, then by minute (a gap in the input
	// leaves the position of several closes the same).
	var with []loaded
	for _, l := range all {
		if l.cp != nil {
			with = append(with, l)
		}
	}
	base := slices.MinFunc(with, func(a, b loaded) int {
		return cmp.Or(cmp.Compare(a.cp.seq.pos, b.cp.seq.pos), cmp.Compare(a.cp.closed, b.cp.closed))
	})
	if err := e.takeProducts(base.cp); err != nil {
		return nil, err
	}
	e.resume, e.resumeCounts = base.cp, all[0].counts
	e.resumeClosed = all[0].cp.closed
	e.extraResume = e.extraResume[:0]
	for k, l := range all[1:] {
		if s := from[k+1]; s >= 0 {
			src := all[s]
			e.extraResume = append(e.extraResume, defResume{closed: src.cp.closed, counts: src.counts, from: src.cp, fromName: named[s].Name, fromMaxW: slices.Max(named[s].Windows)})
			continue
		}
		e.extraResume = append(e.extraResume, defResume{closed: l.cp.closed, counts: l.counts})
	}
	e.startPos, e.startLine = base.cp.seq.pos, base.cp.seq.line
	return &Resumed{Minute: base.cp.closed, Pos: base.cp.seq.pos, Line: base.cp.seq.line}, nil
}

// ResumeEmit prepares Run in the dedup role (Emit set) to continue from a
// checkpoint its CheckpointingWriter kept: the sequencer restored, the
// input read from the checkpoint's position on, and counted events of the
// minutes it was taken at (<= Resumed.Minute) not handed on again.
func (e *Engine) ResumeEmit(raw []byte, identity string) (*Resumed, error) {
	return e.resumeFrom(raw, nil, identity)
}

func (e *Engine) resumeFrom(raw []byte, counts func(m int64) ([]byte, bool, error), identity string) (*Resumed, error) {
	cp, err := e.checkResumable(raw, identity, e.cfg.configKey())
	if err != nil {
		return nil, err
	}
	if err := e.takeProducts(cp); err != nil {
		return nil, err
	}
	e.resume, e.resumeCounts, e.resumeClosed = cp, counts, cp.closed
	e.startPos, e.startLine = cp.seq.pos, cp.seq.line
	return &Resumed{Minute: cp.closed, Pos: cp.seq.pos, Line: cp.seq.line}, nil
}

// checkResumable decodes a checkpoint and checks that it is of this input
// and of the settings named by key.
func (e *Engine) checkResumable(raw []byte, identity, key string) (*checkpoint, error) {
	cp, err := decodeCheckpoint(raw)
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	if cp.identity != identity {
		return nil, fmt.Errorf("%w: the sink's checkpoint is of another input (%s), not %s", ErrNotResumable, cp.identity, identity)
	}
	if cp.config != key {
		return nil, fmt.Errorf("%w: the checkpoint was written with %q, this run has %q (use the same flags to resume)", ErrNotResumable, cp.config, key)
	}
	return cp, nil
}

// takeProducts gives the checkpoint's products their codes.
func (e *Engine) takeProducts(cp *checkpoint) error {
	if e.Products.Len() > 0 {
		return fmt.Errorf("resume: the engine has already run")
	}
	for _, u := range cp.products {
		if _, err := e.Products.Code(u); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
	}
	return nil
}

// backfill starts further definition d (no checkpoint of its own) from the
// count records of definition r.fromName: its rows for every minute those
// records cover whole, committed into its sink with a checkpoint at the
// source definition's resume point (docs/DEFINITIONS.md).
func (e *Engine) backfill(ctx context.Context, src io.Reader, a *aggregate.Local, d feature.Named, r defResume) error {
	start := time.Now()
	cp := e.checkpointer(src)
	cp.config = e.cfg.forDef(d).configKey()
	keptFrom := r.closed - int64(r.fromMaxW) + 2 // what the source definition's sink keeps (aggregate: stateFor)
	first, err := a.Backfill(ctx, keptFrom, r.closed, r.counts, &resumePoint{cp: &cp, st: &r.from.seq})
	if err != nil {
		return fmt.Errorf("definition %s, backfilled from %s's counts: %w", d.Name, r.fromName, err)
	}
	b := Backfill{Name: d.Name, From: r.fromName, First: first, Closed: r.closed, Took: time.Since(start)}
	e.Backfills = append(e.Backfills, b)
	if e.OnBackfill != nil {
		e.OnBackfill(b)
	}
	return nil
}
