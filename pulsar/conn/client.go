package conn

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/prometheus/client_golang/prometheus"
)

// Client is a Pulsar client whose operations end at once when the broker
// refuses its credentials or TLS fails (Do, Consumer, Refused), rather
// than after the operation timeout (refusal.go). It counts its consumers'
// reconnections (Reconnects). Its log lines at warn level and up go to
// stderr, prefixed "pulsar client: ". Close may be called more than once.
type Client struct {
	pulsar.Client
	refused    *refusal
	reconnects atomic.Int64
	closeOnce  sync.Once
}

// Dial connects a client with cfg's URL, timeouts and credentials, after
// Validate.
func Dial(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{refused: newRefusal(cfg)}
	opts := pulsar.ClientOptions{
		URL:                        cfg.ServiceURL,
		ConnectionTimeout:          cfg.ConnectTimeout,
		OperationTimeout:           cfg.OperationTimeout,
		TLSTrustCertsFilePath:      cfg.TLSCAFile,
		TLSAllowInsecureConnection: cfg.TLSAllowInsecure,
		Logger:                     plog.NewLoggerWithSlog(slog.New(newClientLog(&c.reconnects, c.refused))),
		MetricsRegisterer:          prometheus.NewRegistry(), // the client's own metrics stay private
	}
	switch {
	case cfg.Token != "":
		opts.Authentication = pulsar.NewAuthenticationToken(cfg.Token)
	case cfg.TokenFile != "":
		opts.Authentication = pulsar.NewAuthenticationTokenFromFile(cfg.TokenFile)
	}
	pc, err := pulsar.NewClient(opts)
	if err != nil {
		if cfg.TokenFile != "" { // the client reads the token here first
			return nil, fmt.Errorf("pulsar %s: token-file=%s: %w", cfg.ServiceURL, cfg.TokenFile, err)
		}
		return nil, fmt.Errorf("pulsar %s: %w", cfg.ServiceURL, err)
	}
	c.Client = pc
	return c, nil
}

// Close closes the client (once: later calls do nothing).
func (c *Client) Close() { c.closeOnce.Do(c.Client.Close) }

// Refused is closed when the broker has refused the credentials or TLS
// failed: from then on the client only retries in vain (Refusal says why).
func (c *Client) Refused() <-chan struct{} { return c.refused.done }

// Refusal is the refusal, saying what to fix, or nil.
func (c *Client) Refusal() error { return c.refused.refused() }

// LastWarning is the client's last warning with its error ("" if none):
// for the error of an operation that timed out.
func (c *Client) LastWarning() string { return c.refused.lastWarning() }

// Reconnects counts the times a consumer of this client reconnected to a
// broker (the client's only sign of it is a log line).
func (c *Client) Reconnects() int64 { return c.reconnects.Load() }

// Do runs op (creating a producer or a consumer with the client) and
// returns its error, or at once the refusal if the broker refuses the
// credentials or TLS fails first (op then ends with the client's Close).
// When op fails another way, the error carries the client's last warning.
func (c *Client) Do(op func() error) error {
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

// Consumer is Subscribe that ends as soon as a refusal shows, returning
// the refusal (Refusal). The client cannot be told to stop retrying: on a
// refusal, Consumer closes the client (it must not be used again) and the
// abandoned Subscribe goes on in the background until the operation
// timeout, its goroutines then closing whatever it made.
func (c *Client) Consumer(opts pulsar.ConsumerOptions) (pulsar.Consumer, error) {
	type result struct {
		cons pulsar.Consumer
		err  error
	}
	done := make(chan result, 1)
	go func() {
		cons, err := c.Client.Subscribe(opts)
		done <- result{cons, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			if err := c.refused.refused(); err != nil {
				return nil, err
			}
		}
		return res.cons, res.err
	case <-c.refused.done:
		select {
		case res := <-done: // finished at the same moment: trust its result
			if res.err == nil {
				return res.cons, nil
			}
			return nil, c.refused.err
		default:
		}
		c.Close()
		go func() {
			if res := <-done; res.cons != nil {
				res.cons.Close()
			}
		}()
		return nil, c.refused.err
	}
}
