package serve

import (
	"embed"
	"html"
	"net/http"
	"strconv"
	"strings"
)

// The page at / is three embedded files (no CDN: the machines it runs on
// may have no internet). index.html gets the refresh period and the
// basemap (basemap.go) filled in at start; it is served with a
// Content-Security-Policy (pageCSP) that admits nothing from elsewhere but
// the basemap's tiles, when there is one.
// What the page does, and the view state it keeps in its URL, is described
// at the top of web/app.js; how it picks its default view, in overview.go.
//
//go:embed web/index.html web/app.js web/style.css
var web embed.FS

type asset struct {
	ctype string
	body  []byte
}

type pageData struct {
	index  []byte
	csp    string // Content-Security-Policy of the page
	assets map[string]asset
}

func (s *Server) initPage() error {
	idx, err := web.ReadFile("web/index.html")
	if err != nil {
		return err
	}
	tileOrigin := ""
	if s.cfg.Basemap != "" {
		if tileOrigin, err = basemapOrigin(s.cfg.Basemap); err != nil {
			return err // Validate has said so already
		}
	}
	s.page.csp = pageCSP(tileOrigin)
	// One pass: a value is never searched for placeholders itself.
	s.page.index = []byte(strings.NewReplacer(
		"{{REFRESH_MS}}", strconv.FormatInt(s.cfg.PageRefresh.Milliseconds(), 10),
		"{{BASEMAP}}", html.EscapeString(s.cfg.Basemap),
		"{{BASEMAP_ATTRIBUTION}}", html.EscapeString(s.cfg.BasemapAttribution),
	).Replace(string(idx)))
	s.page.assets = map[string]asset{}
	for name, ctype := range map[string]string{"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"} {
		b, err := web.ReadFile("web/" + name)
		if err != nil {
			return err
		}
		s.page.assets[name] = asset{ctype, b}
	}
	return nil
}

func (s *Server) index(w http.ResponseWriter, _ *http.Request, _ *reqState) int {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Security-Policy", s.page.csp)
	w.Write(s.page.index)
	return http.StatusOK
}

func (s *Server) asset(w http.ResponseWriter, r *http.Request, st *reqState) int {
	a, ok := s.page.assets[r.PathValue("file")]
	if !ok {
		return s.fail(w, st, http.StatusNotFound, "no such asset "+quote(strings.TrimPrefix(r.URL.Path, "/assets/")))
	}
	w.Header().Set("Content-Type", a.ctype)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(a.body)
	return http.StatusOK
}
