// Package client reads demand features from a demandpipe server (package
// serve) for pricing services: typed rows, single and batch reads, and a
// deadline on every call.
//
//	c, err := client.New("http://127.0.0.1:8080")
//	row, err := c.Get(ctx, "882a100d65fffff", client.Query{Product: uberX})
//	v, _ := row.Value(5, 8) // sum over the disk of radius 5, last 8 minutes
//
// Against a server with -serve.tls-cert and -serve.token-file:
//
//	c, err := client.New("https://features.internal:8443",
//		client.WithCAFile("/etc/demandpipe/ca.pem"), client.WithTokenFile("/etc/demandpipe/token"))
//
// A Client is safe for concurrent use; reuse one per server.
package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds a call whose context has no earlier deadline: a
// feature read answers in well under a millisecond on a healthy server,
// so a second means the server is in trouble and pricing should fall back.
const DefaultTimeout = time.Second

// MaxBatch is the server's default limit of cells per batch.
const MaxBatch = 1000

// Client talks to one server.
type Client struct {
	base    string
	hc      *http.Client
	timeout time.Duration
	token   *tokenSource // nil: no Authorization header
	def     string       // WithDefinition: the definition asked for when a Query names none

	// Set by options, applied by New.
	tlsConf *tls.Config
	caFile  string
	err     error
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient uses hc (default: a client with keep-alive connections
// sized for a busy caller, 64 idle per host). With WithTLSConfig or
// WithCAFile, hc's Transport must be nil or an *http.Transport: New uses a
// copy of it with the TLS settings, and leaves hc as it was.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithTimeout sets the per-call deadline used when ctx has none earlier
// (default DefaultTimeout; 0 disables it).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithToken sends "Authorization: Bearer token" with every request: a
// server started with -serve.token-file answers 401 to /v1/ without one
// of its tokens.
func WithToken(token string) Option {
	return func(c *Client) {
		if token = strings.TrimSpace(token); token == "" {
			c.fail(errors.New("WithToken: empty token"))
			return
		}
		c.token = staticToken(token)
	}
}

// WithTokenFile sends the token in file (its first line that is neither
// blank nor a # comment) with every request. New reads it, and fails if
// it cannot; after that the file is looked at again at most once a
// second, and a changed token is used from then on, so a token can be
// rotated without restarting the caller (if the file cannot be read then,
// the previous token stays).
func WithTokenFile(file string) Option {
	return func(c *Client) {
		ts, err := fileToken(file)
		if err != nil {
			c.fail(err)
			return
		}
		c.token = ts
	}
}

// WithDefinition reads the feature definition name (issue 23: GET
// /v1/definitions lists a deployment's) unless a Query names another;
// default: the server's active definition, whichever it is at each request.
func WithDefinition(name string) Option { return func(c *Client) { c.def = name } }

// WithTLSConfig uses cfg for https:// (a client certificate, a server
// name, a CA pool…). Combined with WithCAFile, the CA file sets RootCAs of
// a copy of cfg.
func WithTLSConfig(cfg *tls.Config) Option { return func(c *Client) { c.tlsConf = cfg } }

// WithCAFile trusts the PEM certificates in file, and only them, to sign
// the server's certificate (as curl --cacert does): for a server with
// -serve.tls-cert signed by a private CA, or self-signed.
func WithCAFile(file string) Option { return func(c *Client) { c.caFile = file } }

func (c *Client) fail(err error) {
	if c.err == nil {
		c.err = fmt.Errorf("client: %w", err)
	}
}

// New returns a client of the server at baseURL, e.g. http://127.0.0.1:8080
// or https://features.internal:8443.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http://HOST:PORT or https://HOST:PORT", baseURL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	c := &Client{base: strings.TrimSuffix(baseURL, "/"), hc: &http.Client{Transport: tr}, timeout: DefaultTimeout}
	for _, o := range opts {
		o(c)
	}
	if c.err != nil {
		return nil, c.err
	}
	if err := c.setTLS(); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return c, nil
}

// setTLS puts WithTLSConfig and WithCAFile in a copy of the transport.
func (c *Client) setTLS() error {
	if c.tlsConf == nil && c.caFile == "" {
		return nil
	}
	conf := &tls.Config{}
	if c.tlsConf != nil {
		conf = c.tlsConf.Clone()
	}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return fmt.Errorf("WithCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("WithCAFile: no PEM certificate in %s", c.caFile)
		}
		conf.RootCAs = pool
	}
	var tr *http.Transport
	switch t := c.hc.Transport.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		tr = t.Clone()
	default:
		return fmt.Errorf("WithTLSConfig/WithCAFile: the http.Client of WithHTTPClient has a %T, not an *http.Transport to set them on", t)
	}
	// A custom TLS config turns HTTP/2 off unless asked for; the server
	// speaks it, and one connection then carries every call.
	tr.TLSClientConfig, tr.ForceAttemptHTTP2 = conf, true
	hc := *c.hc
	hc.Transport = tr
	c.hc = &hc
	return nil
}

