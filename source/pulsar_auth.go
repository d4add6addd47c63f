package source

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/apache/pulsar-client-go/pulsar"
)

// Credentials the broker refuses, said at once and plainly.
//
// The Go client (v0.21.0) treats a refused connection like a broker that
// is down: it retries every lookup until the operation timeout (30 s by
// default) and then returns "connection error", with the broker's reason
// ("Failed to authenticate") or the TLS error only in its log. A wrong
// token or an untrusted certificate does not mend by retrying, so the
// source watches the client's warnings (clientLog) for them and fails the
// subscribe as soon as one shows, naming what to fix.

// refusal records the first refusal that retrying cannot mend, and the
// client's last warning (for the error of a subscribe that timed out).
type refusal struct {
	cfg  PulsarConfig
	once sync.Once
	done chan struct{} // closed when err is set
	err  error

	mu   sync.Mutex
	last string // the client's last warning, with its error
}

func newRefusal(cfg PulsarConfig) *refusal {
	return &refusal{cfg: cfg, done: make(chan struct{})}
}

// handshakeRefused is the client's warning for a CONNECT answered with an
// ERROR; a broker refusing credentials says "Failed to authenticate"
// (ServerCnx.authenticationFailed; internal/pulsartest says the same).
const handshakeRefused = "Failed to establish connection with broker: "

// note looks at one warning of the client's: msg and the attributes of its
// logger (the error is the "error" attribute).
func (r *refusal) note(msg string, attrs []slog.Attr) {
	var cause string
	for _, a := range attrs {
		if a.Key == "error" {
			cause = a.Value.String()
		}
	}
	r.mu.Lock()
	r.last = msg
	if cause != "" {
		r.last += " " + cause
	}
	r.mu.Unlock()
	switch {
	case strings.HasPrefix(msg, handshakeRefused):
		reason := strings.Trim(strings.TrimPrefix(msg, handshakeRefused), "'")
		if strings.Contains(strings.ToLower(reason), "authenticat") {
			r.set(fmt.Errorf("pulsar %s: authentication failed (the broker answered %q): %s", r.cfg.ServiceURL, reason, tokenHint(r.cfg)))
		}
		// Other refusals (ServiceNotReady while a broker starts) may
		// mend: the client retries them.
	case msg == "Failed to connect to broker." && tlsRefused(cause):
		r.set(fmt.Errorf("pulsar %s: TLS handshake failed: %s (%s)", r.cfg.ServiceURL, cause, tlsHint(r.cfg)))
	case strings.HasPrefix(msg, "Failed to configure TLS"): // tls-ca-file= unreadable
		r.set(fmt.Errorf("pulsar %s: TLS: %s (tls-ca-file=)", r.cfg.ServiceURL, cause))
	case msg == "Failed to load auth credentials" && r.cfg.TokenFile != "":
		r.set(fmt.Errorf("pulsar %s: token-file=%s: %s", r.cfg.ServiceURL, r.cfg.TokenFile, cause))
	}
}

// tlsRefused tells a TLS failure that retrying cannot mend (a certificate
// not trusted or refused, a port that does not speak TLS) from one that it
// may (a handshake that timed out on a busy broker, a reset).
func tlsRefused(cause string) bool {
	return strings.Contains(cause, "x509:") ||
		strings.Contains(cause, "tls: failed to verify") ||
		strings.Contains(cause, "remote error: tls:") ||
		strings.Contains(cause, "does not look like a TLS handshake")
}

func (r *refusal) set(err error) {
	r.once.Do(func() {
		r.err = err
		close(r.done)
	})
}

// refused returns the refusal, or nil.
func (r *refusal) refused() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// lastWarning is the client's last warning ("" if none).
func (r *refusal) lastWarning() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func tokenHint(cfg PulsarConfig) string {
	switch {
	case cfg.TokenFile != "":
		return "the token in token-file=" + cfg.TokenFile + " was not accepted: is it this cluster's, whole, and not expired?"
	case cfg.Token != "":
		return "the token in env " + PulsarTokenEnv + " was not accepted: is it this cluster's, whole, and not expired?"
	}
	return "no token was given: put one in env " + PulsarTokenEnv + " or in a file named by token-file="
}

func tlsHint(cfg PulsarConfig) string {
	if cfg.TLSCAFile != "" {
		return "tls-ca-file=" + cfg.TLSCAFile + " must hold the CA that signed the broker's certificate, and the port must be the broker's TLS port (6651 by default)"
	}
	return "the system's CAs do not trust the broker's certificate: name its CA with tls-ca-file=, and check the port is the broker's TLS port (6651 by default)"
}

// backgroundCloses counts the closings a refusal left running (Pulsar.Close),
// for tests to wait for; each ends within the operation timeout.
var backgroundCloses sync.WaitGroup

// subscribe is client.Subscribe that ends as soon as a refusal shows. The
// client cannot be told to stop retrying: on a refusal, subscribe closes
// the client (the caller must not use it again: owned is false) and the
// abandoned Subscribe goes on in the background until the operation
// timeout, its goroutines then closing whatever it made.
func subscribe(client pulsar.Client, opts pulsar.ConsumerOptions, r *refusal) (cons pulsar.Consumer, owned bool, err error) {
	type result struct {
		cons pulsar.Consumer
		err  error
	}
	done := make(chan result, 1)
	go func() {
		cons, err := client.Subscribe(opts)
		done <- result{cons, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			if err := r.refused(); err != nil {
				return nil, true, err
			}
		}
		return res.cons, true, res.err
	case <-r.done:
		select {
		case res := <-done: // finished at the same moment: trust its result
			if res.err == nil {
				return res.cons, true, nil
			}
			return nil, true, r.err
		default:
		}
		client.Close()
		go func() {
			if res := <-done; res.cons != nil {
				res.cons.Close()
			}
		}()
		return nil, false, r.err
	}
}

// PulsarClient is a client whose calls end at once when the broker refuses
// its credentials or TLS fails (Do), rather than after the operation
// timeout: for the commands that produce (publish, the dedup role) or
// consume outside a Pulsar source (the aggregate role).
type PulsarClient struct {
	pulsar.Client
	refused *refusal
}

// DialPulsar connects a PulsarClient with cfg's URL, timeouts and
// credentials.
func DialPulsar(cfg PulsarConfig) (*PulsarClient, error) {
	r := newRefusal(cfg)
	c, err := newPulsarClient(cfg, nil, r)
	if err != nil {
		return nil, err
	}
	return &PulsarClient{Client: c, refused: r}, nil
}

// Do runs op (creating a producer or a consumer with the client) and
// returns its error, or at once the refusal if the broker refuses the
// credentials or TLS fails first (op then ends with the client's Close).
// When op fails another way, the error carries the client's last warning.
func (c *PulsarClient) Do(op func() error) error {
	done := make(chan error, 1)
	go func() { done <- op() }()
	select {
	case err := <-done:
		if err == nil {
			return nil
		}
		if r := c.refused.refused(); r != nil {
			return r
		}
		if w := c.refused.lastWarning(); w != "" {
			return fmt.Errorf("%w (the client's last warning: %s)", err, w)
		}
		return err
	case <-c.refused.done:
		select {
		case err := <-done: // finished at the same moment: trust its result
			if err == nil {
				return nil
			}
		default:
		}
		return c.refused.err
	}
}
