package client

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// tokenCheckEvery is how often a call looks at a token file's metadata: a
// stat (~1 us) once a second, on a call, so no goroutine to stop; a
// rotated token is in use a second after it is written.
const tokenCheckEvery = time.Second

// tokenSource is the bearer token: fixed (WithToken) or a file's
// (WithTokenFile), re-read when its size, modification time or identity
// (an atomic rename, a swapped symlink) changes.
type tokenSource struct {
	tok  atomic.Pointer[string]
	file string
	now  func() time.Time // tests inject
	next atomic.Int64     // unix ns of the next look at the file

	mu   sync.Mutex // one look at a time; a call never waits for it
	info os.FileInfo
}

func staticToken(tok string) *tokenSource {
	ts := &tokenSource{}
	ts.tok.Store(&tok)
	return ts
}

func fileToken(file string) (*tokenSource, error) {
	ts := &tokenSource{file: file, now: time.Now}
	info, tok, err := readToken(file)
	if err != nil {
		return nil, err
	}
	ts.info = info
	ts.tok.Store(&tok)
	ts.next.Store(ts.now().Add(tokenCheckEvery).UnixNano())
	return ts, nil
}

// get is the token to send.
func (ts *tokenSource) get() string {
	if ts.file != "" {
		ts.check()
	}
	return *ts.tok.Load()
}

func (ts *tokenSource) check() {
	now := ts.now()
	if now.UnixNano() < ts.next.Load() || !ts.mu.TryLock() {
		return
	}
	defer ts.mu.Unlock()
	ts.next.Store(now.Add(tokenCheckEvery).UnixNano())
	info, err := os.Stat(ts.file)
	if err != nil || (info.Size() == ts.info.Size() && info.ModTime().Equal(ts.info.ModTime()) && os.SameFile(info, ts.info)) {
		return
	}
	if info, tok, err := readToken(ts.file); err == nil {
		ts.info = info
		ts.tok.Store(&tok)
	}
}

// readToken stats, then reads file; the token is its first line that is
// not blank or a # comment (the format of the server's -serve.token-file,
// so a file holding one token serves both sides).
func readToken(file string) (os.FileInfo, string, error) {
	info, err := os.Stat(file)
	if err != nil {
		return nil, "", fmt.Errorf("WithTokenFile: %w", err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("WithTokenFile: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 && l[0] != '#' {
			return info, string(l), nil
		}
	}
	return nil, "", fmt.Errorf("WithTokenFile: no token in %s", file)
}
