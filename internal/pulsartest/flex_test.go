package pulsartest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// flexDir finds node and a directory where pulsar-flex 1.1.1 is installed,
// or skips the test. It needs node and npm; `npm ci` installs the locked
// packages into a temporary copy of testdata/flex, unless
// PULSARTEST_FLEX_DIR names a copy where node_modules is already
// installed.
func flexDir(t *testing.T) (node, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("skipping: node not installed (needed for the pulsar-flex check)")
	}
	dir = os.Getenv("PULSARTEST_FLEX_DIR")
	if dir == "" {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Skip("skipping: npm not installed (needed for the pulsar-flex check)")
		}
		dir = t.TempDir()
		for _, f := range []string{"package.json", "package-lock.json", "produce.js", "consume.js"} {
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
	return node, dir
}

// flexProduce runs produce.js: k messages to topic, with token (if not
// empty) as the CONNECT's auth data.
func flexProduce(node, dir, addr, topic string, k int, token string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "produce.js", addr, topic, fmt.Sprint(k))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PULSAR_FLEX_JWT="+token)
	return cmd.CombinedOutput()
}

// TestFlexProducer checks the double against an independent client: the
// pure-JS pulsar-flex 1.1.1 producer (testdata/flex) writes K messages and
// the Go client reads them back, without authentication and with a token.
// pulsar-flex has no TLS (it dials with net.connect), so TLS is checked
// with the Go client only (auth_test.go).
func TestFlexProducer(t *testing.T) {
	node, dir := flexDir(t)
	const k = 40
	check := func(t *testing.T, s *Server, token string) {
		client := newClient(t, s)
		if token != "" {
			client, _ = newAuthClient(t, s.URL(), "", token)
		}
		topic := topicName(t)
		cons := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "go", Type: pulsar.Exclusive})
		if out, err := flexProduce(node, dir, s.Addr(), topic, k, token); err != nil {
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
	t.Run("plain", func(t *testing.T) {
		check(t, startBroker(t, Config{}), "")
	})
	t.Run("token", func(t *testing.T) {
		s := startBroker(t, Config{Tokens: []string{"flex-token"}})
		check(t, s, "flex-token")
		// A wrong token: pulsar-flex gives up at the refusal (no retry)
		// and reports the broker's message.
		start := time.Now()
		out, err := flexProduce(node, dir, s.Addr(), topicName(t), 1, "wrong")
		if err == nil {
			t.Fatalf("pulsar-flex produced with a wrong token:\n%s", out)
		}
		if !strings.Contains(string(out), "Failed to authenticate") {
			t.Errorf("pulsar-flex output lacks the refusal: %v\n%s", err, out)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("pulsar-flex took %s to fail", d)
		}
		if s.Stats().Rejected == 0 {
			t.Error("Stats.Rejected = 0 after a wrong token")
		}
	})
}
