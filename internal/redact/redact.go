// Package redact makes source and sink specs fit to print: the one place
// that knows which parts of a URL are secrets, for every package that puts
// a spec in an error or a log line (source, pulsar/conn, the commands).
package redact

import "strings"

// Redacted replaces a secret.
const Redacted = "REDACTED"

// URL returns spec fit to print: user info before the host
// ("user:password@") and the values of token= and password= replaced by
// REDACTED. Specs that are not URLs come back as they are.
func URL(spec string) string {
	scheme, rest, ok := strings.Cut(spec, "://")
	if !ok {
		return spec
	}
	rest, query, hasQuery := strings.Cut(rest, "?")
	host, path, hasPath := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = Redacted + "@" + host[i+1:]
	}
	out := scheme + "://" + host
	if hasPath {
		out += "/" + path
	}
	if !hasQuery {
		return out
	}
	parts := strings.Split(query, "&")
	for i, p := range parts {
		k, _, _ := strings.Cut(p, "=")
		if k == "token" || k == "password" {
			parts[i] = k + "=" + Redacted
		}
	}
	return out + "?" + strings.Join(parts, "&")
}
