package store

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
)

// The crash tests re-execute the test binary as a writer process
// (crashChild), kill it with SIGKILL, and reopen its store.

const (
	envCrashDir  = "DEMANDPIPE_STORE_CRASH_DIR"
	envCrashHang = "DEMANDPIPE_STORE_CRASH_HANG" // close this many minutes, write half of the next, block
	crashCells   = 2000
	crashProds   = 2
)

// crashChild runs the writer when the test binary is started by a crash
// test, and reports whether it did (then the process must not run tests).
func crashChild() bool {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		return false
	}
	hang, _ := strconv.Atoi(os.Getenv(envCrashHang))
	c := testConfig(dir)
	c.Sync = true // the contract under test: a closed minute survives
	s, err := Open(c, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	t := &childTB{}
	names := encode.NewProducts()
	cells := testCells(crashCells)
	for i := int64(0); ; i++ {
		m := testMinute0 + i
		if hang > 0 && i == int64(hang) {
			// Half a minute in the open batch, then wait for the kill.
			writeHalf(t, s, names, m, cells[:crashCells/2])
			fmt.Println("half", m)
			select {}
		}
		writeMinute(t, s, names, m, crashProds, cells, 500)
		fmt.Println("closed", m)
	}
}

func writeHalf(t testing.TB, s *Store, names *encode.Products, m int64, cells []uint64) {
	var b encode.Batch
	b.Names = names
	b.Reset(m, 54)
	code, _ := names.Code(testProduct(0))
	var f []int32
	for _, c := range cells {
		f = testFeatures(f, m, 0, c, 54)
		b.Cells, b.Products, b.Features = append(b.Cells, c), append(b.Products, code), append(b.Features, f...)
	}
	if err := s.Write(context.Background(), &b); err != nil {
		t.Fatalf("%v", err)
	}
}

// childTB lets the test helpers run outside a test.
type childTB struct{ testing.TB }

func (*childTB) Helper() {}
func (*childTB) Fatalf(format string, args ...any) {
	fmt.Println("error", fmt.Sprintf(format, args...))
	os.Exit(2)
}

// startWriter starts a writer process on dir and returns its stdout lines.
func startWriter(t *testing.T, dir string, hang int) (*exec.Cmd, <-chan string) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashHang+"="+strconv.Itoa(hang))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return cmd, lines
}

func kill9(t *testing.T, cmd *exec.Cmd, lines <-chan string) []string {
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("writer ended with %v, not SIGKILL", err)
	}
	return rest
}

func lastClosed(t *testing.T, lines []string) int64 {
	last := int64(-1)
	for _, l := range lines {
		if strings.HasPrefix(l, "error") {
			t.Fatalf("writer: %s", l)
		}
		if m, ok := strings.CutPrefix(l, "closed "); ok {
			last, _ = strconv.ParseInt(m, 10, 64)
		}
	}
	return last
}

// TestKillMidMinute: SIGKILL while a minute is half written loses that
// minute only; every closed minute reads back whole.
func TestKillMidMinute(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	dir := t.TempDir()
	cmd, lines := startWriter(t, dir, 4)
	var seen []string
	timeout := time.After(60 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("writer exited early: %v", seen)
			}
			seen = append(seen, l)
			done = strings.HasPrefix(l, "half")
		case <-timeout:
			t.Fatalf("writer too slow: %v", seen)
		}
	}
	seen = append(seen, kill9(t, cmd, lines)...)
	if got := lastClosed(t, seen); got != testMinute0+3 {
		t.Fatalf("writer reported minute %d closed last", got)
	}
	s := openTest(t, testConfig(dir))
	defer s.Close()
	mins := s.Minutes(nil)
	if len(mins) != 4 || mins[0].Minute != testMinute0+3 {
		t.Fatalf("after the kill: minutes %+v", mins)
	}
	for _, mi := range mins {
		checkMinute(t, s, mi.Minute, crashProds, testCells(crashCells))
	}
	if _, err := s.Get(nil, testMinute0+4, testProduct(0), testCells(1)[0]); err == nil {
		t.Fatal("the half-written minute is readable")
	}
	// The store takes writes again, from the lost minute on.
	writeMinute(t, s, encode.NewProducts(), testMinute0+4, crashProds, testCells(crashCells), 500)
	checkMinute(t, s, testMinute0+4, crashProds, testCells(crashCells))
}

// TestKillAnytime: SIGKILL at random points of a writer closing minutes as
// fast as it can; every minute it reported closed is there and whole, and
// so is any other minute the store lists.
func TestKillAnytime(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	r := rand.New(rand.NewPCG(testsize.Seed(t), 1))
	for round := range 2 {
		dir := t.TempDir()
		cmd, lines := startWriter(t, dir, 0)
		var seen []string
		// Wait for two closed minutes, then kill after a random delay.
		for n := 0; n < 2; {
			l, ok := <-lines
			if !ok {
				t.Fatalf("writer exited early: %v", seen)
			}
			seen = append(seen, l)
			if strings.HasPrefix(l, "closed") {
				n++
			}
		}
		time.Sleep(time.Duration(r.IntN(150)) * time.Millisecond)
		seen = append(seen, kill9(t, cmd, lines)...)
		last := lastClosed(t, seen)
		s := openTest(t, testConfig(dir))
		latest, ok := s.LatestMinute()
		if !ok || latest < last {
			t.Fatalf("round %d: reported minute %d closed, store's latest is %d", round, last, latest)
		}
		mins := s.Minutes(nil)
		for _, mi := range mins {
			checkMinute(t, s, mi.Minute, crashProds, testCells(crashCells))
		}
		t.Logf("round %d: killed after minute %d was reported closed; store has %d minutes, latest %d", round, last, len(mins), latest)
		s.Close()
	}
}
