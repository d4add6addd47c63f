package serve

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/demandpipe/demandpipe/internal/syncbuf"
)

const (
	tokA = "0123456789abcdef-token-a"
	tokB = "fedcba9876543210-token-b"
)

// okHandler stands for the API: 200 "ok" on any path.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })

// testClock is an injected clock that tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// testGuard builds a guard for addr with edit applied to the defaults, a
// clock the test moves, and its log lines in the returned buffer.
func testGuard(t *testing.T, addr string, edit func(*Config)) (*Guard, *testClock, *syncBuffer) {
	t.Helper()
	cfg := DefaultConfig()
	logs := &syncBuffer{}
	cfg.Log = slog.New(slog.NewTextHandler(logs, nil))
	if edit != nil {
		edit(&cfg)
	}
	g, err := NewGuard(cfg, addr, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{t: time.Unix(1_700_000_000, 0)}
	g.now = clk.now
	return g, clk, logs
}

// syncBuffer holds the guard's log lines, read while it writes them.
type syncBuffer = syncbuf.Buffer

// do sends one request through h and returns the recorder; host ""
// means localhost.
func do(h http.Handler, method, target, host, remote, auth string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	r.Host = "localhost"
	if host != "" {
		r.Host = host
	}
	if remote != "" {
		r.RemoteAddr = remote
	}
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// checkRefusal: the status, a JSON {"error"} body, and the header.
func checkRefusal(t *testing.T, what string, w *httptest.ResponseRecorder, code int, header, want string) {
	t.Helper()
	var e struct{ Error string }
	if w.Code != code || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "" || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("%s: %d %q %s, want %d with a JSON error", what, w.Code, w.Header().Get("Content-Type"), w.Body, code)
	}
	if header != "" && w.Header().Get(header) != want {
		t.Errorf("%s: %s %q, want %q", what, header, w.Header().Get(header), want)
	}
}

func writeTokens(t *testing.T, file, content string) {
	t.Helper()
	// Atomically, as the docs ask: a temporary file renamed over the old.
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// TestTokenAuth: with a token file, /v1/ and unknown paths want a valid
// bearer token (401 with WWW-Authenticate: Bearer otherwise); /healthz,
// /readyz, the page and its assets do not; /metrics only with
// -serve.metrics-auth.
func TestTokenAuth(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, file, "# readers\n\n  "+tokA+"  \n"+tokB+"\n")
	for _, metricsAuth := range []bool{false, true} {
		g, _, _ := testGuard(t, "127.0.0.1:8080", func(c *Config) { c.TokenFile, c.MetricsAuth = file, metricsAuth })
		h := g.Handler(okHandler)
		for _, c := range []struct {
			path, auth string
			want       int
		}{
			{"/v1/minutes", "", 401},
			{"/v1/minutes", "Bearer " + tokA, 200},
			{"/v1/minutes", "bearer " + tokB, 200}, // the scheme is case-insensitive
			{"/v1/minutes", "Bearer " + tokA[:len(tokA)-1], 401},
			{"/v1/minutes", "Bearer " + tokA + "x", 401},
			{"/v1/minutes", "Basic " + tokA, 401},
			{"/v1/minutes", "Bearer # readers", 401},
			{"/v1/features:batch", "", 401},
			{"/no/such/path", "", 401},
			{"/assets/../v1/map", "", 401}, // not clean: never open
			{"/assets//app.js", "", 401},
			{"/healthz", "", 200},
			{"/readyz", "", 200},
			{"/", "", 200},
			{"/assets/app.js", "", 200},
			{"/metrics", "", map[bool]int{false: 200, true: 401}[metricsAuth]},
			{"/metrics", "Bearer " + tokB, 200},
		} {
			w := do(h, "GET", c.path, "", "", c.auth)
			what := fmt.Sprintf("metrics-auth=%v %s %q", metricsAuth, c.path, c.auth)
			if c.want == 200 {
				if w.Code != 200 || w.Body.String() != "ok" {
					t.Errorf("%s: %d %s, want 200", what, w.Code, w.Body)
				}
				continue
			}
			want := `Bearer realm="demandpipe", error="invalid_token"`
			if c.auth == "" || strings.HasPrefix(c.auth, "Basic") {
				want = `Bearer realm="demandpipe"`
			}
			checkRefusal(t, what, w, 401, "WWW-Authenticate", want)
			if strings.Contains(w.Body.String(), tokA) {
				t.Errorf("%s: the answer holds a token: %s", what, w.Body)
			}
		}
		if n := testutil.ToFloat64(g.met.unauthorized); n < 9 {
			t.Errorf("refused{unauthorized} = %v", n)
		}
	}
	// Without a token file nothing wants a token.
	g, _, _ := testGuard(t, "127.0.0.1:8080", nil)
	if w := do(g.Handler(okHandler), "GET", "/v1/minutes", "", "", ""); w.Code != 200 {
		t.Errorf("no token file: %d", w.Code)
	}
}

// TestTokenFileChanges: a changed file is in service after the next check
// (a second, on the injected clock), not before; a SIGHUP reload is at
// once; a file with no valid token, or gone, keeps the tokens in service
// and says so once.
func TestTokenFileChanges(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	writeTokens(t, file, tokA+"\n")
	g, clk, logs := testGuard(t, "127.0.0.1:8080", func(c *Config) { c.TokenFile = file })
	h := g.Handler(okHandler)
	code := func(tok string) int { return do(h, "GET", "/v1/minutes", "", "", "Bearer "+tok).Code }
	if code(tokA) != 200 || code(tokB) != 401 {
		t.Fatal("initial tokens")
	}
	clk.add(2 * time.Second)
	code(tokA) // a check now; the next is a second away
	writeTokens(t, file, "# rotated\n"+tokB+"\n")
	if code(tokA) != 200 || code(tokB) != 401 {
		t.Fatal("the file was looked at before a second passed")
	}
	clk.add(time.Second)
	if code(tokB) != 200 || code(tokA) != 401 {
		t.Fatal("the renamed file was not picked up")
	}
	// Rewritten in place, another size.
	if err := os.WriteFile(file, []byte(tokA+"\n"+tokB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	if code(tokA) != 200 || code(tokB) != 200 {
		t.Fatal("the rewritten file was not picked up")
	}
	if n := testutil.ToFloat64(g.met.reloads.WithLabelValues("tokens", "ok")); n != 2 {
		t.Errorf("reloads{tokens,ok} = %v, want 2", n)
	}

	// Bad versions keep the tokens in service, one log line each.
	for i, bad := range []string{"# nothing\n", "short\n", "two tokens-on-one-line\n"} {
		writeTokens(t, file, bad)
		for range 3 {
			clk.add(time.Second)
			if code(tokA) != 200 {
				t.Fatalf("bad file %q: a token in service was dropped", bad)
			}
		}
		if n := strings.Count(logs.String(), "token file not reloaded"); n != i+1 {
			t.Fatalf("bad file %q: %d log lines in all, want %d:\n%s", bad, n, i+1, logs)
		}
	}
	if err := g.Reload(); err == nil || !strings.Contains(err.Error(), "serve.token-file") {
		t.Errorf("Reload of a bad file: %v", err)
	}
	os.Remove(file)
	clk.add(time.Second)
	if code(tokA) != 200 {
		t.Fatal("a deleted file dropped the tokens")
	}
	// SIGHUP reloads at once, with no clock moved.
	writeTokens(t, file, tokB+"\n")
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if code(tokB) != 200 || code(tokA) != 401 {
		t.Fatal("Reload did not put the new file in service")
	}
	if strings.Contains(logs.String(), tokA) || strings.Contains(logs.String(), tokB) {
		t.Errorf("a token in the log:\n%s", logs)
	}
}

func TestParseTokens(t *testing.T) {
	h, err := parseTokens([]byte("# comment\n\n\t" + tokA + " \r\n   # indented comment\n" + tokB))
	if err != nil || len(h) != 2 {
		t.Fatalf("%d tokens, %v", len(h), err)
	}
	for in, want := range map[string]string{
		"":                           "no tokens",
		"# only\n\n":                 "no tokens",
		"\nzebra-zebra-15c\n":        "line 2: a token of 15 characters is too short",
		tokA + "\n" + tokB + " x\n":  "line 2: a token has no spaces",
		tokA + "\x00\n":              "line 1: a token has no spaces or control",
		"zebra-zebra-zebra\tzebra\n": "line 1:",
	} {
		_, err := parseTokens([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "zebra") || strings.Contains(err.Error(), tokA)) {
			t.Errorf("%q: the error shows the token: %v", in, err)
		}
	}
}

// TestAllowedHosts: the default is the listen host and loopback, on any
// port (any IP and the host name for a wildcard listen address); a list
// replaces it; "*" is any Host. Other hosts get 421; /healthz is open.
func TestAllowedHosts(t *testing.T) {
	hostname, _ := os.Hostname()
	for _, c := range []struct {
		addr  string
		list  []string
		ok    []string
		wrong []string
	}{
		{"127.0.0.1:8080", nil,
			[]string{"127.0.0.1:8080", "127.0.0.1", "localhost:8080", "LocalHost.", "[::1]:9", "[::1]", ""},
			[]string{"evil.example:8080", "evil.example", "127.0.0.2:8080", "10.0.0.1", "localhost.evil.example", "[::2]"}},
		{"features.internal:8080", nil,
			[]string{"features.internal:8080", "Features.Internal", "localhost"},
			[]string{"10.0.0.1:8080", "evil.example"}},
		{":8080", nil,
			[]string{"10.1.2.3:8080", "[fe80::1]:8080", "[2001:db8::1]", "localhost:8080", hostname + ":8080"},
			[]string{"evil.example:8080", "10.1.2.3.evil.example"}},
		{"0.0.0.0:8080", nil, []string{"192.0.2.7:8080"}, []string{"evil.example"}},
		{"127.0.0.1:8080", []string{"features.internal", "10.0.0.5:8443", "[2001:db8::5]"},
			[]string{"features.internal:1234", "features.internal", "10.0.0.5:8443", "[2001:db8::5]:1"},
			[]string{"10.0.0.5:80", "10.0.0.5", "localhost:8080", "127.0.0.1:8080"}},
		{"127.0.0.1:8080", []string{"*"}, []string{"evil.example", "localhost"}, nil},
	} {
		g, _, _ := testGuard(t, c.addr, func(cfg *Config) { cfg.AllowedHosts = c.list })
		h := g.Handler(okHandler)
		for _, host := range c.ok {
			r := httptest.NewRequest("GET", "/v1/minutes", nil)
			r.Host = host
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 200 {
				t.Errorf("listen %s, allowed %v: Host %q: %d, want 200", c.addr, c.list, host, w.Code)
			}
		}
		for _, host := range c.wrong {
			checkRefusal(t, fmt.Sprintf("listen %s, allowed %v: Host %q", c.addr, c.list, host), do(h, "GET", "/v1/minutes", host, "", ""), 421, "", "")
			if w := do(h, "GET", "/healthz", host, "", ""); w.Code != 200 {
				t.Errorf("/healthz with Host %q: %d", host, w.Code)
			}
		}
		if n := testutil.ToFloat64(g.met.host); n != float64(len(c.wrong)) {
			t.Errorf("listen %s: refused{host} = %v, want %d", c.addr, n, len(c.wrong))
		}
	}
}

// TestRateLimit: a client gets burst requests at once, then rate per
// second, else 429 with Retry-After; clients are apart (IPv6 by /64);
// /healthz is never limited.
func TestRateLimit(t *testing.T) {
	g, clk, _ := testGuard(t, "127.0.0.1:8080", func(c *Config) { c.RateLimit, c.RateBurst = 0.5, 3 })
	h := g.Handler(okHandler)
	get := func(remote string) *httptest.ResponseRecorder { return do(h, "GET", "/v1/minutes", "", remote, "") }
	for i := range 3 {
		if w := get("192.0.2.1:1000"); w.Code != 200 {
			t.Fatalf("request %d within the burst: %d", i, w.Code)
		}
	}
	checkRefusal(t, "past the burst", get("192.0.2.1:1001"), 429, "Retry-After", "2") // 1 token at 0.5/s
	if w := do(h, "GET", "/healthz", "", "192.0.2.1:1002", ""); w.Code != 200 {
		t.Errorf("/healthz limited: %d", w.Code)
	}
	if w := get("192.0.2.2:1000"); w.Code != 200 {
		t.Errorf("another client limited: %d", w.Code)
	}
	clk.add(1500 * time.Millisecond) // 0.75 token
	checkRefusal(t, "after 1.5 s", get("192.0.2.1:1000"), 429, "Retry-After", "1")
	clk.add(500 * time.Millisecond)
	if w := get("192.0.2.1:1000"); w.Code != 200 {
		t.Errorf("after 2 s: %d, want one request", w.Code)
	}
	if w := get("[::ffff:192.0.2.1]:1000"); w.Code != 429 {
		t.Errorf("the same IPv4 client as IPv6-mapped: %d, want 429", w.Code)
	}
	for range 3 {
		get("[2001:db8:0:1::1]:1000")
	}
	if w := get("[2001:db8:0:1:ffff::2]:1000"); w.Code != 429 {
		t.Errorf("another address of the same /64: %d, want 429", w.Code)
	}
	if w := get("[2001:db8:0:2::1]:1000"); w.Code != 200 {
		t.Errorf("another /64: %d, want 200", w.Code)
	}
	if n := testutil.ToFloat64(g.met.rate); n != 4 {
		t.Errorf("refused{rate} = %v, want 4", n)
	}
}

// TestRateLimiterBounded: the table never holds more than its bound; idle
// clients (full buckets) are dropped by the periodic sweep and when a new
// client finds the table full, and an active one is not.
func TestRateLimiterBounded(t *testing.T) {
	l := newRateLimiter(1, 2, 4)
	t0 := time.Unix(1_700_000_000, 0)
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	for i := range 4 {
		l.allow(ip(i), t0)
	}
	l.allow(ip(0), t0) // client 0 is empty now: 2 s until full
	// A second later, clients 1-3 are full again, 0 is not: a new client
	// sweeps them out.
	if ok, _ := l.allow(ip(4), t0.Add(time.Second)); !ok || l.size() != 2 {
		t.Fatalf("after the sweep: %d clients, want 2 (the active one and the new one)", l.size())
	}
	if ok, wait := l.allow(ip(0), t0.Add(time.Second)); !ok || wait != 0 {
		t.Fatalf("the active client lost its bucket or was refused: %v %v", ok, wait)
	}
	if ok, wait := l.allow(ip(0), t0.Add(time.Second)); ok || wait != time.Second {
		t.Fatalf("the active client's bucket was reset: %v %v", ok, wait)
	}
	// A flood of new clients, all active: the table stays at its bound.
	now := t0.Add(2 * time.Second)
	for i := 100; i < 1100; i++ {
		for range 2 {
			l.allow(ip(i), now)
		}
		if l.size() > 4 {
			t.Fatalf("%d clients, bound 4", l.size())
		}
	}
	// The periodic sweep releases everyone once idle.
	l.allow(ip(5000), now.Add(rateSweepEvery))
	if l.size() != 1 {
		t.Errorf("after a minute idle: %d clients, want 1", l.size())
	}
}

// TestConnCap: a connection past -serve.max-conns gets 503 with
// Retry-After and is closed (its /healthz still answers); once the other
// closes, a new one is served. Over HTTP/1.1 and over TLS with HTTP/2,
// where the mark on the connection must reach the requests too.
func TestConnCap(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		var g *Guard
		var pool *x509.CertPool
		if withTLS {
			var ca *testCA
			g, ca, _, _ = tlsSetup(t, func(c *Config) { c.MaxConns, c.TokenFile = 1, "" })
			pool = x509.NewCertPool()
			pool.AddCert(ca.cert)
		} else {
			g, _, _ = testGuard(t, "127.0.0.1:0", func(c *Config) { c.MaxConns = 1 })
		}
		base := serveGuard(t, g, okHandler)
		newTransport := func() *http.Transport {
			return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
		}
		tr1, tr2 := newTransport(), newTransport()
		get := func(tr *http.Transport, path string) *http.Response {
			t.Helper()
			res, err := (&http.Client{Transport: tr}).Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if withTLS && res.ProtoMajor != 2 {
				t.Errorf("%s, want HTTP/2", res.Proto)
			}
			return res
		}
		if res := get(tr1, "/v1/minutes"); res.StatusCode != 200 {
			t.Fatalf("tls=%v: first connection: %d", withTLS, res.StatusCode)
		}
		// tr1 keeps its connection open and idle.
		if res := get(tr2, "/v1/minutes"); res.StatusCode != 503 || res.Header.Get("Retry-After") != "1" {
			t.Errorf("tls=%v: second connection: %d, Retry-After %q; want 503, 1", withTLS, res.StatusCode, res.Header.Get("Retry-After"))
		}
		// The server closes it (HTTP/2: a GOAWAY, then the close).
		waitFor(t, func() bool { return g.Conns() == 1 })
		if res := get(tr2, "/healthz"); res.StatusCode != 200 {
			t.Errorf("tls=%v: /healthz on a connection past the cap: %d", withTLS, res.StatusCode)
		}
		tr1.CloseIdleConnections()
		waitFor(t, func() bool { return g.Conns() == 0 })
		if res := get(tr2, "/v1/minutes"); res.StatusCode != 200 {
			t.Errorf("tls=%v: after the first closed: %d", withTLS, res.StatusCode)
		}
		tr2.CloseIdleConnections()
		if n := testutil.ToFloat64(g.met.conns); n != 1 {
			t.Errorf("tls=%v: refused{conns} = %v, want 1", withTLS, n)
		}
	}
}

// waitFor polls cond (the server's side of a close is asynchronous).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// serveGuard serves h behind g on a loopback port until the test ends and
// returns its base URL.
func serveGuard(t *testing.T, g *Guard, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan error, 1)
	go func() { done <- g.Serve(hs, ln) }()
	t.Cleanup(func() {
		hs.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	scheme := "http"
	if g.TLS() {
		scheme = "https"
	}
	return scheme + "://" + ln.Addr().String()
}

// testCA is a CA that signs server certificates for 127.0.0.1, ::1 and
// localhost, the way an operator's private CA would.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "demandpipe test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a server certificate with serial number serial and its key
// to certFile and keyFile.
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Duration(serial) * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsSetup is a CA, a certificate of serial 10 it signed, a token file
// with tokA, and a guard of them.
func tlsSetup(t *testing.T, edit func(*Config)) (g *Guard, ca *testCA, dir string, logs *syncBuffer) {
	t.Helper()
	dir = t.TempDir()
	ca = newTestCA(t)
	ca.issue(t, 10, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	writeTokens(t, filepath.Join(dir, "tokens"), tokA+"\n")
	g, _, logs = testGuard(t, "127.0.0.1:0", func(c *Config) {
		c.TLSCert, c.TLSKey, c.TokenFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "tokens")
		if edit != nil {
			edit(c)
		}
	})
	return g, ca, dir, logs
}

// TestTLSServeAndReload: HTTPS (HTTP/2) with a token; Reload puts a new
// pair in service for new connections, and a pair that does not load
// keeps the old one, with one log line.
func TestTLSServeAndReload(t *testing.T) {
	g, ca, dir, logs := tlsSetup(t, nil)
	base := serveGuard(t, g, okHandler)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	// serial answers GET /v1/x on a new connection: the status and the
	// serial number of the server's certificate.
	serial := func(token string) (int, int64) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", base+"/v1/x", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.ProtoMajor != 2 {
			t.Errorf("%s, want HTTP/2", res.Proto)
		}
		return res.StatusCode, res.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if code, s := serial(tokA); code != 200 || s != 10 {
		t.Fatalf("%d, serial %d; want 200, 10", code, s)
	}
	if code, _ := serial(""); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code, _ := serial(tokB); code != 401 {
		t.Errorf("wrong token: %d", code)
	}
	// Plain HTTP to the TLS port is refused.
	if res, err := http.Get("http" + strings.TrimPrefix(base, "https") + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Errorf("plain HTTP: %d", res.StatusCode)
		}
	}

	ca.issue(t, 11, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, s := serial(tokA); code != 200 || s != 11 {
		t.Fatalf("after Reload: %d, serial %d; want 200, 11", code, s)
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("no log line of the reload:\n%s", logs)
	}
	if exp := g.cert.leaf().NotAfter; exp.Before(time.Now().Add(10*time.Hour)) || exp.After(time.Now().Add(11*time.Hour)) {
		t.Errorf("NotAfter in service %v, want the new certificate's", exp)
	}

	// A new pair that does not load: a key that is not the certificate's,
	// then a truncated certificate. The old pair stays.
	other := t.TempDir()
	ca.issue(t, 12, filepath.Join(other, "cert.pem"), filepath.Join(other, "key.pem"))
	os.Rename(filepath.Join(other, "key.pem"), filepath.Join(dir, "key.pem"))
	if err := g.Reload(); err == nil || !strings.Contains(err.Error(), "serve.tls-cert=") {
		t.Errorf("Reload of a mismatched pair: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("-----BEGIN CERTIFICATE-----\nMIIB\n"), 0o644)
	if err := g.Reload(); err == nil {
		t.Error("Reload of a truncated certificate: no error")
	}
	if code, s := serial(tokA); code != 200 || s != 11 {
		t.Fatalf("after failed reloads: %d, serial %d; want 200, 11", code, s)
	}
	if n := strings.Count(logs.String(), "TLS certificate not reloaded"); n != 2 {
		t.Errorf("%d log lines of failed reloads, want 2:\n%s", n, logs)
	}
	if ok, bad := testutil.ToFloat64(g.met.reloads.WithLabelValues("tls", "ok")), testutil.ToFloat64(g.met.reloads.WithLabelValues("tls", "error")); ok != 1 || bad != 2 {
		t.Errorf("reloads{tls}: ok %v, error %v; want 1, 2", ok, bad)
	}
}

// TestGuardStartErrors: files that cannot be read stop the start, naming
// the flag; a half pair or metrics-auth alone is a Validate error.
func TestGuardStartErrors(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("not a certificate"), 0o644)
	for _, c := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.TLSCert, c.TLSKey = filepath.Join(dir, "missing.pem"), junk }, "serve.tls-cert="},
		{func(c *Config) { c.TLSCert, c.TLSKey = junk, junk }, "serve.tls-cert="},
		{func(c *Config) { c.TLSCert = junk }, "give both or neither"},
		{func(c *Config) { c.TLSKey = junk }, "give both or neither"},
		{func(c *Config) { c.TokenFile = filepath.Join(dir, "missing") }, "serve.token-file"},
		{func(c *Config) { c.TokenFile = junk }, "serve.token-file=" + junk + ": line 1"},
		{func(c *Config) { c.MetricsAuth = true }, "serve.metrics-auth"},
		{func(c *Config) { c.AllowedHosts = []string{"a b"} }, "serve.allowed-hosts"},
	} {
		cfg := DefaultConfig()
		c.edit(&cfg)
		if _, err := NewGuard(cfg, "127.0.0.1:0", nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewGuard = %v, want %q", err, c.want)
		}
	}
}

