package pulsartest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/internal/syncbuf"

	"github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/prometheus/client_golang/prometheus"
)

// Tests of TLS and token authentication, with the real Go client and with
// this package's raw codec.

// startTLSBroker starts a TLS broker with a fresh CA and returns it with
// the path of the CA certificate.
func startTLSBroker(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	tc, caPEM, err := GenerateTLS()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.TLS = tc
	return startBroker(t, cfg), caFile
}

// newAuthClient is newClient with TLS trust, a token and a short
// operation timeout (a refused connection is retried until it passes);
// the client's warnings go to the returned buffer.
func newAuthClient(t *testing.T, url, caFile, token string) (pulsar.Client, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	opts := pulsar.ClientOptions{
		URL:                   url,
		OperationTimeout:      time.Second,
		ConnectionTimeout:     time.Second,
		TLSTrustCertsFilePath: caFile,
		Logger:                plog.NewLoggerWithSlog(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))),
		MetricsRegisterer:     prometheus.NewRegistry(),
	}
	if token != "" {
		opts.Authentication = pulsar.NewAuthenticationToken(token)
	}
	c, err := pulsar.NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, logs
}

// roundTrip produces n messages and consumes them back, in order.
func roundTrip(t *testing.T, client pulsar.Client, n int) {
	t.Helper()
	topic := topicName(t)
	cons := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "s", Type: pulsar.Exclusive})
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic})
	produce(t, prod, 0, n, 1)
	for i := range n {
		m := receive(t, cons, 5*time.Second)
		if want := fmt.Sprintf("msg-%d", i); string(m.Payload()) != want {
			t.Fatalf("message %d: %q, want %q", i, m.Payload(), want)
		}
		cons.Ack(m)
	}
}

func TestClientTLS(t *testing.T) {
	s, caFile := startTLSBroker(t, Config{})
	if !strings.HasPrefix(s.URL(), "pulsar+ssl://") {
		t.Fatalf("URL() = %s, want pulsar+ssl://", s.URL())
	}
	client, _ := newAuthClient(t, s.URL(), caFile, "")
	roundTrip(t, client, 20)
	if st := s.Stats(); st.TLSFailures != 0 || st.Rejected != 0 {
		t.Errorf("TLSFailures = %d, Rejected = %d, want 0", st.TLSFailures, st.Rejected)
	}
}

// TestClientTLSUntrusted: a client that does not trust the certificate
// fails its handshake; the double counts it and the client gives up
// within its operation timeout.
func TestClientTLSUntrusted(t *testing.T) {
	s, _ := startTLSBroker(t, Config{})
	_, otherCA, err := GenerateTLS()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(caFile, otherCA, 0o600); err != nil {
		t.Fatal(err)
	}
	client, logs := newAuthClient(t, s.URL(), caFile, "")
	start := time.Now()
	_, err = client.CreateProducer(pulsar.ProducerOptions{Topic: topicName(t)})
	if err == nil {
		t.Fatal("producer created with an untrusted certificate")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failed after %s, want within the 1s operation timeout", d)
	}
	if !strings.Contains(logs.String(), "certificate signed by unknown authority") {
		t.Errorf("client log does not name the certificate problem:\n%s", logs)
	}
	if s.Stats().TLSFailures == 0 {
		t.Error("Stats.TLSFailures = 0 after an untrusted handshake")
	}
}

func TestClientToken(t *testing.T) {
	s := startBroker(t, Config{Tokens: []string{"token-a", "token-b"}})
	t.Run("accepted", func(t *testing.T) {
		t.Parallel()
		client, _ := newAuthClient(t, s.URL(), "", "token-b")
		roundTrip(t, client, 10)
	})
	for _, tc := range []struct{ name, token string }{{"wrong", "token-c"}, {"missing", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client, logs := newAuthClient(t, s.URL(), "", tc.token)
			start := time.Now()
			_, err := client.CreateProducer(pulsar.ProducerOptions{Topic: topicName(t)})
			if err == nil {
				t.Fatalf("producer created with token %q", tc.token)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("failed after %s, want within the 1s operation timeout", d)
			}
			// The client keeps the broker's reason for its log only; the
			// error it returns says "connection error".
			if want := "Failed to establish connection with broker: 'Failed to authenticate'"; !strings.Contains(logs.String(), want) {
				t.Errorf("client log lacks %q:\n%s", want, logs)
			}
		})
	}
	t.Cleanup(func() {
		if st := s.Stats(); st.Rejected < 2 {
			t.Errorf("Stats.Rejected = %d, want at least one per refused client", st.Rejected)
		}
	})
}

func TestClientTLSAndToken(t *testing.T) {
	s, caFile := startTLSBroker(t, Config{Tokens: []string{"secret"}})
	client, _ := newAuthClient(t, s.URL(), caFile, "secret")
	roundTrip(t, client, 10)
	bad, logs := newAuthClient(t, s.URL(), caFile, "guess")
	if _, err := bad.CreateProducer(pulsar.ProducerOptions{Topic: topicName(t)}); err == nil {
		t.Fatal("producer created with a wrong token over TLS")
	}
	if !strings.Contains(logs.String(), "Failed to authenticate") {
		t.Errorf("client log lacks the refusal:\n%s", logs)
	}
	if st := s.Stats(); st.Rejected == 0 || st.TLSFailures != 0 {
		t.Errorf("Rejected = %d, TLSFailures = %d: want the token refused after a good handshake", st.Rejected, st.TLSFailures)
	}
}

