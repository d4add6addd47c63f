// Package client reads demand features from a demandpipe server (package
// serve) for pricing services: typed rows, single and batch reads, and a
// deadline on every call.
//
//	c, err := client.New("http://127.0.0.1:8080")
//	row, err := c.Get(ctx, "882a100d65fffff", client.Query{Product: uberX})
//	v, _ := row.Value(5, 8) // sum over the disk of radius 5, last 8 minutes
//
// A Client is safe for concurrent use; reuse one per server.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient uses hc (default: a client with keep-alive connections
// sized for a busy caller, 64 idle per host).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithTimeout sets the per-call deadline used when ctx has none earlier
// (default DefaultTimeout; 0 disables it).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// New returns a client of the server at baseURL, e.g. http://127.0.0.1:8080.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http://HOST:PORT", baseURL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	c := &Client{base: strings.TrimSuffix(baseURL, "/"), hc: &http.Client{Transport: tr}, timeout: DefaultTimeout}
	for _, o := range opts {
		o(c)
	}
	return c, nil
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
// request, 404 for a minute not available, 503 before the first minute),
// Message the server's explanation.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("demandpipe: %d: %s", e.Status, e.Message) }

// IsNotReady reports whether err says the server has no closed minute yet.
func IsNotReady(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusServiceUnavailable
}

func (q Query) values(v url.Values) {
	v.Set("product", q.Product)
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
	q.values(v)
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
	q.values(v)
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
	}{Product: q.Product, Avg: q.Avg, Cells: cells, Points: points}
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
	err := c.do(ctx, http.MethodGet, "/v1/minutes", nil, &ans)
	return ans.Minutes, err
}

// Products lists the product type UUIDs the server knows.
func (c *Client) Products(ctx context.Context) ([]string, error) {
	var ans struct {
		Products []string `json:"products"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/products", nil, &ans)
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
		return &Error{Status: res.StatusCode, Message: msg}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("client: answer is not the expected JSON: %w", err)
	}
	return nil
}
