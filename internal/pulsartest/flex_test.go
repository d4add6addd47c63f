package pulsartest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// TestFlexProducer checks the double against an independent client: the
// pure-JS pulsar-flex 1.1.1 producer (testdata/flex) writes K messages and
// the Go client reads them back. It needs node and npm; `npm ci` installs
// the locked packages into a temporary copy of testdata/flex, unless
// PULSARTEST_FLEX_DIR names a copy where node_modules is already installed.
func TestFlexProducer(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("skipping: node not installed (needed for the pulsar-flex check)")
	}
	dir := os.Getenv("PULSARTEST_FLEX_DIR")
	if dir == "" {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Skip("skipping: npm not installed (needed for the pulsar-flex check)")
		}
		dir = t.TempDir()
		for _, f := range []string{"package.json", "package-lock.json", "produce.js"} {
			b, err := os.ReadFile(filepath.Join("testdata", "flex", f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		install := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
		install.Dir = dir
		if out, err := install.CombinedOutput(); err != nil {
			t.Skipf("skipping: pulsar-flex@1.1.1 unavailable, npm ci failed: %v\n%s", err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "pulsar-flex")); err != nil {
		t.Skipf("skipping: pulsar-flex not installed in %s", dir)
	}

	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	cons := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "go", Type: pulsar.Exclusive})

	const k = 40
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "produce.js", s.Addr(), topic, fmt.Sprint(k))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pulsar-flex producer: %v\n%s", err, out)
	}
	for i := range k {
		m := receive(t, cons, 5*time.Second)
		if want := fmt.Sprintf("flex-%d", i); string(m.Payload()) != want {
			t.Fatalf("message %d: %q, want %q", i, m.Payload(), want)
		}
		if m.Properties()["source"] != "pulsar-flex" {
			t.Errorf("message %d: properties %v", i, m.Properties())
		}
		cons.Ack(m)
	}
	if got := s.Stats().MessagesIn[topic]; got != k {
		t.Errorf("MessagesIn = %d, want %d", got, k)
	}
}
