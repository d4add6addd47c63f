package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHealthcheck: 200 is healthy; any other status, a refused connection
// and a server slower than -timeout are not, each with one line naming why.
func TestHealthcheck(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.WriteHeader(http.StatusOK)
			w.Write([]byte(`{"status":"ready"}` + "\n"))
		case "/notready":
			w.Header().Set("Retry-After", "60")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"status":"no closed minute yet"}` + "\n\n" + strings.Repeat("x", 2000)))
		case "/slow":
			<-release
		}
	}))
	defer srv.Close()
	defer close(release) // before srv.Close, which waits for the handler
	if err := healthcheck(srv.URL+"/readyz", 2*time.Second); err != nil {
		t.Fatalf("200: %v", err)
	}
	err := healthcheck(srv.URL+"/notready", 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "no closed minute yet") ||
		strings.Contains(err.Error(), "\n") || len(err.Error()) > 300 {
		t.Fatalf("503: %v", err)
	}
	start := time.Now()
	if err := healthcheck(srv.URL+"/slow", 100*time.Millisecond); err == nil {
		t.Fatal("a server that never answers: healthy")
	} else if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("-timeout=100ms took %v", took)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	if err := healthcheck("http://"+addr+"/readyz", time.Second); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("refused connection: %v", err)
	}
}

func TestHealthcheckRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		url     string
		timeout time.Duration
	}{
		{"127.0.0.1:8080/readyz", time.Second},  // no scheme
		{"ftp://127.0.0.1/readyz", time.Second}, // not HTTP
		{"http:///readyz", time.Second},         // no host
		{"http://127.0.0.1:8080/readyz", 0},     // no time at all
		{"http://127.0.0.1:8080/readyz", -time.Second},
	} {
		if err := healthcheck(c.url, c.timeout); err == nil || !strings.HasPrefix(err.Error(), "-") {
			t.Errorf("-url=%s -timeout=%s: %v, want an error naming the flag", c.url, c.timeout, err)
		}
	}
	if err := healthcheckCommand([]string{"-url=http://127.0.0.1:1/readyz", "extra"}); err != errUsage {
		t.Errorf("an extra argument: %v, want a usage error", err)
	}
}
