package source

import (
	"strings"
	"testing"
	"time"
)

// TestParsePulsarService: -scaleout.url takes a service URL with the
// connection's settings only; a topic or a consumer's setting is refused
// with a message saying what is wanted.
func TestParsePulsarService(t *testing.T) {
	t.Setenv(PulsarTokenEnv, "")
	c, err := ParsePulsarService("pulsar+ssl://broker?tls-ca-file=/ca.pem&token-file=/tok&connect-timeout=3s")
	if err != nil {
		t.Fatal(err)
	}
	if c.ServiceURL != "pulsar+ssl://broker:6651" || c.TLSCAFile != "/ca.pem" || c.TokenFile != "/tok" || c.ConnectTimeout != 3*time.Second || c.Topic != "" {
		t.Fatalf("parsed %+v", c)
	}
	if c, err := ParsePulsarService("pulsar://10.0.0.5:6650"); err != nil || c.ServiceURL != "pulsar://10.0.0.5:6650" {
		t.Fatalf("plain URL: %+v, %v", c, err)
	}
	for spec, want := range map[string]string{
		"pulsar://b:6650/persistent://public/default/t": "has no topic",
		"pulsar://b:6650/t":                             "has no topic",
		"pulsar://b:6650?subscription=s":                "subscription= is not a connection setting",
		"pulsar://b:6650?key-ranges=0-9":                "key-ranges= is not a connection setting",
		"pulsar://b:6650?token=secret":                  "would end up in logs",
		"http://b:6650":                                 "want pulsar://",
	} {
		if _, err := ParsePulsarService(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", spec, err, want)
		}
	}
}

// TestSecretsNeverPrinted: a token or a password in a URL is refused, and
// no refusal or log line prints it (it would end up in logs and CI output);
// user info before the host is refused too.
func TestSecretsNeverPrinted(t *testing.T) {
	const secret = "s3cr3t-T0KEN"
	for _, spec := range []string{
		"pulsar://b:6650/rides?subscription=s&token=" + secret,
		"pulsar://user:" + secret + "@b:6650/rides?subscription=s",
		"pulsar+ssl://" + secret + "@b/rides?subscription=s",
		"pulsar://user:" + secret + "@b:6650/rides?subscription=s&nosuch=1",
		"pulsar://b:6650?token=" + secret,
		"pulsar://user:" + secret + "@b:6650",
		"pulsar://user:" + secret + "@b:6650/persistent://public/default/t",
		"kafka://user:" + secret + "@b:9092/rides",
	} {
		var err error
		if strings.HasPrefix(spec, "kafka") {
			_, err = Open(spec)
		} else if strings.Count(spec, "/") == 2 || strings.Contains(spec, "persistent://") && !strings.Contains(spec, "subscription") {
			_, err = ParsePulsarService(spec)
		} else {
			_, err = ParsePulsarURL(spec)
		}
		if err == nil {
			t.Errorf("%s: accepted", RedactURL(spec))
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the refusal prints the secret: %v", err)
		}
	}
	for spec, want := range map[string]string{
		"pulsar://u:" + secret + "@b:6650/t?subscription=s&token=" + secret: "pulsar://REDACTED@b:6650/t?subscription=s&token=REDACTED",
		"cassandra://h/ks?password=" + secret + "&rf=1":                     "cassandra://h/ks?password=REDACTED&rf=1",
		"file:events.ndjson": "file:events.ndjson",
		"pulsar://b:6650/persistent://public/default/t?subscription=s": "pulsar://b:6650/persistent://public/default/t?subscription=s",
	} {
		if got := RedactURL(spec); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", spec, got, want)
		}
	}
}
