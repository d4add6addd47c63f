package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGenThenRun is the newcomer's path: gen a file, replay it, read rows.
func TestGenThenRun(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events.ndjson.zst")
	rows := filepath.Join(dir, "rows.ndjson")
	rejects := filepath.Join(dir, "rejects.ndjson")
	if err := genCommand([]string{"-o", events, "-events", "30000", "-rate", "10000", "-riders", "3000", "-malformed", "0.01"}); err != nil {
		t.Fatal(err)
	}
	if err := runCommand([]string{"-source=file:" + events, "-sink=ndjson:" + rows, "-rejects=" + rejects, "-progress=never"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(rows)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	var last time.Time
	for sc.Scan() {
		var r struct {
			H3          string  `json:"h3"`
			ProductType string  `json:"product_type"`
			Minute      string  `json:"minute"`
			Features    []int64 `json:"features"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("row %d: %v", n, err)
		}
		m, err := time.Parse(time.RFC3339, r.Minute)
		if err != nil || len(r.H3) != 15 || len(r.ProductType) != 36 || len(r.Features) != 54 || m.Before(last) {
			t.Fatalf("row %d: %s", n, sc.Text())
		}
		last = m
		n++
	}
	if n == 0 {
		t.Fatal("no rows")
	}
	rej, _ := os.ReadFile(rejects)
	if c := strings.Count(string(rej), "\n"); c < 100 || c > 500 {
		t.Fatalf("%d rejected lines for 1%% of 30000 malformed", c)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-h3.resolution=16"},
		{"-kring.rings=1,x"},
		{"-windows.minutes=0"},
		{"-sink=kafka:x"},
		{"-source=nope"},
		{"-progress=sometimes"},
	} {
		if err := runCommand(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
