package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/internal/pulsartest"
	"github.com/demandpipe/demandpipe/pulsar/conn"
)

// TestPulsarTLSTokenRunEqualsFile: a topic published and read over
// pulsar+ssl://, trusting the broker's CA from tls-ca-file= and with the
// token from token-file=, gives exactly the rows of the same file run from
// disk; a run with a token the broker refuses fails within seconds saying
// authentication failed.
func TestPulsarTLSTokenRunEqualsFile(t *testing.T) {
	t.Setenv(conn.TokenEnv, "") // the token comes from token-file= only
	s, caFile, tokenFile, wrongFile := tlsTokenBroker(t)
	dir := t.TempDir()
	topic := pulsarTopic(t)
	url := s.URL() + "/" + topic
	auth := "tls-ca-file=" + caFile + "&token-file=" + tokenFile

	events := genEvents(t, dir, 1500)
	if err := publishCommand([]string{"-to=" + url + "?" + auth, "-progress=never", events}); err != nil {
		t.Fatal(err)
	}
	file, fromTopic := filepath.Join(dir, "file"), filepath.Join(dir, "topic")
	if err := runCommand(storeArgs("file:"+events, file, smallDef...)); err != nil {
		t.Fatal(err)
	}
	if err := runCommand(storeArgs(url+"?subscription=dp&until=end&"+auth, fromTopic, smallDef...)); err != nil {
		t.Fatal(err)
	}
	compareStores(t, file, fromTopic)

	start := time.Now()
	err := runCommand(storeArgs(url+"?subscription=dp&until=end&tls-ca-file="+caFile+"&token-file="+wrongFile, filepath.Join(dir, "refused"), smallDef...))
	if err == nil || !strings.Contains(err.Error(), "authentication failed") || !strings.Contains(err.Error(), wrongFile) {
		t.Fatalf("run with a refused token: %v, want authentication failed naming %s", err, wrongFile)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("run with a refused token failed after %s, want within seconds", d)
	}
	// publish, and the scale-out roles' client (conn.Dial), too.
	start = time.Now()
	err = publishCommand([]string{"-to=" + url + "?tls-ca-file=" + caFile + "&token-file=" + wrongFile, "-progress=never", events})
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("publish with a refused token: %v, want authentication failed", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("publish with a refused token failed after %s, want within seconds", d)
	}
	if st := s.Stats(); st.Rejected == 0 || st.TLSFailures != 0 {
		t.Errorf("broker: Rejected = %d, TLSFailures = %d; want the refused token counted and no failed handshake", st.Rejected, st.TLSFailures)
	}
}

// TestRolesOverTLSWithTokenFile: the scale-out roles connect with the
// settings of -scaleout.url (pulsar+ssl://, tls-ca-file=, token-file=):
// one dedup and three aggregate processes through a broker that serves TLS
// and checks tokens write exactly one run's rows; a refused token ends a
// role within seconds, naming the file; a topic or a consumer setting in
// -scaleout.url is refused.
func TestRolesOverTLSWithTokenFile(t *testing.T) {
	t.Setenv(conn.TokenEnv, "")
	s, caFile, tokenFile, wrongFile := tlsTokenBroker(t)
	testRoles(t, s.URL()+"?tls-ca-file="+caFile+"&token-file="+tokenFile, pulsarTopic(t), 1)

	start := time.Now()
	err := runCommand([]string{"-role=aggregate", "-scaleout.url=" + s.URL() + "?tls-ca-file=" + caFile + "&token-file=" + wrongFile,
		"-scaleout.topic=" + pulsarTopic(t), "-sink=null:", "-serve=", "-progress=never"})
	if err == nil || !strings.Contains(err.Error(), "authentication failed") || !strings.Contains(err.Error(), wrongFile) {
		t.Fatalf("aggregate role with a refused token: %v, want authentication failed naming %s", err, wrongFile)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("aggregate role with a refused token failed after %s, want within seconds", d)
	}
	for _, bad := range []string{s.URL() + "/persistent://public/default/x", s.URL() + "?subscription=x"} {
		err := runCommand([]string{"-role=aggregate", "-scaleout.url=" + bad, "-scaleout.topic=" + pulsarTopic(t), "-sink=null:", "-serve=", "-progress=never"})
		if err == nil || !strings.Contains(err.Error(), "-scaleout.url") {
			t.Errorf("-scaleout.url=%s: %v, want it refused", bad, err)
		}
	}
}

// tlsTokenBroker starts the Pulsar test double serving TLS and accepting
// one token, and writes the CA, that token and a refused one to files.
func tlsTokenBroker(t *testing.T) (s *pulsartest.Server, caFile, tokenFile, wrongFile string) {
	t.Helper()
	dir := t.TempDir()
	tc, caPEM, err := pulsartest.GenerateTLS()
	if err != nil {
		t.Fatal(err)
	}
	caFile, tokenFile, wrongFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "token"), filepath.Join(dir, "wrong-token")
	for path, b := range map[string]string{caFile: string(caPEM), tokenFile: "the-token\n", wrongFile: "an-old-token\n"} {
		if err := os.WriteFile(path, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err = pulsartest.Start(pulsartest.Config{TLS: tc, Tokens: []string{"the-token"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, caFile, tokenFile, wrongFile
}