// TestRawAuthRefusal pins the refusal on the wire: ERROR with request id
// -1 (2^64-1 unsigned), AuthenticationError and the broker's message,
// then the connection closes; nothing is answered before CONNECT.
func TestRawAuthRefusal(t *testing.T) {
	s := startBroker(t, Config{Tokens: []string{"right"}})
	connect := func(method, data string) []byte {
		b := putI32(putString(nil, 1, "raw"), 4, 20)
		if method != "" {
			b = putString(b, 5, method)
		}
		if data != "" {
			b = putBytes(b, 3, []byte(data))
		}
		return appendBase(nil, cmdConnect, b)
	}
	for _, tc := range []struct {
		name, method, data string
	}{{"wrong-token", "token", "wrong"}, {"no-auth", "", ""}, {"other-method", "basic", "right"}} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, s)
			c.send(connect(tc.method, tc.data), nil)
			typ, body, _ := c.recv()
			if typ != cmdError {
				t.Fatalf("got command %d, want ERROR", typ)
			}
			var id, code uint64
			var msg string
			walk(body, func(f field) error {
				switch f.num {
				case 1:
					id = f.u
				case 2:
					code = f.u
				case 3:
					msg = string(f.b)
				}
				return nil
			})
			if id != math.MaxUint64 || serverError(code) != errAuthentication || msg != "Failed to authenticate" {
				t.Errorf("ERROR request_id=%d error=%d message=%q, want %d, %d, %q", id, code, msg, uint64(math.MaxUint64), errAuthentication, "Failed to authenticate")
			}
			if _, _, err := readFrame(c.r, nil, 1<<20); !errors.Is(err, io.EOF) {
				t.Errorf("after the ERROR: %v, want the connection closed (EOF)", err)
			}
		})
	}
	t.Run("right-token", func(t *testing.T) {
		c := dialRaw(t, s)
		c.send(connect("token", "right"), nil)
		if typ, _, _ := c.recv(); typ != cmdConnected {
			t.Fatalf("got command %d, want CONNECTED", typ)
		}
	})
	if st := s.Stats(); st.Rejected != 3 {
		t.Errorf("Stats.Rejected = %d, want 3", st.Rejected)
	}
}

// TestPlainClientOnTLS: a client speaking plain TCP to the TLS listener is
// closed by the failed handshake, not left waiting.
func TestPlainClientOnTLS(t *testing.T) {
	s, _ := startTLSBroker(t, Config{})
	c := dialRaw(t, s)
	c.send(appendBase(nil, cmdConnect, putI32(putString(nil, 1, "raw"), 4, 20)), nil)
	// Whatever the TLS stack answers (an alert or nothing), the
	// connection must end: read to EOF within dialRaw's deadline. The
	// double counts the failure before it closes.
	if _, err := io.Copy(io.Discard, c.r); err != nil {
		t.Fatalf("connection not closed: %v", err)
	}
	if got := s.Stats().TLSFailures; got != 1 {
		t.Errorf("Stats.TLSFailures = %d, want 1", got)
	}
}

func TestConfigValidateAuth(t *testing.T) {
	tc, _, err := GenerateTLS()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{TLS: tc, Tokens: []string{"a"}}, true},
		{Config{TLS: &tls.Config{}}, false},
		{Config{Tokens: []string{"a", ""}}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("TLS=%v Tokens=%q: Validate() = %v, want ok=%v", c.cfg.TLS != nil, c.cfg.Tokens, err, c.ok)
		}
	}
}

// TestSetTokens: a revoked token keeps its connection but cannot make a
// new one; the new token can.
func TestSetTokens(t *testing.T) {
	s := startBroker(t, Config{Tokens: []string{"old"}})
	c := dialRaw(t, s)
	c.send(appendBase(nil, cmdConnect, putBytes(putString(putI32(nil, 4, 20), 5, "token"), 3, []byte("old"))), nil)
	if typ, _, _ := c.recv(); typ != cmdConnected {
		t.Fatalf("got %d, want CONNECTED", typ)
	}
	if err := s.SetTokens([]string{"new"}); err != nil {
		t.Fatal(err)
	}
	c.send(encPing(), nil)
	if typ, _, _ := c.recv(); typ != cmdPong {
		t.Fatalf("the connection made with the revoked token: got %d, want PONG", typ)
	}
	for token, want := range map[string]cmdType{"old": cmdError, "new": cmdConnected} {
		c := dialRaw(t, s)
		c.send(appendBase(nil, cmdConnect, putBytes(putString(putI32(nil, 4, 20), 5, "token"), 3, []byte(token))), nil)
		if typ, _, _ := c.recv(); typ != want {
			t.Errorf("token %q after SetTokens: got %d, want %d", token, typ, want)
		}
	}
	if err := s.SetTokens([]string{""}); err == nil {
		t.Error("SetTokens accepted an empty token")
	}
}