// Feature is one feature of a row: the sum over the disk of radius K and
// the last W minutes. Avg is Value divided by the disk's cell count, set
// only when the query asked for it (Query.Avg).
type Feature struct {
	K     int     `json:"k"`
	W     int     `json:"w"`
	Value int64   `json:"value"`
	Avg   float64 `json:"avg"`
}

// Row is the features of one cell, product and minute.
type Row struct {
	Cell       string    `json:"h3"`
	Product    string    `json:"product_type"`
	Minute     time.Time `json:"minute"`
	AgeSeconds float64   `json:"age_seconds"`
	// Found is false when the cell had no row in the closed minute: every
	// feature is zero (no demand), which is an answer, not missing data.
	Found    bool      `json:"found"`
	Features []Feature `json:"features"`
}

// Value returns the feature of ring k and window w.
func (r *Row) Value(k, w int) (int64, bool) {
	for _, f := range r.Features {
		if f.K == k && f.W == w {
			return f.Value, true
		}
	}
	return 0, false
}

// Age is how long ago the row's minute ended (when it was read).
func (r *Row) Age() time.Duration { return time.Duration(r.AgeSeconds * float64(time.Second)) }

// Query says which features to read.
type Query struct {
	Product string    // product type UUID, required
	Minute  time.Time // start of a closed minute; zero: the latest
	Avg     bool      // also return each sum divided by its disk's cell count
	// Definition names the feature definition to read; "": the client's
	// (WithDefinition), else the server's active one.
	Definition string
}

// LatLng is a point in decimal degrees.
type LatLng struct {
	Lat float64 `json:"lat"`
	Lng float64 `json:"lng"`
}

// Minute is a closed minute the server can answer for.
type Minute struct {
	Minute     time.Time `json:"minute"`
	Rows       int       `json:"rows"`
	AgeSeconds float64   `json:"age_seconds"`
}

