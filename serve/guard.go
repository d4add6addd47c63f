package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/encode"
)

// Guard is what stands between the network and the handlers: TLS, the
// connection cap, the per-client rate limit, the Host check and the bearer
// tokens (Config has the knobs and their defaults). A request meets them
// in that order, each refusal cheaper than what it protects:
//
//	over -serve.max-conns      503, Retry-After: 1, connection closed
//	over -serve.rate-limit     429, Retry-After: seconds until a token
//	Host not allowed           421 Misdirected Request
//	no or wrong bearer token   401, WWW-Authenticate: Bearer
//
// each with a JSON {"error":"…"} body. The rate limit comes before the
// token check so that guessing tokens is throttled too. /healthz and
// /readyz skip all four: a balancer must see the store's health, not the
// guard's verdict on the balancer, and both answer from memory. Without a
// token file no path wants a token; the page (/) and /assets/ never do
// (they are the binary's embedded files, no data: the page shows a token
// field when the API answers 401), /metrics only with
// -serve.metrics-auth; every other path does, unknown ones included, so a
// route added later is protected without a second thought.
//
// A Guard is safe for concurrent use. It starts no goroutine: the token
// file is checked on requests, and reloads on SIGHUP are the caller's
// (Reload).
type Guard struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time // the rate limiter's and token file's clock; tests inject
	hosts  hostSet
	cert   *certificate // nil: plain HTTP
	tokens *tokenFile   // nil: no tokens needed
	rate   *rateLimiter // nil: no limit
	conns  atomic.Int64 // open connections
	met    *guardMetrics
}

// NewGuard builds the guard of a server listening on addr (as given, before
// it is resolved: its host is in the default allowed hosts). It reads the
// certificate pair and the token file now, so a file that is missing,
// unreadable or malformed stops the start with an error naming it. reg may
// be nil.
func NewGuard(cfg Config, addr string, reg prometheus.Registerer) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Guard{cfg: cfg, log: cfg.Log, now: time.Now}
	if g.log == nil {
		g.log = slog.Default()
	}
	var err error
	if g.hosts, err = newHostSet(cfg.AllowedHosts, addr); err != nil {
		return nil, err
	}
	if cfg.TLSCert != "" {
		if g.cert, err = loadCertificate(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, err
		}
	}
	if cfg.TokenFile != "" {
		if g.tokens, err = loadTokenFile(cfg.TokenFile); err != nil {
			return nil, err
		}
	}
	if cfg.RateLimit > 0 {
		g.rate = newRateLimiter(cfg.RateLimit, cfg.RateBurst, maxRateClients)
	}
	if g.met, err = newGuardMetrics(reg, g); err != nil {
		return nil, err
	}
	return g, nil
}

// TLS reports whether the guard serves HTTPS (Config.TLSCert).
func (g *Guard) TLS() bool { return g.cert != nil }

// Reloadable reports whether Reload has anything to re-read: a
// certificate pair or a token file. The caller wires SIGHUP only then (a
// process that ignores SIGHUP would surprise someone who expects it to
// end the process).
func (g *Guard) Reloadable() bool { return g.cert != nil || g.tokens != nil }

