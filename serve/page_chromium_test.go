package serve

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

const chromiumPath = "/usr/bin/chromium"

// chromium runs headless Chromium on url with extra flags and returns its
// stdout. The profile directory is fresh and removed afterwards.
func chromium(t *testing.T, url string, extra ...string) []byte {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("headless page test skipped: %s not found (apt-get install -y chromium)", chromiumPath)
	}
	profile := t.TempDir()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-first-run", "--user-data-dir=" + profile,
		// Virtual time runs the page's fetches and first draw, then stops:
		// no sleeping for the refresh timer.
		"--virtual-time-budget=5000", "--window-size=1280,860",
	}, extra...)
	args = append(args, url)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromiumPath, args...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("chromium %v: %v\n%s", extra, err, stderr)
	}
	return out
}

var polygonRE = regexp.MustCompile(`<polygon points="[-0-9., ]+" fill="rgb\(\d+,\d+,\d+\)" data-h3="[0-9a-f]{15}"`)

// TestPageInChromium loads / in headless Chromium against a live server:
// the DOM must hold one SVG polygon per non-zero cell of the latest minute
// and a status line naming it; a screenshot is saved and its path logged.
func TestPageInChromium(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	dom := chromium(t, f.ts.URL+"/", "--dump-dom")
	want := 3*7*8 + 1 // cells within radius 7 have rows for product 0
	polys := polygonRE.FindAll(dom, -1)
	if len(polys) != want {
		t.Fatalf("page drew %d hexagons, want %d; DOM:\n%.3000s", len(polys), want, dom)
	}
	if m := regexp.MustCompile(`data-cells="(\d+)"`).FindSubmatch(dom); m == nil || string(m[1]) != strconv.Itoa(want) {
		t.Errorf("svg data-cells = %q", m)
	}
	if !regexp.MustCompile(`<div id="status" role="status"( class="")?>minute 2024-05-18T02:41:00Z \(\d+ s ago\) · k=2 w=4 · 169 cells</div>`).Match(dom) {
		t.Errorf("status line not found in DOM:\n%.2000s", dom)
	}

	dir := os.Getenv("DEMANDPIPE_SCREENSHOT_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	shot := filepath.Join(dir, fmt.Sprintf("demandpipe-page-%d.png", time.Now().UnixNano()))
	chromium(t, f.ts.URL+"/", "--screenshot="+shot, "--hide-scrollbars")
	st, err := os.Stat(shot)
	if err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v (size %d)", shot, err, sizeOf(st))
	}
	t.Logf("screenshot of the page: %s (%d bytes)", shot, st.Size())
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}