// Error is a non-200 answer: Status is the HTTP status (400 for a bad
// request, 404 for a minute not available, 503 before the first minute;
// from the server's guard 401 without a valid token, 421 for a Host it does
// not serve, 429 over the rate limit, 503 over its connection cap),
// Message the server's explanation, RetryAfter the wait it asked for
// (Retry-After, with 429 and 503; 0 if none).
type Error struct {
	Status     int
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string { return fmt.Sprintf("demandpipe: %d: %s", e.Status, e.Message) }

// IsNotReady reports whether err says the server has no closed minute yet
// (a 503; the guard's 503 over its connection cap is one too: both mean
// try again after Error.RetryAfter).
func IsNotReady(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusServiceUnavailable
}

func (c *Client) values(q Query, v url.Values) {
	v.Set("product", q.Product)
	if d := cmp.Or(q.Definition, c.def); d != "" {
		v.Set("definition", d)
	}
	if !q.Minute.IsZero() {
		v.Set("minute", q.Minute.UTC().Format(time.RFC3339))
	}
	if q.Avg {
		v.Set("avg", "true")
	}
}

// Get reads the row of cell (hex H3 index).
func (c *Client) Get(ctx context.Context, cell string, q Query) (Row, error) {
	v := url.Values{"h3": {cell}}
	c.values(q, v)
	var r Row
	err := c.do(ctx, http.MethodGet, "/v1/features?"+v.Encode(), nil, &r)
	return r, err
}

// GetAt reads the row of the cell holding (lat, lng).
func (c *Client) GetAt(ctx context.Context, p LatLng, q Query) (Row, error) {
	v := url.Values{
		"lat": {strconv.FormatFloat(p.Lat, 'f', -1, 64)},
		"lng": {strconv.FormatFloat(p.Lng, 'f', -1, 64)},
	}
	c.values(q, v)
	var r Row
	err := c.do(ctx, http.MethodGet, "/v1/features?"+v.Encode(), nil, &r)
	return r, err
}

// Batch reads the rows of cells, then of points, in one request (at most
// MaxBatch in all, unless the server was configured otherwise). Rows come
// back in the order asked, all for the same minute.
func (c *Client) Batch(ctx context.Context, q Query, cells []string, points []LatLng) ([]Row, error) {
	req := struct {
		Product string   `json:"product"`
		Minute  string   `json:"minute,omitempty"`
		Avg     bool     `json:"avg,omitempty"`
		Cells   []string `json:"cells,omitempty"`
		Points  []LatLng `json:"points,omitempty"`
		Def     string   `json:"definition,omitempty"`
	}{Product: q.Product, Avg: q.Avg, Cells: cells, Points: points, Def: cmp.Or(q.Definition, c.def)}
	if !q.Minute.IsZero() {
		req.Minute = q.Minute.UTC().Format(time.RFC3339)
	}
	if cells == nil && points == nil {
		req.Cells = []string{}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var ans struct {
		Rows []Row `json:"rows"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/features:batch", body, &ans); err != nil {
		return nil, err
	}
	if len(ans.Rows) != len(cells)+len(points) {
		return nil, fmt.Errorf("client: asked for %d rows, got %d", len(cells)+len(points), len(ans.Rows))
	}
	return ans.Rows, nil
}

// Minutes lists the closed minutes available, latest first.
func (c *Client) Minutes(ctx context.Context) ([]Minute, error) {
	var ans struct {
		Minutes []Minute `json:"minutes"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/minutes"+c.defQuery(), nil, &ans)
	return ans.Minutes, err
}

// defQuery is "?definition=NAME" with WithDefinition, else "".
func (c *Client) defQuery() string {
	if c.def == "" {
		return ""
	}
	return "?" + url.Values{"definition": {c.def}}.Encode()
}

// Definition is one feature definition a server answers for.
type Definition struct {
	Name       string `json:"name"`
	Status     string `json:"status"` // active, dark or backfilling
	Resolution int    `json:"resolution"`
	Rings      []int  `json:"rings"`
	Windows    []int  `json:"windows"`
	// Aggregate is how a window folds its minutes: "count" (the
	// contract's sums) or "max" (the busiest minute); docs/CONTRACT.md.
	Aggregate   string `json:"aggregate"`
	FirstMinute string `json:"first_minute"`
	LastMinute  string `json:"last_minute"`
}

// Definitions lists the server's feature definitions and names the
// active one.
func (c *Client) Definitions(ctx context.Context) (active string, defs []Definition, err error) {
	var ans struct {
		Active      string       `json:"active"`
		Definitions []Definition `json:"definitions"`
	}
	err = c.do(ctx, http.MethodGet, "/v1/definitions", nil, &ans)
	return ans.Active, ans.Definitions, err
}

// Products lists the product type UUIDs the server knows.
func (c *Client) Products(ctx context.Context) ([]string, error) {
	var ans struct {
		Products []string `json:"products"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/products"+c.defQuery(), nil, &ans)
	return ans.Products, err
}

// Ready returns nil once the server has a closed minute to answer from.
func (c *Client) Ready(ctx context.Context) error {
	var ans struct{}
	return c.do(ctx, http.MethodGet, "/readyz", nil, &ans)
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != nil {
		req.Header.Set("Authorization", "Bearer "+c.token.get())
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("client: reading answer: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error  string `json:"error"`
			Status string `json:"status"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && (e.Error != "" || e.Status != "") {
			msg = e.Error + e.Status
		}
		e2 := &Error{Status: res.StatusCode, Message: msg}
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
			e2.RetryAfter = time.Duration(s) * time.Second
		}
		return e2
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("client: answer is not the expected JSON: %w", err)
	}
	return nil
}
