package pulsartest

import (
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"time"
)

// Authentication and TLS, as far as a test double goes: TLS is Go's
// crypto/tls on the listener (Config.TLS); authentication compares the
// CONNECT's token with Config.Tokens. What a client sees on a refusal is
// what a Pulsar broker sends: ERROR with request id -1 and ServerError
// AuthenticationError, then the connection closes.

// handshakeTimeout bounds a TLS handshake and the write of a refusal, so
// that a client that stops half way cannot hold a connection goroutine.
const handshakeTimeout = 10 * time.Second

// errRejected ends a connection whose CONNECT was refused.
var errRejected = errors.New("CONNECT refused: authentication failed")

// authenticatedLocked reports whether a CONNECT may proceed: always
// without Config.Tokens, else only with method "token" and one of them.
func (s *Server) authenticatedLocked(cmd connectCmd) bool {
	if len(s.cfg.Tokens) == 0 {
		return true
	}
	return cmd.authMethodName == "token" && slices.Contains(s.cfg.Tokens, string(cmd.authData))
}

// handshakeTLS completes the TLS handshake of a connection accepted on a
// TLS listener (nothing to do on plain TCP), within handshakeTimeout.
func (c *conn) handshakeTLS() error {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	return tc.HandshakeContext(ctx)
}

// SetTokens replaces the accepted tokens (Config.Tokens), to test a token
// revoked or rotated: connections already made stay, as on a broker until
// its credential refresh check, and each CONNECT from now on is checked
// against tokens. An empty list turns authentication off.
func (s *Server) SetTokens(tokens []string) error {
	if slices.Contains(tokens, "") {
		return errors.New("pulsartest: SetTokens: an empty token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Tokens = slices.Clone(tokens)
	return nil
}
