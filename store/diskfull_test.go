package store

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/demandpipe/demandpipe/encode"
)

// fullDisk fails the writes of tables (flush and compaction output) with
// ENOSPC while on: the disk filling while the WAL still has room, the case
// that hung the run (pebble retried the flush forever and commits stalled
// behind it). A WAL that cannot grow makes pebble panic with its locks
// broken, past any recovery: TestFreeSpaceGuard and TestDiskFullOnTmpfs
// show the store stopping before pebble gets there.
type fullDisk struct{ on atomic.Bool }

func (d *fullDisk) String() string { return "full disk" }
func (d *fullDisk) MaybeError(op errorfs.Op) error {
	if d.on.Load() && strings.HasSuffix(op.Path, ".sst") && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && op.Kind != errorfs.OpFileClose {
		return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
	}
	return nil
}

// TestDiskFullIsAClearError: the disk fills mid-run. The next commit ends
// with "disk full" within seconds (commits used to hang behind a flush
// retried forever, and a later fatal error os.Exit-ed the process); Close
// returns; the minutes committed before stay readable after a reopen, and
// writing goes on once space is back.
func TestDiskFullIsAClearError(t *testing.T) {
	t.Parallel()
	for _, memtable := range []int64{1 << 20, 4 << 20} {
		t.Run(fmt.Sprintf("memtable=%d", memtable), func(t *testing.T) {
			dir := t.TempDir()
			disk := &fullDisk{}
			c := testConfig(dir)
			c.Sync = true // committed = synced, as by default
			c.MemTableBytes = memtable
			c.FS = errorfs.Wrap(vfs.Default, disk)
			s := openTest(t, c)
			names := encode.NewProducts()
			cells := testCells(2000)
			for i := range 3 {
				writeMinute(t, s, names, testMinute0+int64(i), 2, cells, 500)
			}
			disk.on.Store(true)
			start := time.Now()
			var err error
			for i := 3; i < 40 && err == nil; i++ { // ~1 MB a minute: a flush soon needs the disk
				err = writeMinuteErr(s, names, testMinute0+int64(i), 2, cells, 500)
			}
			if err == nil || !strings.Contains(err.Error(), "disk full") || time.Since(start) > 10*time.Second {
				t.Fatalf("after %v: err = %v", time.Since(start), err)
			}
			if s.Err() == nil {
				t.Fatal("the store does not say it failed")
			}
			if err := writeMinuteErr(s, names, testMinute0+50, 1, cells, 500); err == nil {
				t.Fatal("a failed store accepted another minute")
			}
			disk.on.Store(false)
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("Close hung on a failed store")
			}
			c.FS = nil
			s = openTest(t, c)
			defer s.Close()
			for i := range 3 {
				if _, ok := s.Minute(testMinute0 + int64(i)); !ok {
					t.Fatalf("committed minute %d lost", i)
				}
				checkMinute(t, s, testMinute0+int64(i), 2, cells)
			}
			writeMinute(t, s, names, testMinute0+60, 1, cells, 500)
		})
	}
}

// TestFreeSpaceGuard: below -store.min-free-bytes the store refuses to open
// for writing and to commit, with a disk-full error, before pebble meets
// ENOSPC at all.
func TestFreeSpaceGuard(t *testing.T) {
	dir := t.TempDir()
	fs := &tightFS{FS: vfs.Default}
	fs.avail.Store(1 << 40)
	c := testConfig(dir)
	c.FS = fs
	c.MinFreeBytes = 100 << 20
	s := openTest(t, c)
	names := encode.NewProducts()
	cells := testCells(100)
	writeMinute(t, s, names, testMinute0, 1, cells, 100)
	fs.avail.Store(50 << 20)
	err := writeMinuteErr(s, names, testMinute0+1, 1, cells, 100)
	if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "-store.min-free-bytes") {
		t.Fatalf("err = %v", err)
	}
	s.Close()
	if _, err := Open(c, nil); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("open on a full disk: %v", err)
	}
}

// tightFS reports a chosen amount of free space.
type tightFS struct {
	vfs.FS
	avail atomic.Int64
}

func (f *tightFS) GetDiskUsage(path string) (vfs.DiskUsage, error) {
	du, err := f.FS.GetDiskUsage(path)
	du.AvailBytes = uint64(f.avail.Load())
	return du, err
}

// TestDiskFullOnTmpfs fills a real 24 MiB tmpfs (where this machine lets
// the test mount one) with the free-space guard scaled to it: the store
// ends with "disk full" within seconds, never hangs, and the committed
// minutes are readable, and writable again, once space is back.
func TestDiskFullOnTmpfs(t *testing.T) {
	t.Parallel()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root): %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	dir := filepath.Join(mnt, "store")
	c := testConfig(dir)
	c.Sync = true
	c.MemTableBytes = 2 << 20
	c.MinFreeBytes = 6 << 20 // two memtables and a compaction's output
	s := openTest(t, c)
	names := encode.NewProducts()
	cells := testCells(3000)
	var err error
	committed := 0
	start := time.Now()
	for i := 0; i < 400 && err == nil; i++ {
		if err = writeMinuteErr(s, names, testMinute0+int64(i), 2, cells, 1000); err == nil {
			committed++
		}
	}
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("after %d minutes: err = %v", committed, err)
	}
	t.Logf("disk full after %d minutes, in %v: %v", committed, time.Since(start), err)
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung")
	}
	// Space comes back: a larger tmpfs under the same files.
	if out, err := exec.Command("mount", "-o", "remount,size=256m", mnt).CombinedOutput(); err != nil {
		t.Skipf("remount: %v %s", err, out)
	}
	c.Retention = 168 * time.Hour
	s = openTest(t, c)
	defer s.Close()
	if got := len(s.Minutes(nil)); got != committed {
		t.Fatalf("%d minutes readable, %d were committed", got, committed)
	}
	checkMinute(t, s, testMinute0+int64(committed-1), 2, cells)
	writeMinute(t, s, names, testMinute0+int64(committed), 2, cells, 1000)
}
