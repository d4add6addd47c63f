package store

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSecondProcessGetsAClearError: a store open in another process is
// "in use by another process" (the lock error was classified by its text,
// which for another process says only "resource temporarily unavailable").
func TestSecondProcessGetsAClearError(t *testing.T) {
	if dir := os.Getenv("DEMANDPIPE_STORE_HOLDER"); dir != "" {
		s, err := Open(testConfig(dir), nil)
		if err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("open\n")
		time.Sleep(30 * time.Second) // until killed
		s.Close()
		os.Exit(0)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondProcessGetsAClearError$")
	cmd.Env = append(os.Environ(), "DEMANDPIPE_STORE_HOLDER="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if l, err := bufio.NewReader(out).ReadString('\n'); err != nil || l != "open\n" {
		t.Fatalf("holder: %q %v", l, err)
	}
	_, err := Open(testConfig(dir), nil)
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("err = %v", err)
	}
}
