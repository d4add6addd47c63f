package client

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/internal/testcert"
	"github.com/demandpipe/demandpipe/serve"
)

const (
	tokA = "0123456789abcdef-token-a"
	tokB = "fedcba9876543210-token-b"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and localhost
// and its key to dir/cert.pem and dir/key.pem (the certificate is its own
// CA: WithCAFile takes cert.pem).
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := testcert.Write(certFile, keyFile, 1); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// secureServer serves the real API behind a guard with TLS and a token
// file holding tokA, the way demandpipe serve -serve.tls-cert …
// -serve.token-file … does. It returns the base URL and the directory of
// cert.pem and tokens.
func secureServer(t *testing.T, edit func(*serve.Config)) (string, string) {
	var api http.Handler
	server(t, func(h http.Handler) http.Handler { api = h; return h })
	dir := t.TempDir()
	cfg := serve.DefaultConfig()
	cfg.TLSCert, cfg.TLSKey = selfSigned(t, dir)
	cfg.TokenFile = filepath.Join(dir, "tokens")
	os.WriteFile(cfg.TokenFile, []byte("# pricing\n"+tokA+"\n"), 0o600)
	if edit != nil {
		edit(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g, err := serve.NewGuard(cfg, ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: api, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan error, 1)
	go func() { done <- g.Serve(hs, ln) }()
	t.Cleanup(func() { hs.Close(); <-done })
	return "https://" + ln.Addr().String(), dir
}

// TestTLSAndToken: over TLS with the server's certificate as CA and a
// token, the client reads; without a token, or with a wrong one, it gets
// the server's 401 as an *Error; without the CA, no connection.
func TestTLSAndToken(t *testing.T) {
	base, dir := secureServer(t, nil)
	ca := filepath.Join(dir, "cert.pem")
	ctx := context.Background()
	for name, opts := range map[string][]Option{
		"token":      {WithCAFile(ca), WithToken(tokA)},
		"token file": {WithCAFile(ca), WithTokenFile(filepath.Join(dir, "tokens"))},
		"tls config": {WithTLSConfig(&tls.Config{ServerName: "localhost"}), WithCAFile(ca), WithToken(tokA)},
		"own client": {WithHTTPClient(&http.Client{Timeout: time.Minute}), WithCAFile(ca), WithToken(tokA)},
	} {
		c, err := New(base, opts...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ps, err := c.Products(ctx)
		if err != nil || len(ps) != 1 || ps[0] != product {
			t.Errorf("%s: Products = %v, %v", name, ps, err)
		}
		c.hc.CloseIdleConnections()
	}
	for name, opts := range map[string][]Option{
		"no token":    {WithCAFile(ca)},
		"wrong token": {WithCAFile(ca), WithToken(tokB)},
	} {
		c, _ := New(base, opts...)
		_, err := c.Minutes(ctx)
		var e *Error
		if !errors.As(err, &e) || e.Status != 401 || !strings.Contains(e.Message, "token") {
			t.Errorf("%s: %v, want a 401 *Error", name, err)
		}
		if err := c.Ready(ctx); err != nil { // /readyz is open to balancers
			t.Errorf("%s: Ready: %v", name, err)
		}
		c.hc.CloseIdleConnections()
	}
	c, _ := New(base, WithToken(tokA))
	if _, err := c.Minutes(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: %v, want a certificate error", err)
	}
	c.hc.CloseIdleConnections()
}

// TestTokenFileRotation: the client picks up a rewritten token file once
// a second has passed (on its clock), and keeps the old token while the
// file has none.
func TestTokenFileRotation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte("# for pricing\n"+tokA+"\n"), 0o600)
	var mu sync.Mutex
	var got []string
	ts, _ := server(t, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
			io.WriteString(w, `{"minutes":[]}`)
		})
	})
	c, err := New(ts.URL, WithTokenFile(file))
	if err != nil {
		t.Fatal(err)
	}
	defer c.hc.CloseIdleConnections()
	now := time.Now()
	c.token.now = func() time.Time { return now }
	call := func() {
		if _, err := c.Minutes(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	call()
	os.WriteFile(file+".new", []byte(tokB+"\n"), 0o600)
	os.Rename(file+".new", file)
	call() // within the second: still tokA
	now = now.Add(time.Second)
	call()
	os.WriteFile(file, []byte("# emptied\n"), 0o600)
	now = now.Add(time.Second)
	call()
	mu.Lock()
	defer mu.Unlock()
	if want := []string{tokA, tokA, tokB, tokB}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("tokens sent %q, want %q", got, want)
	}

	for _, o := range []Option{WithTokenFile(filepath.Join(dir, "missing")), WithToken(" "), WithCAFile(file), WithCAFile(filepath.Join(dir, "missing"))} {
		if _, err := New(ts.URL, o); err == nil {
			t.Error("a bad option was accepted")
		}
	}
	if _, err := New(ts.URL, WithHTTPClient(&http.Client{Transport: roundTripper(nil)}), WithTLSConfig(&tls.Config{})); err == nil {
		t.Error("TLS options with a foreign RoundTripper were accepted")
	}
	if err := os.WriteFile(file, []byte{}, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ts.URL, WithTokenFile(file)); err == nil {
		t.Error("an empty token file was accepted")
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRetryAfter: a 429 from the guard carries its Retry-After.
func TestRetryAfter(t *testing.T) {
	base, dir := secureServer(t, func(c *serve.Config) { c.RateLimit, c.RateBurst = 0.25, 1 })
	c, err := New(base, WithCAFile(filepath.Join(dir, "cert.pem")), WithToken(tokA))
	if err != nil {
		t.Fatal(err)
	}
	defer c.hc.CloseIdleConnections()
	c.Minutes(context.Background())
	_, err = c.Minutes(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Status != 429 || e.RetryAfter < 3*time.Second || e.RetryAfter > 4*time.Second {
		t.Fatalf("%v (%+v), want 429 with Retry-After 4 s", err, e)
	}
}
