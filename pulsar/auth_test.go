package pulsar

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/demandpipe/demandpipe/internal/pulsartest"
	"github.com/demandpipe/demandpipe/pulsar/conn"
)

// Tests of pulsar+ssl://, tls-ca-file=, token-file= and the token from
// the environment, against the test broker with TLS and tokens.

// secureBroker is a TLS test broker accepting token, with its CA's file.
type secureBroker struct {
	s      *pulsartest.Server
	caFile string
	token  string
}

func startSecureBroker(t *testing.T) secureBroker {
	t.Helper()
	tc, caPEM, err := pulsartest.GenerateTLS()
	if err != nil {
		t.Fatal(err)
	}
	b := secureBroker{caFile: filepath.Join(t.TempDir(), "ca.pem"), token: "tok-" + fmt.Sprint(time.Now().UnixNano())}
	if err := os.WriteFile(b.caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	b.s, err = pulsartest.Start(pulsartest.Config{TLS: tc, Tokens: []string{b.token}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.s.Close() })
	return b
}

// publish sends lines to topic over TLS with the broker's token.
func (b secureBroker) publish(t *testing.T, topic string, lines []string) {
	t.Helper()
	cfg := conn.DefaultConfig()
	cfg.ServiceURL, cfg.Topic, cfg.TLSCAFile, cfg.Token = b.s.URL(), topic, b.caFile, b.token
	client, err := conn.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	prod, err := client.CreateProducer(pulsar.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for _, l := range lines {
		if _, err := prod.Send(t.Context(), &pulsar.ProducerMessage{Payload: []byte(l)}); err != nil {
			t.Fatal(err)
		}
	}
}

// tokenFile writes token to a file (with the newline an editor leaves).
func tokenFile(t *testing.T, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func authLines(n int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf(`{"i":%d}`, i)
	}
	return lines
}

// TestPulsarTLSWithToken: the source reads a topic over pulsar+ssl://,
// trusting the broker's CA from tls-ca-file=, with the token from
// token-file= and from env DEMANDPIPE_PULSAR_TOKEN.
func TestPulsarTLSWithToken(t *testing.T) {
	b := startSecureBroker(t)
	if !strings.HasPrefix(b.s.URL(), "pulsar+ssl://") {
		t.Fatalf("broker URL %s", b.s.URL())
	}
	topic := testTopic(t)
	want := authLines(25)
	b.publish(t, topic, want)
	for _, tc := range []struct {
		name, env, query string
	}{
		{"token-file", "", "&token-file=" + tokenFile(t, b.token)},
		{"env", b.token, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(conn.TokenEnv, tc.env)
			p, err := Open(b.s.URL() + "/" + topic + "?subscription=" + tc.name + "&until=end&tls-ca-file=" + b.caFile + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			got, _ := readLines(t, p, -1)
			if !slices.Equal(got, want) {
				t.Fatalf("read %d lines %q, want %q", len(got), got, want)
			}
		})
	}
	if st := b.s.Stats(); st.Rejected != 0 || st.TLSFailures != 0 {
		t.Errorf("broker refused %d connections and failed %d handshakes, want none", st.Rejected, st.TLSFailures)
	}
}

// TestPulsarRefusedFailsFast: a refused token or an untrusted certificate
// fails the open within a few seconds, not the 30 s operation timeout the
// client would retry for, with an error that says what to fix.
func TestPulsarRefusedFailsFast(t *testing.T) {
	b := startSecureBroker(t)
	_, otherCA, err := pulsartest.GenerateTLS()
	if err != nil {
		t.Fatal(err)
	}
	otherCAFile := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherCAFile, otherCA, 0o600); err != nil {
		t.Fatal(err)
	}
	wrongFile := tokenFile(t, "not-"+b.token)
	for _, tc := range []struct {
		name, env, query string
		want             []string // in the error
	}{
		{"wrong-token-file", "", "&token-file=" + wrongFile,
			[]string{"authentication failed", "Failed to authenticate", "token-file=" + wrongFile}},
		{"wrong-env-token", "not-" + b.token, "",
			[]string{"authentication failed", "env " + conn.TokenEnv}},
		{"no-token", "", "",
			[]string{"authentication failed", "no token was given"}},
		{"untrusted-ca", b.token, "&tls-ca-file=" + otherCAFile,
			[]string{"TLS handshake failed", "certificate", "tls-ca-file=" + otherCAFile}},
		{"no-ca", b.token, "",
			[]string{"TLS handshake failed", "tls-ca-file="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(conn.TokenEnv, tc.env)
			query := tc.query
			if !strings.Contains(query, "tls-ca-file=") && tc.name != "no-ca" {
				query += "&tls-ca-file=" + b.caFile
			}
			start := time.Now()
			p, err := Open(b.s.URL() + "/rides?subscription=s" + query)
			if err == nil {
				p.Close()
				t.Fatal("opened")
			}
			t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("failed after %s, want within a few seconds", d)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestPulsarTokenRevokedMidRun: when the broker stops accepting the token
// and the connection drops, the client retries for ever; the run ends
// with the authentication error instead, and Close returns at once (the
// client's own closing, which waits for its retry to time out, ends in
// the background).
func TestPulsarTokenRevokedMidRun(t *testing.T) {
	b := startSecureBroker(t)
	topic := testTopic(t)
	b.publish(t, topic, authLines(3))
	t.Setenv(conn.TokenEnv, b.token)
	p, err := Open(b.s.URL() + "/" + topic + "?subscription=s&operation-timeout=1s&tls-ca-file=" + b.caFile)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		start := time.Now()
		p.Close()
		if d := time.Since(start); d > time.Second {
			t.Errorf("Close took %s", d)
		}
		backgroundCloses.Wait() // within the 1s operation timeout
	}()
	readLines(t, p, 3)
	if err := b.s.SetTokens([]string{"rotated"}); err != nil {
		t.Fatal(err)
	}
	b.s.DropConnections()
	errc := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 100))
		errc <- err
	}()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "authentication failed") {
			t.Fatalf("Read after the token was revoked: %v, want authentication failed", err)
		}
		t.Logf("Read: %v", err)
	case <-time.After(10 * time.Second):
		p.Stop() // ends the Read
		<-errc
		t.Fatal("Read still waiting 10 s after the token was revoked")
	}
}
