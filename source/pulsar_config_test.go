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
