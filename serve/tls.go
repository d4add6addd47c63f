package serve

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
)

// certificate is the server's certificate pair (Config.TLSCert, TLSKey),
// swapped atomically on reload: a handshake loads the pointer and never
// waits, and connections already open keep the pair they started with.
type certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func loadCertificate(certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if _, err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload reads the pair again and puts it in service; on any error the
// previous pair stays. It returns the new leaf.
func (c *certificate) reload() (*x509.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("serve.tls-cert=%s, serve.tls-key=%s: %w", c.certFile, c.keyFile, err)
	}
	if cert.Leaf == nil { // set by LoadX509KeyPair since Go 1.23
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("serve.tls-cert=%s: %w", c.certFile, err)
		}
	}
	c.cur.Store(&cert)
	return cert.Leaf, nil
}

// leaf is the certificate in service.
func (c *certificate) leaf() *x509.Certificate { return c.cur.Load().Leaf }

// config is the server's TLS configuration: the pair in service, TLS 1.2
// or later (Go's default cipher suites, all with forward secrecy).
func (c *certificate) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}
