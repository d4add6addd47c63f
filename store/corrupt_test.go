package store

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/corruptfile"
)

// TestCorruptStoreIsAClearError: bytes flipped in every table file of a
// store (a bad disk, a bad copy). Opening it, and reading it if it opens,
// ends within seconds with an error that names the store, never a hang:
// pebble reports corruption through Logger.Fatalf, which used to end the
// calling goroutine inside Open's load (issue 22), so `run` and `serve`
// printed "on-disk corruption" and hung.
func TestCorruptStoreIsAClearError(t *testing.T) {
	if dir := os.Getenv(envCorruptDir); dir != "" {
		corruptChild(dir, os.Getenv(envCorruptReadOnly) == "true")
	}
	dir := t.TempDir()
	writeCorruptible(t, dir)
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no table file to corrupt: the test no longer reaches pebble's tables")
	}
	for _, f := range ssts {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i := 64; i < len(b)-64; i += 97 {
			b[i] ^= 0x5a
		}
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, readOnly := range []bool{true, false} {
		openCorrupt(t, dir, readOnly)
	}
}

// openCorrupt opens the corrupt store at dir and reads it all, in a child
// process (this test binary again): pebble may leave goroutines blocked
// for good after a corruption, which ends the process in real use but
// would outlive the test here.
func openCorrupt(t *testing.T, dir string, readOnly bool) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCorruptStoreIsAClearError$")
	cmd.Env = append(os.Environ(), envCorruptDir+"="+dir, envCorruptReadOnly+"="+strconv.FormatBool(readOnly))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(out.String(), "error: store "+dir) {
			t.Fatalf("a corrupt store (read-only %v): %v\n%s", readOnly, err, lastLine(out.String(), "error: "))
		}
		t.Logf("corrupt store (read-only %v): %.300s", readOnly, lastLine(out.String(), "error: "))
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("opening and reading a corrupt store (read-only %v) still runs after 10 s", readOnly)
	}
}

const envCorruptDir, envCorruptReadOnly = "DEMANDPIPE_CORRUPT_DIR", "DEMANDPIPE_CORRUPT_READONLY"

// corruptChild is the child of openCorrupt: open, read every row, and
// exit 3 with the error (0: no error).
func corruptChild(dir string, readOnly bool) {
	c := testConfig(dir)
	c.ReadOnly = readOnly
	s, err := Open(c, nil)
	if err == nil {
		for _, m := range s.Minutes(nil) {
			for _, p := range s.Products() {
				if err == nil {
					err = s.Scan(m.Minute, p, func(uint64, []int32) bool { return true })
				}
			}
		}
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

func lastLine(s, prefix string) string {
	for _, l := range slices.Backward(strings.Split(s, "\n")) {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestCorruptReadFailsTheStore: a store whose row blocks are corrupt
// opens (Open reads only the small keys), and the first read of a bad
// block returns pebble's corruption error and fails the store: Done is
// closed and Err says why, so a process serving it ends with a clear error
// instead of answering some reads and not others (serve answers that read
// 500 and exits: TestServeEndsOnCorruptStore in cmd/demandpipe). In a
// child process, as above.
func TestCorruptReadFailsTheStore(t *testing.T) {
	if dir := os.Getenv(envCorruptReadDir); dir != "" {
		corruptReadChild(dir)
	}
	dir := t.TempDir()
	corruptRows(t, dir)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCorruptReadFailsTheStore$")
	cmd.Env = append(os.Environ(), envCorruptReadDir+"="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(out), "corruption") || !strings.Contains(string(out), "store failed: true") {
		t.Fatalf("reading a store with corrupt rows: %v\n%s", err, out)
	}
	t.Logf("%.400s", lastLine(string(out), "error: "))
}

const envCorruptReadDir = "DEMANDPIPE_CORRUPT_READ_DIR"

// corruptRows writes the test store at dir and flips bytes in the middle
// of its largest table file, where the row blocks are: its index and
// footer stay whole, so it opens.
func corruptRows(t testing.TB, dir string) {
	t.Helper()
	writeCorruptible(t, dir)
	if err := corruptfile.LargestTable(dir); err != nil {
		t.Fatal(err)
	}
}

// writeCorruptible writes a store of 4 minutes of 2 products x 3,000
// cells at dir and closes it.
func writeCorruptible(t testing.TB, dir string) {
	t.Helper()
	s := openTest(t, testConfig(dir))
	names := encode.NewProducts()
	cells := testCells(3000)
	for i := range 4 {
		writeMinute(t, s, names, testMinute0+int64(i), 2, cells, 500)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// corruptReadChild opens the store (exit 4 if that fails), reads every
// row, and exits 3 with the read's error and whether the store failed.
func corruptReadChild(dir string) {
	c := testConfig(dir)
	c.ReadOnly = true
	s, err := Open(c, nil)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(4)
	}
	cells := testCells(3000)
	var rows []Row
	for _, m := range s.Minutes(nil) {
		for _, p := range s.Products() {
			if err == nil {
				rows, err = s.GetMany(rows, m.Minute, p, cells)
			}
		}
	}
	if err != nil {
		failed := false
		select {
		case <-s.Done():
			failed = s.Err() != nil
		case <-time.After(time.Second):
		}
		fmt.Println("error:", err)
		fmt.Println("store failed:", failed)
		os.Exit(3)
	}
	os.Exit(0)
}
