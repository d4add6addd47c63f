package sink

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/demandpipe/demandpipe/encode"
)

// NDJSON writes one row per line in the contract's form:
// {"h3":…,"product_type":…,"minute":…,"features":[…]}. Lines are flushed at
// every closed minute, so a reader of the file sees whole minutes.
type NDJSON struct {
	w      *bufio.Writer
	closer io.Closer
	line   []byte
	rows   atomic.Int64
	mins   atomic.Int64
	bytes  atomic.Int64
}

// OpenNDJSON opens path for writing ("-" is stdout).
func OpenNDJSON(path string) (*NDJSON, error) {
	if path == "" {
		return nil, fmt.Errorf("sink ndjson: needs a path, e.g. ndjson:rows.ndjson or ndjson:- for stdout")
	}
	if path == "-" {
		return NewNDJSON(os.Stdout, nil), nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("sink ndjson: %w", err)
	}
	return NewNDJSON(f, f), nil
}

// NewNDJSON writes to w; closer (may be nil) is closed by Close.
func NewNDJSON(w io.Writer, closer io.Closer) *NDJSON {
	return &NDJSON{w: bufio.NewWriterSize(w, 256<<10), closer: closer}
}

func (s *NDJSON) Write(_ context.Context, b *encode.Batch) error {
	for i := 0; i < b.Len(); i++ {
		s.line = encode.AppendRowJSON(s.line[:0], b, i)
		if _, err := s.w.Write(s.line); err != nil {
			return fmt.Errorf("sink ndjson: %w", err)
		}
		s.bytes.Add(int64(len(s.line)))
	}
	s.rows.Add(int64(b.Len()))
	return nil
}

func (s *NDJSON) CloseMinute(context.Context, int64) error {
	s.mins.Add(1)
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("sink ndjson: %w", err)
	}
	return nil
}

func (s *NDJSON) Close() error {
	err := s.w.Flush()
	if s.closer != nil {
		if cerr := s.closer.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("sink ndjson: %w", err)
	}
	return nil
}

// Stats reports what was written.
func (s *NDJSON) Stats() Stats {
	return Stats{Rows: s.rows.Load(), Minutes: s.mins.Load(), Bytes: s.bytes.Load()}
}
