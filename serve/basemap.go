package serve

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// The basemap (-serve.basemap=URL, off by default): raster tiles the
// browser fetches from a tile server and draws under the hexagons. The
// tiles are Web Mercator (EPSG:3857), 256 px, addressed z/x/y as
// OpenStreetMap's are, so the page projects the hexagons in Web Mercator
// too (web/app.js, "projection"). Only the browser talks to the tile
// server; serve never fetches a tile, and without a basemap the page loads
// nothing from elsewhere.

// maxAttribution bounds -serve.basemap-attribution: a provider's credit is
// one line ("© OpenStreetMap contributors" is 28 characters).
const maxAttribution = 300

var (
	placeholderRE = regexp.MustCompile(`\{[^}]*\}`)
	// tileHostRE is a host a CSP source can name as is: a DNS name or an
	// IPv4 address, or an IPv6 address in brackets, and a port.
	tileHostRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`)
)

// basemapOrigin checks a tile URL template and returns the origin its
// tiles come from (scheme://host[:port]), for the page's
// Content-Security-Policy. The template is http or https, one host ({s}
// subdomains are not supported: HTTP/2 serves many tiles over one
// connection), no user:password@ (every browser would get it), and
// {z}, {x} and {y} each at least once, no other placeholder.
func basemapOrigin(tmpl string) (string, error) {
	u, err := url.Parse(tmpl)
	if err != nil {
		if strings.Contains(tmpl, "{s}") {
			return "", fmt.Errorf("one host only: {s} subdomains are not supported")
		}
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("want an http:// or https:// URL template such as https://tile.example/{z}/{x}/{y}.png")
	}
	if u.User != nil {
		return "", fmt.Errorf("no user:password@ in it: every browser that opens the page would get it")
	}
	if !tileHostRE.MatchString(u.Host) {
		return "", fmt.Errorf("host %q: want a name, an address or [an IPv6 address], and a port", u.Host)
	}
	seen := map[string]bool{}
	for _, p := range placeholderRE.FindAllString(tmpl, -1) {
		if p != "{z}" && p != "{x}" && p != "{y}" {
			return "", fmt.Errorf("placeholder %s: only {z}, {x} and {y} are filled in", p)
		}
		seen[p] = true
	}
	for _, p := range []string{"{z}", "{x}", "{y}"} {
		if !seen[p] {
			return "", fmt.Errorf("no %s: a tile is addressed by {z}/{x}/{y}", p)
		}
	}
	return u.Scheme + "://" + u.Host, nil
}

// validateBasemap checks -serve.basemap and -serve.basemap-attribution
// together (Config.Validate).
func validateBasemap(tmpl, attribution string) error {
	if tmpl == "" {
		if attribution != "" {
			return fmt.Errorf("serve.basemap-attribution: needs -serve.basemap (the tiles it credits)")
		}
		return nil
	}
	if _, err := basemapOrigin(tmpl); err != nil {
		return fmt.Errorf("serve.basemap=%q: %v", tmpl, err)
	}
	if strings.TrimSpace(attribution) == "" {
		return fmt.Errorf("serve.basemap-attribution: required with -serve.basemap: the credit the tile provider's terms ask the page to show, e.g. \"© OpenStreetMap contributors\"")
	}
	if n := len([]rune(attribution)); n > maxAttribution {
		return fmt.Errorf("serve.basemap-attribution: %d characters, at most %d", n, maxAttribution)
	}
	return nil
}

// pageCSP is the page's Content-Security-Policy: its script, style and
// API calls from this server only; images from here and, with a basemap,
// from the tile server's origin (tileOrigin, "" for none). Inline styles
// are allowed (the page sets colours and legend positions in the markup it
// builds); inline scripts are not.
func pageCSP(tileOrigin string) string {
	img := "img-src 'self'"
	if tileOrigin != "" {
		img += " " + tileOrigin
	}
	return "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " + img + "; connect-src 'self'; base-uri 'none'; form-action 'none'"
}
