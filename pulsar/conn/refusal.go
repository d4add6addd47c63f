package conn

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// Credentials the broker refuses, said at once and plainly.
//
// The Go client (v0.21.0) treats a refused connection like a broker that
// is down: it retries every lookup until the operation timeout (30 s by
// default) and then returns "connection error", with the broker's reason
// ("Failed to authenticate") or the TLS error only in its log. A wrong
// token or an untrusted certificate does not mend by retrying, so a Client
// watches the client's warnings (clientLog) for them and ends its
// operations as soon as one shows (Client.Do, Client.Consumer, Refused),
// naming what to fix.

// refusal records the first refusal that retrying cannot mend, and the
// client's last warning (for the error of a subscribe that timed out).
type refusal struct {
	cfg  Config
	once sync.Once
	done chan struct{} // closed when err is set
	err  error

	mu   sync.Mutex
	last string // the client's last warning, with its error
}

func newRefusal(cfg Config) *refusal {
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

func tokenHint(cfg Config) string {
	switch {
	case cfg.TokenFile != "":
		return "the token in token-file=" + cfg.TokenFile + " was not accepted: is it this cluster's, whole, and not expired?"
	case cfg.Token != "":
		return "the token in env " + TokenEnv + " was not accepted: is it this cluster's, whole, and not expired?"
	}
	return "no token was given: put one in env " + TokenEnv + " or in a file named by token-file="
}

func tlsHint(cfg Config) string {
	if cfg.TLSCAFile != "" {
		return "tls-ca-file=" + cfg.TLSCAFile + " must hold the CA that signed the broker's certificate, and the port must be the broker's TLS port (6651 by default)"
	}
	return "the system's CAs do not trust the broker's certificate: name its CA with tls-ca-file=, and check the port is the broker's TLS port (6651 by default)"
}
