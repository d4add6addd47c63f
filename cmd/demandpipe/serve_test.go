package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/store"
)

func TestStartServerAndShutdown(t *testing.T) {
	t.Parallel()
	sc := store.DefaultConfig()
	sc.Dir = t.TempDir()
	st, err := store.Open(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The minute that just ended: /readyz wants a fresh one.
	if err := st.CloseMinute(context.Background(), time.Now().Unix()/60-1); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := startServer("127.0.0.1:0", serve.DefaultConfig(), st, reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/readyz": `"status":"ready"`, "/metrics": "demandpipe_serve_requests_total", "/": "<svg"} {
		res, err := http.Get("http://" + srv.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %.200s", path, res.StatusCode, b)
		}
	}
	if err := srv.Shutdown(time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + srv.Addr + "/healthz"); err == nil {
		t.Fatal("still serving after Shutdown")
	}
}

// TestServeCommand runs `demandpipe serve` on a store as a subprocess
// (this test binary, re-executed), reads from it, and stops it with
// SIGTERM: it must exit 0.
func TestServeCommand(t *testing.T) {
	if dir := os.Getenv("DEMANDPIPE_SERVE_CMD_STORE"); dir != "" {
		if err := serveCommand([]string{"-store=" + dir, "-addr=127.0.0.1:0"}); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Parallel()
	sc := store.DefaultConfig()
	sc.Dir = t.TempDir()
	st, err := store.Open(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.CloseMinute(context.Background(), 28_600_000)
	st.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestServeCommand$")
	cmd.Env = append(os.Environ(), "DEMANDPIPE_SERVE_CMD_STORE="+sc.Dir)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _ := io.ReadAtLeast(stderr, buf, 20)
	line := string(buf[:n])
	i := strings.Index(line, "http://")
	if i < 0 {
		cmd.Process.Kill()
		t.Fatalf("no address in %q", line)
	}
	url := strings.Fields(line[i:])[0]
	res, err := http.Get(url + "v1/minutes")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `"minute":"2024-05-18T02:40:00Z"`) {
		t.Errorf("minutes: %s", body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	go io.Copy(io.Discard, stderr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v", err)
	}
}
