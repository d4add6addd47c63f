package store

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// faults turns pebble's unrecoverable errors into an error of the store
// instead of a dead process. Pebble reports them through Logger.Fatalf and
// expects the process to end there (its default calls os.Exit: no drain, no
// summary, no exit code of ours); a full disk also shows as background
// errors that pebble retries forever (a flush spinning at 100% CPU, and
// commits stalled behind it). Both mark the store failed: every call into
// pebble that can meet them runs under guard, which returns the failure at
// once instead of waiting on a pebble that will never answer.
type faults struct {
	dir    string
	failed chan struct{}
	once   sync.Once
	err    atomic.Pointer[error]
	// consecutive background errors; pebble retries a failing flush or
	// compaction in a loop, so many in a row mean it will not recover.
	bgErrors atomic.Int64
	stalls   atomic.Int64 // write stalls seen (a metric)
}

func newFaults(dir string) *faults { return &faults{dir: dir, failed: make(chan struct{})} }

// fail records the first failure.
func (f *faults) fail(err error) {
	f.once.Do(func() {
		err = f.describe(err)
		f.err.Store(&err)
		close(f.failed)
		fmt.Fprintf(os.Stderr, "store: %v\n", err)
	})
}

// failPanic records a pebble panic (recovered) as the failure.
func (f *faults) failPanic(r any) {
	err, ok := r.(error)
	if !ok {
		err = fmt.Errorf("pebble: %v", r)
	}
	f.fail(err)
}

// Err is the failure, or nil.
func (f *faults) Err() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

// describe says what happened and what to do, in the store's words.
func (f *faults) describe(err error) error {
	if isDiskFull(err) {
		return fmt.Errorf("store %s: disk full (%w): the minutes committed so far stay readable; free space and run the same command again", f.dir, err)
	}
	return fmt.Errorf("store %s: %w", f.dir, firstLine{err})
}

// firstLine shows only the first line of a pebble error: its corruption
// errors carry their stack traces in Error() (cockroachdb/errors' detail
// lines, ~50 of them), which belong in a debugger, not in the message a
// run ends with. errors.Is and As still see the whole error.
type firstLine struct{ err error }

func (e firstLine) Error() string {
	s, _, _ := strings.Cut(e.err.Error(), "\n")
	return s
}

func (e firstLine) Unwrap() error { return e.err }

// errDiskFull marks a failure found by our own free-space check.
var errDiskFull = errors.New("no space left on device")

func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, errDiskFull) ||
		strings.Contains(err.Error(), "no space left on device")
}

// maxBackgroundErrors in a row end the store: pebble retries a failed flush
// about once a second, so this is a minute of failing in a loop, long enough
// for a transient fault to pass, and a clear error instead of a spin.
const maxBackgroundErrors = 60

// listener watches pebble's background errors.
func (f *faults) listener() *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			// A full disk does not heal by itself: fail at once, so the
			// run ends within seconds, not after a minute of retries.
			if isDiskFull(err) || f.bgErrors.Add(1) >= maxBackgroundErrors {
				f.fail(err)
			}
		},
		// Pebble's default for a corrupt block is Fatalf, synchronously in
		// the read that found it: the reading goroutine ended there (an
		// API request unanswered, the engine's restore hung). Failing the
		// store instead lets the read return pebble's corruption error.
		DataCorruption:  func(info pebble.DataCorruptionInfo) { f.fail(fmt.Errorf("%s", info)) },
		WriteStallBegin: func(pebble.WriteStallBeginInfo) { f.stalls.Add(1) },
		FlushEnd: func(info pebble.FlushInfo) {
			if info.Err == nil {
				f.bgErrors.Store(0)
			}
		},
	}
}

// guard runs fn, a call into pebble, and returns its error, or the store's
// failure as soon as there is one: a pebble call stuck behind a failed
// flush, or ended inside Fatalf, never holds up the caller.
func (f *faults) guard(fn func() error) error {
	if err := f.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		finished := false
		defer func() {
			if finished {
				return
			}
			// fn ended in runtime.Goexit (fatalLogger) or in a panic:
			// pebble panics where it cannot go on (e.g. a WAL it cannot
			// create). Some of those leave its locks broken and the
			// runtime ends the process anyway; the free-space check
			// (checkFree) exists so that pebble never gets there.
			if r := recover(); r != nil {
				f.failPanic(r)
			}
			done <- f.Err()
		}()
		err := fn()
		finished = true
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil && isDiskFull(err) {
			f.fail(err)
			return f.Err()
		}
		return err
	case <-f.failed:
		return f.Err()
	}
}

// fatalLogger is pebble's logger: informational lines stay off the run's
// stderr, errors show, and Fatalf fails the store and ends only the
// goroutine that called it (runtime.Goexit runs its deferred unlocks),
// instead of the process.
type fatalLogger struct{ f *faults }

func (fatalLogger) Infof(string, ...any) {}
func (fatalLogger) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "store: "+format+"\n", args...)
}
func (l fatalLogger) Fatalf(format string, args ...any) {
	l.f.fail(fmt.Errorf(format, args...))
	runtime.Goexit()
}

// checkFree fails with a disk-full error when the store's filesystem has
// less than min bytes available: checked before pebble can meet ENOSPC in
// the middle of a commit or a flush (~1 us: one statfs).
func checkFree(fs vfs.FS, dir string, min int64) error {
	if min <= 0 {
		return nil
	}
	du, err := fs.GetDiskUsage(dir)
	if err != nil {
		return nil // not every filesystem reports it; pebble's errors remain
	}
	if int64(du.AvailBytes) < min {
		return fmt.Errorf("%w: %d MiB available, below -store.min-free-bytes=%d MiB", errDiskFull, du.AvailBytes>>20, min>>20)
	}
	return nil
}

// closeTimeout bounds Close on a failed store: pebble may be stuck behind
// a flush that cannot finish.
const closeTimeout = 2 * time.Second