func TestAllowedHostsFlag(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"-serve.allowed-hosts= a.example, 10.0.0.5:8443,,[::1]"}); err != nil {
		t.Fatal(err)
	}
	if got := fs.Lookup("serve.allowed-hosts").Value.String(); got != "a.example,10.0.0.5:8443,[::1]" || len(cfg.AllowedHosts) != 3 {
		t.Errorf("%q %q", got, cfg.AllowedHosts)
	}
	for _, bad := range []string{"a b", "x:port", "a/b", "*.example"} {
		if err := fs.Set("serve.allowed-hosts", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := fs.Set("serve.allowed-hosts", ""); err != nil || cfg.AllowedHosts != nil {
		t.Errorf("empty: %v %q", err, cfg.AllowedHosts)
	}
}

// TestTLSWithCurl: curl, an independent client, reads over TLS with
// --cacert and a bearer token, and gets 401 without one.
func TestTLSWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not found: the independent-client check is skipped (apt-get install -y curl)")
	}
	g, _, dir, _ := tlsSetup(t, nil)
	base := serveGuard(t, g, okHandler)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-sS", "--cacert", filepath.Join(dir, "ca.pem"), "-w", " %{http_code} %{http_version}"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("-H", "Authorization: Bearer "+tokA, base+"/v1/minutes"); out != "ok 200 2" && out != "ok 200 1.1" {
		t.Errorf("with the token: %q, want ok 200", out)
	}
	if out := run(base + "/v1/minutes"); !strings.Contains(out, `{"error":`) || !strings.HasSuffix(out, " 401 2") && !strings.HasSuffix(out, " 401 1.1") {
		t.Errorf("without a token: %q, want a JSON 401", out)
	}
	if out := run("-H", "Host: evil.example", "-H", "Authorization: Bearer "+tokA, base+"/v1/minutes"); !strings.Contains(out, " 421 ") {
		t.Errorf("foreign Host: %q, want 421", out)
	}
}
