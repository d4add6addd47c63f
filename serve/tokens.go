package serve

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
)

// tokenCheckEvery is how often a request looks at the token file's
// metadata. Checked on requests rather than by a timer: no goroutine to
// start and stop, and an idle server does no work. One stat a second is
// ~1 us of a request's ~100 us, once; a revoked token stops working at
// most a second after the file changes, which is also as soon as a timer
// with the same period would notice.
const tokenCheckEvery = time.Second

// minTokenLen is the shortest token accepted: 16 characters of a random
// hex string are 64 bits, beyond guessing at any rate the server allows.
// `openssl rand -hex 32` makes a good one.
const minTokenLen = 16

// tokenFile is the bearer tokens of Config.TokenFile, kept as SHA-256
// hashes. Comparing fixed-size hashes in constant time says nothing of a
// token's length or of how much of it matched.
type tokenFile struct {
	path   string
	hashes atomic.Pointer[[][sha256.Size]byte]
	next   atomic.Int64 // unix ns of the next look at the file

	mu   sync.Mutex  // one reload at a time; a request never waits for it
	info os.FileInfo // the version loaded, from before it was read
}

func loadTokenFile(path string) (*tokenFile, error) {
	t := &tokenFile{path: path}
	info, hashes, err := readTokenFile(path)
	if err != nil {
		return nil, err
	}
	t.info = info
	t.hashes.Store(&hashes)
	return t, nil
}

// readTokenFile stats, then reads the file: if it changes in between, the
// next check sees a newer version than the one recorded and reads again.
// info is set whenever the stat worked, even if the rest did not.
func readTokenFile(path string) (os.FileInfo, [][sha256.Size]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("serve.token-file: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return info, nil, fmt.Errorf("serve.token-file: %w", err)
	}
	hashes, err := parseTokens(b)
	if err != nil {
		return info, nil, fmt.Errorf("serve.token-file=%s: %w", path, err)
	}
	return info, hashes, nil
}

// parseTokens reads one token a line; blank lines and lines starting with
// # are skipped. A token must be printable, without spaces, and at least
// minTokenLen long; the error names the line, never the token.
func parseTokens(b []byte) ([][sha256.Size]byte, error) {
	var hashes [][sha256.Size]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if i := bytes.IndexFunc(line, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }); i >= 0 {
			return nil, fmt.Errorf("line %d: a token has no spaces or control characters (one token per line)", n)
		}
		if len(line) < minTokenLen {
			return nil, fmt.Errorf("line %d: a token of %d characters is too short to be secret; at least %d (openssl rand -hex 32 makes one)", n, len(line), minTokenLen)
		}
		hashes = append(hashes, sha256.Sum256(line))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(hashes) == 0 {
		return nil, fmt.Errorf("no tokens (one a line; # starts a comment)")
	}
	return hashes, nil
}

// valid reports whether tok is one of the tokens. Every hash is compared,
// in constant time.
func (t *tokenFile) valid(tok string) bool {
	h := sha256.Sum256([]byte(tok))
	ok := 0
	for _, k := range *t.hashes.Load() {
		ok |= subtle.ConstantTimeCompare(h[:], k[:])
	}
	return ok == 1
}

// count is the number of tokens in service.
func (t *tokenFile) count() int { return len(*t.hashes.Load()) }

// check re-reads the file if it is time to look and it changed. The
// request that finds the time has come does the look; concurrent ones go
// on with the tokens in service.
func (t *tokenFile) check(now time.Time, log *slog.Logger, met *guardMetrics) {
	if now.UnixNano() < t.next.Load() || !t.mu.TryLock() {
		return
	}
	defer t.mu.Unlock()
	t.reloadLocked(now, false, log, met)
}

// reload re-reads the file; unless force, only if it changed (size,
// modification time, or another file: an atomic rename, or a Kubernetes
// secret's symlink swapped).
func (t *tokenFile) reload(now time.Time, force bool, log *slog.Logger, met *guardMetrics) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reloadLocked(now, force, log, met)
}

func (t *tokenFile) reloadLocked(now time.Time, force bool, log *slog.Logger, met *guardMetrics) error {
	t.next.Store(now.Add(tokenCheckEvery).UnixNano())
	if !force {
		info, err := os.Stat(t.path)
		switch {
		case err != nil && t.info == nil:
			return nil // still missing: reported when it went
		case err == nil && t.info != nil && info.Size() == t.info.Size() && info.ModTime().Equal(t.info.ModTime()) && os.SameFile(info, t.info):
			return nil
		}
	}
	info, hashes, err := readTokenFile(t.path)
	if err != nil {
		// Keep the tokens in service: a half-written or deleted file must
		// not lock every reader out. Report it once per version of the
		// file: the bad one is remembered as seen.
		t.info = info
		met.reloads.WithLabelValues("tokens", "error").Inc()
		log.Error("serve: token file not reloaded, the previous tokens stay in service", "err", err)
		return err
	}
	t.info = info
	t.hashes.Store(&hashes)
	met.reloads.WithLabelValues("tokens", "ok").Inc()
	log.Info("serve: token file reloaded", "file", t.path, "tokens", len(hashes))
	return nil
}
