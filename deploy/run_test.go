package deploy

import (
	"bufio"
	"context"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Running the built binary: one command, or a `run` in the background.

// runBin runs bin with args and returns its stdout, stderr and exit code.
func runBin(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("%s %q: %v", bin, args, err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// aRun is a `demandpipe run` in the background.
type aRun struct {
	cmd    *exec.Cmd
	addr   string        // 127.0.0.1:PORT it serves on
	done   chan struct{} // closed when its stderr ends
	mu     sync.Mutex
	stderr strings.Builder
}

func (r *aRun) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

var servingLine = regexp.MustCompile(`url="?http://([^/" ]+)/`)

// startRun starts bin with args in dir and waits until it logs the
// address it serves on.
func startRun(t *testing.T, bin, dir string, args ...string) *aRun {
	t.Helper()
	r := &aRun{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	r.cmd.Dir = dir
	pipe, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan string, 1)
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			r.mu.Lock()
			r.stderr.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrs <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pipe)
	}()
	select {
	case a := <-addrs:
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatalf("serving on %q: %v", a, err)
		}
		r.addr = net.JoinHostPort("127.0.0.1", port)
	case <-r.done:
		r.cmd.Wait()
		t.Fatalf("%q exited (%v) before serving:\n%s", args, r.cmd.ProcessState, r.log())
	case <-time.After(20 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
		r.cmd.Wait()
		t.Fatalf("%q: not serving after 20 s:\n%s", args, r.log())
	}
	return r
}

// stop sends SIGTERM, as docker stop and systemctl stop do, and wants exit
// 0 well within the stop timeouts.
func (r *aRun) stop(t *testing.T) {
	t.Helper()
	start := time.Now()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
		r.cmd.Wait()
		t.Fatalf("still running 30 s after SIGTERM:\n%s", r.log())
	}
	r.cmd.Wait()
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, r.log())
	}
	t.Logf("stopped by SIGTERM in %v", time.Since(start).Round(time.Millisecond))
}
