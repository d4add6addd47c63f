package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/demandpipe/demandpipe/dedup"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/h3batch"
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
}

// New builds an engine.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Engine{cfg: cfg, Products: encode.NewProducts()}, nil
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

	dt, err := dedup.New(cfg.Dedup)
	if err != nil {
		return err
	}
	seq := &sequencer{lateness: cfg.Lateness.Milliseconds(), idle: cfg.IdleTimeout.Milliseconds(), dedup: dt, frontier: noMinute}
	agg, err := newAggregator(cfg, e.Products, snk, &e.Stats)
	if err != nil {
		return err
	}
	var rejects *bufio.Writer
	if e.Rejects != nil {
		rejects = bufio.NewWriterSize(e.Rejects, 64<<10)
	}

	n := cfg.Parallelism
	nb := 4*n + 4 // batches in flight: bounds memory to nb chunks
	free := make(chan *batch, nb)
	for range nb {
		free <- newBatch()
	}
	chunks := make(chan *batch, nb)
	parseQ := make(chan *batch, nb)
	seqQ := make(chan *batch, nb)
	locQ := make(chan *batch, nb)
	aggQ := make(chan *batch, nb)

	var wg sync.WaitGroup
	var fail error
	var failOnce sync.Once
	setErr := func(err error) {
		failOnce.Do(func() { fail = err; cancel(err) })
	}

	// read: one goroutine owns the reader (it may block: stdin, a socket).
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(chunks)
		if err := e.read(ctx, src, free, chunks); err != nil {
			setErr(err)
		}
	}()

	// dispatch: numbers batches, injects idle ticks, fans out to parsers.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(parseQ)
		defer close(seqQ)
		var s uint64
		tick := time.NewTicker(min(cfg.IdleTimeout/4, time.Second))
		defer tick.Stop()
		lastInput := time.Now()
		send := func(b *batch) bool {
			b.seq = s
			s++
			select {
			case seqQ <- b:
			case <-ctx.Done():
				return false
			}
			select {
			case parseQ <- b:
			case <-ctx.Done():
				return false
			}
			return true
		}
		for {
			select {
			case b, ok := <-chunks:
				if !ok {
					return
				}
				lastInput = time.Now()
				if !send(b) {
					return
				}
			case <-tick.C:
				if time.Since(lastInput) < cfg.IdleTimeout/4 {
					continue
				}
				var b *batch
				select {
				case b = <-free:
				default:
					continue // busy downstream: not idle
				}
				b.reset()
				b.idle = true
				b.now = cfg.Now().UnixMilli()
				if !send(b) {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()

	// parse workers
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p encode.Projector
			for b := range parseQ {
				b.parse(&p, e.Products, cfg.MaxLineBytes)
				b.parsed <- struct{}{}
			}
		}()
	}

	// sequence: in order.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(locQ)
		defer close(aggQ)
		for b := range seqQ {
			<-b.parsed
			if ctx.Err() != nil {
				continue // drain
			}
			seq.sequence(b, &e.Stats, cfg.Now().UnixMilli())
			e.Stats.Lines.Add(b.lines)
			e.Stats.Blank.Add(b.blank)
			for _, r := range b.rejects {
				e.Stats.Rejected[r.reason].Add(1)
			}
			if rejects != nil && len(b.rejects) > 0 {
				if err := writeRejects(rejects, b); err != nil {
					setErr(fmt.Errorf("rejects file: %w", err))
				}
			}
			aggQ <- b
			locQ <- b
		}
	}()

	// locate workers
	res := cfg.Def.Resolution
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var l h3batch.Locator
			for b := range locQ {
				if errs := b.locate(&l, res); errs > 0 {
					e.Stats.H3Errors.Add(errs)
				}
				b.located <- struct{}{}
			}
		}()
	}

	// close: its own goroutine, fed by bounded requests (back-pressure).
	closeQ := make(chan closeRequest, 1)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for req := range closeQ {
			if ctx.Err() != nil {
				continue // drain
			}
			if err := agg.closeThrough(ctx, req); err != nil {
				setErr(err)
			}
		}
	}()
	sendClose := func(through int64) {
		if req, ok := agg.request(through); ok {
			select {
			case closeQ <- req:
			case <-ctx.Done():
			}
		}
	}

	// aggregate: in order, on this goroutine.
	var final int64
	hasFinal := false
	for b := range aggQ {
		<-b.located
		if ctx.Err() == nil {
			agg.count(b)
			if b.hasFinal {
				final, hasFinal = b.final, true
			}
			sendClose(b.frontier)
		}
		b.reset()
		free <- b
	}
	wg.Wait()
	if ctx.Err() == nil && hasFinal {
		sendClose(final)
	}
	close(closeQ)
	<-closed
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

// read fills batches with whole lines. A line longer than MaxLineBytes is
// cut off: its first bytes are kept for the rejects file, the rest skipped.
func (e *Engine) read(ctx context.Context, src io.Reader, free chan *batch, out chan<- *batch) error {
	cfg := e.cfg
	l, ok := src.(interface{ Live() bool })
	live := ok && l.Live()
	line := int64(1)
	var carry []byte // partial line carried to the next chunk
	skipping := false
	eof := false
	for !eof {
		var b *batch
		select {
		case b = <-free:
		case <-ctx.Done():
			return nil
		}
		b.reset()
		b.firstLine = line
		b.buf = append(b.buf[:0], carry...)
		carry = carry[:0]
		target := cfg.ChunkBytes
		if len(b.buf) >= target { // a long line in the carry: read on
			target = len(b.buf) + cfg.ChunkBytes
		}
		for len(b.buf) < target && !eof {
			if cap(b.buf)-len(b.buf) < cfg.ChunkBytes/4 {
				b.buf = slicesGrow(b.buf, cfg.ChunkBytes)
			}
			k, err := src.Read(b.buf[len(b.buf):cap(b.buf)])
			e.Stats.Bytes.Add(int64(k))
			if skipping && k > 0 {
				// Drop the rest of an over-long line.
				chunk := b.buf[len(b.buf) : len(b.buf)+k]
				if j := bytes.IndexByte(chunk, '\n'); j >= 0 {
					copy(b.buf[len(b.buf):], chunk[j+1:])
					k -= j + 1
					skipping = false
				} else {
					k = 0
				}
			}
			b.buf = b.buf[:len(b.buf)+k]
			if errors.Is(err, io.EOF) {
				eof = true
			} else if err != nil {
				return fmt.Errorf("read input: %w", err)
			}
			if k > 0 && live {
				break // hand over what we have: keeps latency low
			}
		}
		// Cut at the last newline; keep the tail for the next chunk.
		if !eof {
			j := bytes.LastIndexByte(b.buf, '\n')
			if j < 0 {
				if len(b.buf) >= cfg.MaxLineBytes {
					b.tooLong = append(b.tooLong, tooLong{line: line, prefix: append([]byte(nil), b.buf[:min(len(b.buf), 1024)]...)})
					line++
					b.buf = b.buf[:0]
					skipping = true
				} else {
					// Incomplete line: carry it and keep reading.
					carry = append(carry, b.buf...)
					b.buf = b.buf[:0]
				}
			} else {
				carry = append(carry, b.buf[j+1:]...)
				b.buf = b.buf[:j+1]
			}
		}
		line += int64(bytes.Count(b.buf, []byte{'\n'}))
		if eof && len(b.buf) > 0 && b.buf[len(b.buf)-1] != '\n' {
			line++
		}
		b.eof = eof
		if len(b.buf) == 0 && len(b.tooLong) == 0 && !eof {
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

func slicesGrow(b []byte, n int) []byte {
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

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
	return nil
}
