package source

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// File reads NDJSON from a file or stdin, decompressing gzip and zstd
// transparently (detected from magic bytes, whatever the file is called).
type File struct {
	identity string
	r        io.Reader
	f        *os.File
	size     int64
	stopped  atomic.Bool
	zd       *zstd.Decoder
	raw      countingReader
	// lineStart: the last byte handed out ended a line (or none was).
	lineStart bool
}

// countingReader counts the stored bytes read, before decompression.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// OpenFile opens path ("-" is stdin).
func OpenFile(path string) (*File, error) {
	if path == "" {
		return nil, fmt.Errorf("source file: needs a path, e.g. file:events.ndjson.zst or file:- for stdin")
	}
	s := &File{size: -1, lineStart: true}
	if path == "-" {
		s.f = os.Stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("source file: %w", err)
		}
		s.f = f
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			s.size = st.Size()
			s.identity = fileIdentity(f, path, st.Size())
		}
	}
	if err := s.wrap(s.f); err != nil {
		s.f.Close()
		return nil, err
	}
	return s, nil
}

// NewReader wraps any reader (compressed or not) as a File source.
func NewReader(r io.Reader) (*File, error) {
	s := &File{size: -1, lineStart: true}
	if err := s.wrap(r); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *File) wrap(r io.Reader) error {
	s.raw.r = r
	br := bufio.NewReaderSize(&s.raw, 1<<20)
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("source file: gzip: %w", err)
		}
		s.r = zr
	case bytes.HasPrefix(head, zstdMagic):
		// Bound what one frame may make us allocate: hostile input must not
		// claim gigabytes of window.
		zd, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(128<<20), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("source file: zstd: %w", err)
		}
		s.zd = zd
		s.r = zd
	default:
		s.r = br
	}
	return nil
}

func (s *File) Read(p []byte) (int, error) {
	if s.stopped.Load() {
		return s.readToLineEnd(p)
	}
	n, err := s.r.Read(p)
	if n > 0 {
		s.lineStart = p[n-1] == '\n'
	}
	if err != nil && s.stopped.Load() {
		return n, io.EOF // Stop closed stdin under a blocked Read
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("source file: %w", err)
	}
	return n, err
}

// readToLineEnd finishes the line in progress after Stop, then reports the
// end: a graceful stop never cuts an event in two.
func (s *File) readToLineEnd(p []byte) (int, error) {
	if s.lineStart {
		return 0, io.EOF
	}
	n, err := s.r.Read(p)
	if i := bytes.IndexByte(p[:n], '\n'); i >= 0 {
		s.lineStart = true
		return i + 1, nil
	}
	if err != nil {
		return n, io.EOF
	}
	return n, nil
}

// Live: stdin and pipes may be live; regular files are not.
func (s *File) Live() bool { return s.size < 0 }

// Position is the stored bytes read and the file size (-1 for pipes).
func (s *File) Position() (int64, int64) { return s.raw.n.Load(), s.size }

// Stop ends the input at the next Read. For stdin it closes the descriptor
// so that a blocked Read returns.
func (s *File) Stop() {
	if s.stopped.Swap(true) {
		return
	}
	if s.f == os.Stdin {
		s.f.Close()
	}
}

// Close releases the file.
func (s *File) Close() error {
	if s.zd != nil {
		s.zd.Close()
	}
	if s.f != nil && s.f != os.Stdin {
		return s.f.Close()
	}
	return nil
}

// Identity names a regular file's content for checkpoints: its path, size
// and a hash of its first 64 KiB, so that a resume never continues another
// input (a file rewritten under the same name, say). Empty for stdin and
// pipes: they cannot be read again, so a run from them never resumes.
func (s *File) Identity() string { return s.identity }

func fileIdentity(f *os.File, path string, size int64) string {
	head := make([]byte, min(size, 64<<10))
	n, _ := f.ReadAt(head, 0)
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return fmt.Sprintf("file:%s size=%d head=%016x", abs, size, xxhash.Sum64(head[:n]))
}
