package source

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func TestFileReadsPlainGzipZstd(t *testing.T) {
	want := strings.Repeat(`{"ts":1,"rider_id":"r","lat":1,"lng":2,"product_type":"a1b2c3d4-0000-4000-8000-000000000001"}`+"\n", 1000)
	dir := t.TempDir()
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write([]byte(want))
	gw.Close()
	zw, _ := zstd.NewWriter(&zs)
	zw.Write([]byte(want))
	zw.Close()
	// Names do not matter: the format is detected from the first bytes.
	for name, data := range map[string][]byte{"plain.ndjson": []byte(want), "a.gz": gz.Bytes(), "b.data": zs.Bytes()} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		s, err := Open("file:" + p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(s)
		if err != nil || string(got) != want {
			t.Fatalf("%s: %d bytes, err %v", name, len(got), err)
		}
		if read, total := s.Position(); total != int64(len(data)) || read != total {
			t.Fatalf("%s: position %d/%d", name, read, total)
		}
		s.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	for _, spec := range []string{"nope", "kafka:x", "file:", "file:/does/not/exist", "gen:rate=0", "gen:bogus=1", "gen:speed=-1"} {
		if _, err := Open(spec); err == nil {
			t.Errorf("%q accepted", spec)
		}
	}
}

func TestGenLiveAndStop(t *testing.T) {
	s, err := OpenGen("rate=600000,seed=3,speed=10")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<16)
	n, err := s.Read(buf)
	if err != nil || n == 0 || !bytes.Contains(buf[:n], []byte(`"product_type"`)) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	go func() { time.Sleep(50 * time.Millisecond); s.Stop() }()
	small := make([]byte, 333) // lines straddle reads
	last := byte(0)
	for {
		n, err := s.Read(small)
		if n > 0 {
			last = small[n-1]
		}
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if last != '\n' {
		t.Fatal("stop cut a line in two")
	}
	if s.Count() == 0 {
		t.Fatal("no events made")
	}
}

// TestFileStopEndsAtLineBoundary: after Stop the file source finishes the
// line it is in and then reports the end.
func TestFileStopEndsAtLineBoundary(t *testing.T) {
	line := `{"ts":1,"rider_id":"r","lat":1,"lng":2,"product_type":"a1b2c3d4-0000-4000-8000-000000000001"}` + "\n"
	s, err := NewReader(strings.NewReader(strings.Repeat(line, 100)))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 150) // ends mid-line
	n, _ := s.Read(buf)
	got := append([]byte(nil), buf[:n]...)
	s.Stop()
	rest, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, rest...)
	if len(got) != 2*len(line) || got[len(got)-1] != '\n' {
		t.Fatalf("read %d bytes after stop, want the first two whole lines (%d)", len(got), 2*len(line))
	}
}

// TestParseGenSpecErrors: a bad setting says what is wanted, in our words,
// not which Go function failed.
func TestParseGenSpecErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"rate=abc":                  `rate="abc": want a whole number`,
		"late=x":                    `late="x": want a number`,
		"seed=99999999999999999999": `seed="99999999999999999999": out of range`,
		"nope=1":                    `unknown setting "nope"`,
	} {
		_, _, err := ParseGenSpec(spec)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "strconv") {
			t.Errorf("%s: err = %v", spec, err)
		}
	}
}

// TestOpeners: sources open from a map of kinds as sinks do; an unknown
// kind names the known ones without printing a secret of its spec, and a
// failed open returns a nil Source.
func TestOpeners(t *testing.T) {
	if got := strings.Join(Builtin().Kinds(), ","); got != "file,gen" {
		t.Fatalf("kinds %s", got)
	}
	if _, err := Open("kafka://b:9092/rides"); err == nil || !strings.Contains(err.Error(), "known: file, gen") {
		t.Fatalf("unknown kind: %v", err)
	}
	const secret = "s3cr3t-T0KEN"
	if _, err := Open("kafka://user:" + secret + "@b:9092/rides?token=" + secret); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("an unknown kind with secrets: %v, want an error that does not print them", err)
	}
	s, err := Open("file:/nonexistent/events.ndjson")
	if err == nil || s != nil {
		t.Fatalf("a missing file: source %v, err %v; want a nil Source and an error", s, err)
	}
	only := Openers{"gen": Builtin()["gen"]}
	if _, err := only.Open("file:-"); err == nil || !strings.Contains(err.Error(), "known: gen") {
		t.Fatalf("a set without file: %v", err)
	}
	g, err := only.Open("gen:rate=1000,seed=1")
	if err != nil || !g.Live() {
		t.Fatalf("gen: %v", err)
	}
	g.Close()
}
