package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/internal/testcert"
	"github.com/demandpipe/demandpipe/job"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/store"
)

func TestStartServerAndShutdown(t *testing.T) {
	t.Parallel()
	st := freshStore(t)
	reg := prometheus.NewRegistry()
	srv, err := job.StartServer("127.0.0.1:0", serve.DefaultConfig(), job.One(st), reg, reg)
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

// TestStartServerSecured: startServer behind the guard: HTTPS with a
// token (401 without), /readyz and /healthz open, refusals in /metrics,
// and a SIGHUP (sent to this process: startServer's handler is the only
// one, and is registered while the server runs) puts a renewed
// certificate in service.
func TestStartServerSecured(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const token = "0123456789abcdef-cmd-token"
	cfg := serve.DefaultConfig()
	cfg.TLSCert, cfg.TLSKey, cfg.TokenFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "tokens")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(writeSelfSigned(t, cfg.TLSCert, cfg.TLSKey, 1))
	os.WriteFile(cfg.TokenFile, []byte(token+"\n"), 0o600)

	reg := prometheus.NewRegistry()
	half := cfg
	half.TLSKey = ""
	if _, err := job.StartServer("127.0.0.1:0", half, nil, reg, reg); err == nil || !strings.Contains(err.Error(), "both or neither") {
		t.Errorf("a certificate without its key: %v", err)
	}
	missing := cfg
	missing.TLSCert = filepath.Join(dir, "missing.pem")
	if _, err := job.StartServer("127.0.0.1:0", missing, nil, reg, reg); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("a missing certificate: %v", err)
	}

	st := freshStore(t)
	srv, err := job.StartServer("127.0.0.1:0", cfg, job.One(st), reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(time.Second)
	if srv.URL != "https://"+srv.Addr+"/" {
		t.Errorf("URL %q", srv.URL)
	}
	// get answers path on a new connection: status, body, serial number.
	get := func(path, tok string) (int, string, int64) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", strings.TrimSuffix(srv.URL, "/")+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res.StatusCode, string(b), res.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	for _, c := range []struct {
		path, tok string
		want      int
	}{{"/v1/minutes", token, 200}, {"/v1/minutes", "", 401}, {"/v1/minutes", "wrong-but-long-enough", 401}, {"/readyz", "", 200}, {"/healthz", "", 200}, {"/", "", 200}} {
		if code, b, _ := get(c.path, c.tok); code != c.want {
			t.Errorf("%s with token %q: %d %.200s, want %d", c.path, c.tok, code, b, c.want)
		}
	}
	if _, b, _ := get("/metrics", ""); !strings.Contains(b, `demandpipe_serve_refused_total{reason="unauthorized"} 2`) {
		t.Errorf("/metrics has no count of the two refusals:\n%.2000s", b)
	}

	pool.AppendCertsFromPEM(writeSelfSigned(t, cfg.TLSCert, cfg.TLSKey, 2))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, _, serial := get("/healthz", ""); serial == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not put the renewed certificate in service")
		}
	}
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 with
// serial number serial, and its key, and returns the certificate's PEM.
func writeSelfSigned(t *testing.T, certFile, keyFile string, serial int64) []byte {
	t.Helper()
	certPEM, err := testcert.Write(certFile, keyFile, serial)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM
}

// freshStore is an empty store whose one closed minute is the one that
// just ended (/readyz wants a fresh one), closed at the test's end.
func freshStore(t *testing.T) *store.Store {
	t.Helper()
	sc := store.DefaultConfig()
	sc.Dir = t.TempDir()
	st, err := store.Open(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CloseMinute(context.Background(), time.Now().Unix()/60-1); err != nil {
		t.Fatal(err)
	}
	return st
}
