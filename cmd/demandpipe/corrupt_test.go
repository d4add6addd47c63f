package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/internal/corruptfile"
	"github.com/demandpipe/demandpipe/internal/norace"
)

// TestServeEndsOnCorruptStore is issue 22's corrupt store: `serve` of a
// store whose row blocks are corrupt starts (the small keys it reads at
// open are whole), answers the read that meets a bad block with 500 and
// the store's error, and exits non-zero within 5 s naming the corruption
// (was: it went on answering some reads and not others, and an earlier
// build hung). The serve process is this test binary again.
func TestServeEndsOnCorruptStore(t *testing.T) {
	if args := os.Getenv("DEMANDPIPE_SERVE_ARGS"); args != "" {
		if err := serveCommand(strings.Split(args, "\x1f")); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	t.Parallel()
	if norace.Run(t) {
		return
	}
	dir := t.TempDir()
	events, storeDir := filepath.Join(dir, "events.ndjson"), filepath.Join(dir, "store")
	if err := genCommand([]string{"-o", events, "-events", "30000", "-rate", "6000", "-riders", "3000"}); err != nil {
		t.Fatal(err)
	}
	if err := runCommand([]string{"-source=file:" + events, "-sink=store:" + storeDir, "-serve=", "-progress=never", "-kring.rings=0,1,2", "-windows.minutes=1,2"}); err != nil {
		t.Fatal(err)
	}
	if err := corruptfile.LargestTable(storeDir); err != nil {
		t.Fatal(err)
	}
	cmd, stderr, done := startChild(t, "^TestServeEndsOnCorruptStore$", "DEMANDPIPE_SERVE_ARGS="+strings.Join([]string{"-store=" + storeDir, "-addr=127.0.0.1:0"}, "\x1f"))
	defer cmd.Process.Kill()
	addr := ""
	re := regexp.MustCompile(`on http://([0-9.:]+)/`)
	for deadline := time.Now().Add(10 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("serve did not start:\n%s", stderr.String())
	}
	var prods struct{ Products []string }
	getJSON(t, "http://"+addr+"/v1/products", &prods)
	var mins struct{ Minutes []struct{ Minute string } }
	getJSON(t, "http://"+addr+"/v1/minutes", &mins)
	got500 := false
	for _, m := range mins.Minutes {
		for _, p := range prods.Products {
			resp, err := http.Get("http://" + addr + "/v1/map?product=" + p + "&minute=" + m.Minute)
			if err != nil {
				break // the server has stopped
			}
			b := new(strings.Builder)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				b.WriteString(sc.Text())
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusInternalServerError {
				if !strings.Contains(b.String(), "corruption") {
					t.Fatalf("500 without the store's error: %s", b.String())
				}
				got500 = true
				break
			}
		}
		if got500 {
			break
		}
	}
	if !got500 {
		t.Fatalf("no read met the corrupt block (%d minutes): the test no longer reaches it", len(mins.Minutes))
	}
	start := time.Now()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(stderr.String(), "error: serve: the store failed") || !strings.Contains(stderr.String(), "corruption") {
			t.Fatalf("serve ended with %v:\n%s", err, lastLines(stderr.String(), 3))
		}
		t.Logf("serve exited %d, %v after the 500:\n%s", ee.ExitCode(), time.Since(start).Round(time.Millisecond), stderr.String())
	case <-time.After(5 * time.Second):
		t.Fatalf("serve still runs 5 s after the store failed:\n%s", lastLines(stderr.String(), 3))
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}
