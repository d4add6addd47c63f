package serve

import (
	"bytes"
	"embed"
	"net/http"
	"strconv"
	"strings"
)

// The page at / is three embedded files (no CDN: the machines it runs on
// have no internet). index.html gets the refresh period filled in at start.
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
	assets map[string]asset
}

func (s *Server) initPage() error {
	idx, err := web.ReadFile("web/index.html")
	if err != nil {
		return err
	}
	s.page.index = bytes.ReplaceAll(idx, []byte("{{REFRESH_MS}}"), []byte(strconv.FormatInt(s.cfg.PageRefresh.Milliseconds(), 10)))
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
