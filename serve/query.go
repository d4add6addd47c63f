package serve

import (
	"net/url"
	"strings"
)

// query is a parsed URL query without the map url.Values allocates: at
// most maxParams pairs, each given once, values unescaped only when they
// hold escapes.
type query struct {
	k, v [maxParams]string
	n    int
	used [maxParams]bool
}

const maxParams = 8

// parse reads raw; it returns an error message, or "".
func (q *query) parse(raw string) string {
	q.n = 0
	q.used = [maxParams]bool{}
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if strings.ContainsAny(k, "%+") {
			u, err := url.QueryUnescape(k)
			if err != nil {
				return "query: malformed escape in parameter name " + quote(k)
			}
			k = u
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return "query: malformed escape in " + k + "=" + quote(v)
			}
			v = u
		}
		for i := range q.n {
			if q.k[i] == k {
				return "query: parameter " + quote(k) + " given twice"
			}
		}
		if q.n == maxParams {
			return "query: too many parameters"
		}
		q.k[q.n], q.v[q.n] = k, v
		q.n++
	}
	return ""
}

// get returns the value of k and marks it used.
func (q *query) get(k string) (string, bool) {
	for i := range q.n {
		if q.k[i] == k {
			q.used[i] = true
			return q.v[i], true
		}
	}
	return "", false
}

// only returns an error message naming the first parameter nobody asked
// for: a typo ("prodcut=") must not be silently ignored.
func (q *query) only(allowed ...string) string {
	for i := range q.n {
		if !q.used[i] {
			msg := "query: unknown parameter " + quote(q.k[i])
			if len(allowed) > 0 {
				msg += " (allowed: " + strings.Join(allowed, ", ") + ")"
			}
			return msg
		}
	}
	return ""
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return `"` + s + `"`
}