// Reload re-reads the certificate pair and the token file (SIGHUP). What
// does not load keeps its previous version in service; each outcome is
// one log line, and the error says what failed.
func (g *Guard) Reload() error {
	var errs []error
	if g.cert != nil {
		leaf, err := g.cert.reload()
		if err != nil {
			g.met.reloads.WithLabelValues("tls", "error").Inc()
			g.log.Error("serve: TLS certificate not reloaded, still serving the previous one", "cert", g.cfg.TLSCert, "key", g.cfg.TLSKey, "err", err)
			errs = append(errs, err)
		} else {
			g.met.reloads.WithLabelValues("tls", "ok").Inc()
			g.log.Info("serve: TLS certificate reloaded", "cert", g.cfg.TLSCert, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if g.tokens != nil {
		if err := g.tokens.reload(g.now(), true, g.log, g.met); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Serve serves hs on ln behind the guard until hs is shut down, as
// hs.Serve does. It takes hs over: it wraps hs.Handler, chains
// hs.ConnContext and hs.ConnState (the connection cap) and, with TLS, sets
// hs.TLSConfig. Call it once, instead of hs.Serve.
func (g *Guard) Serve(hs *http.Server, ln net.Listener) error {
	if hs.Handler == nil {
		hs.Handler = http.DefaultServeMux // as hs.Serve would
	}
	hs.Handler = g.Handler(hs.Handler)
	cc, cs := hs.ConnContext, hs.ConnState
	hs.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if cc != nil {
			ctx = cc(ctx, c)
		}
		return g.connContext(ctx)
	}
	hs.ConnState = func(c net.Conn, s http.ConnState) {
		g.connState(s)
		if cs != nil {
			cs(c, s)
		}
	}
	if g.cert == nil {
		return hs.Serve(ln)
	}
	hs.TLSConfig = g.cert.config()
	return hs.ServeTLS(ln, "", "")
}

// overCap marks, in a connection's context, one accepted past
// -serve.max-conns.
type overCap struct{}

// connContext counts a new connection; http.Server calls it once per
// accepted connection, before any request, and connState(StateClosed or
// StateHijacked) once at its end.
func (g *Guard) connContext(ctx context.Context) context.Context {
	if n := g.conns.Add(1); g.cfg.MaxConns > 0 && n > int64(g.cfg.MaxConns) {
		return context.WithValue(ctx, overCap{}, true)
	}
	return ctx
}

func (g *Guard) connState(s http.ConnState) {
	if s == http.StateClosed || s == http.StateHijacked {
		g.conns.Add(-1)
	}
}

// Conns is the number of open connections.
func (g *Guard) Conns() int64 { return g.conns.Load() }

// Handler returns next behind the guard's request checks (the connection
// cap acts only on connections that Serve accepted).
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		over := r.Context().Value(overCap{}) != nil
		if over {
			// HTTP/1.1 closes after this answer; HTTP/2 sends GOAWAY.
			w.Header().Set("Connection", "close")
		}
		if p := r.URL.Path; p == "/healthz" || p == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		if over {
			g.met.conns.Inc()
			w.Header().Set("Retry-After", "1")
			refuse(w, http.StatusServiceUnavailable, "too many connections (-serve.max-conns="+strconv.Itoa(g.cfg.MaxConns)+"): retry on a new connection, or reuse one")
			return
		}
		if g.rate != nil {
			if ok, wait := g.rate.allow(clientOf(r.RemoteAddr), g.now()); !ok {
				g.met.rate.Inc()
				w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
				refuse(w, http.StatusTooManyRequests, "rate limit: more than "+strconv.FormatFloat(g.cfg.RateLimit, 'f', -1, 64)+" requests/s from this client (-serve.rate-limit)")
				return
			}
		}
		if !g.hosts.allows(r.Host) {
			g.met.host.Inc()
			refuse(w, http.StatusMisdirectedRequest, "host "+strconv.Quote(r.Host)+" is not served here (-serve.allowed-hosts)")
			return
		}
		if g.tokens != nil && g.needsToken(r.URL.Path) {
			g.tokens.check(g.now(), g.log, g.met)
			tok, given := bearer(r.Header.Get("Authorization"))
			if !given || !g.tokens.valid(tok) {
				g.met.unauthorized.Inc()
				// RFC 6750 section 3: no error code when no token was
				// given, invalid_token when one was and is not valid.
				if !given {
					w.Header().Set("WWW-Authenticate", `Bearer realm="demandpipe"`)
					refuse(w, http.StatusUnauthorized, "a bearer token is needed: Authorization: Bearer TOKEN (-serve.token-file)")
				} else {
					w.Header().Set("WWW-Authenticate", `Bearer realm="demandpipe", error="invalid_token"`)
					refuse(w, http.StatusUnauthorized, "the bearer token is not valid")
				}
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// needsToken: everything but the page, its assets and (without
// -serve.metrics-auth) /metrics. A path that is not clean is never
// open: "/assets/../v1/map" must not pass as an asset, whatever the mux
// behind makes of it.
func (g *Guard) needsToken(p string) bool {
	if p != path.Clean(p) {
		return true
	}
	switch {
	case p == "/", strings.HasPrefix(p, "/assets/"):
		return false
	case p == "/metrics":
		return g.cfg.MetricsAuth
	}
	return true
}

// bearer returns the token of an Authorization header "Bearer TOKEN" (the
// scheme is case-insensitive, RFC 9110 section 11.1); given is false
// without one.
func bearer(h string) (tok string, given bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	tok = strings.TrimSpace(h[len(scheme):])
	return tok, tok != ""
}

// refuse answers {"error":msg} with code.
func refuse(w http.ResponseWriter, code int, msg string) {
	b := encode.AppendJSONString([]byte(`{"error":`), msg)
	b = append(b, "}\n"...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b)
}

// clientOf is the rate limiter's key for a peer address: the IP, or an
// IPv6 address's /64 (a single host commonly holds a whole /64, and could
// rotate through it). An address that does not parse (not TCP) is the
// zero key, shared.
func clientOf(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// hostSet is the Host headers answered (Config.AllowedHosts).
type hostSet struct {
	any   bool          // "*"
	anyIP bool          // any IP literal (wildcard listen address)
	list  []allowedHost // lower case, without brackets
}

type allowedHost struct{ host, port string } // port "": any

// parseAllowedHost reads an -serve.allowed-hosts entry: name, name:port,
// IPv4, [IPv6], [IPv6]:port or a bare IPv6 address; "*" is any.
func parseAllowedHost(s string) (allowedHost, error) {
	if s == "*" {
		return allowedHost{host: "*"}, nil
	}
	h, p := splitHost(s)
	if h == "" || strings.ContainsAny(h, " \t/@*,") || (p != "" && !isPort(p)) {
		return allowedHost{}, fmt.Errorf("%q is not a host name, IP address, host:port or *", s)
	}
	return allowedHost{h, p}, nil
}

func isPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536
}

// splitHost splits a Host header (or an allowed-hosts entry) into its
// lower-case host, without brackets or a final dot, and its port.
func splitHost(s string) (host, port string) {
	host = s
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	return strings.TrimSuffix(strings.ToLower(host), "."), port
}

func newHostSet(entries []string, addr string) (hostSet, error) {
	var hs hostSet
	for _, e := range entries {
		a, err := parseAllowedHost(e)
		if err != nil {
			return hostSet{}, fmt.Errorf("serve.allowed-hosts: %v", err)
		}
		if a.host == "*" {
			hs.any = true
			continue
		}
		hs.list = append(hs.list, a)
	}
	if len(entries) > 0 {
		return hs, nil
	}
	// The default: the listen host and loopback, on any port (a :0 port
	// is resolved later, and a proxy in front may use another).
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		hs.list = append(hs.list, allowedHost{host: h})
	}
	host, _ := splitHost(addr)
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		hs.anyIP = true
		if name, err := os.Hostname(); err == nil && name != "" {
			hs.list = append(hs.list, allowedHost{host: strings.ToLower(name)})
		}
	} else {
		hs.list = append(hs.list, allowedHost{host: host})
	}
	return hs, nil
}

// allows reports whether a request's Host is served. An empty Host
// (HTTP/1.0) is: a browser always sends one, so it cannot be rebinding.
func (hs *hostSet) allows(hostHeader string) bool {
	if hs.any || hostHeader == "" {
		return true
	}
	h, p := splitHost(hostHeader)
	for _, a := range hs.list {
		if a.host == h && (a.port == "" || a.port == p) {
			return true
		}
	}
	if hs.anyIP {
		_, err := netip.ParseAddr(h)
		return err == nil
	}
	return false
}
