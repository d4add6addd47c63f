package redact

import (
	"strings"
	"testing"
)

// TestURL: user info and the values of token= and password= are replaced,
// whatever the scheme; everything else, and specs that are not URLs, come
// back as they are.
func TestURL(t *testing.T) {
	const secret = "s3cr3t-T0KEN"
	for spec, want := range map[string]string{
		"pulsar://u:" + secret + "@b:6650/t?subscription=s&token=" + secret: "pulsar://REDACTED@b:6650/t?subscription=s&token=REDACTED",
		"cassandra://h/ks?password=" + secret + "&rf=1":                     "cassandra://h/ks?password=REDACTED&rf=1",
		"kafka://user:" + secret + "@b:9092":                                "kafka://REDACTED@b:9092",
		"file:events.ndjson":                                                "file:events.ndjson",
		"pulsar://b:6650/persistent://public/default/t?subscription=s":      "pulsar://b:6650/persistent://public/default/t?subscription=s",
	} {
		got := URL(spec)
		if got != want {
			t.Errorf("URL(%q) = %q, want %q", spec, got, want)
		}
		if strings.Contains(got, secret) {
			t.Errorf("URL(%q) prints the secret", spec)
		}
	}
}

// FuzzURL: a spec that is not a URL comes back unchanged, and redacting
// twice changes nothing more (nothing a first pass left is a secret).
func FuzzURL(f *testing.F) {
	f.Add("pulsar://b:6650/t?token=abc")
	f.Add("x://u:p@h/p?a=1&token=z")
	f.Fuzz(func(t *testing.T, spec string) {
		got := URL(spec)
		if !strings.Contains(spec, "://") && got != spec {
			t.Fatalf("URL(%q) = %q: not a URL, want it unchanged", spec, got)
		}
		if again := URL(got); again != got {
			t.Fatalf("URL(%q) = %q, and again %q", spec, got, again)
		}
	})
}
