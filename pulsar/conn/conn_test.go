package conn

import (
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/internal/redact"
)

// TestParseService: -scaleout.url takes a service URL with the
// connection's settings only; a topic or a consumer's setting is refused
// with a message saying what is wanted.
func TestParseService(t *testing.T) {
	t.Setenv(TokenEnv, "")
	c, err := ParseService("pulsar+ssl://broker?tls-ca-file=/ca.pem&token-file=/tok&connect-timeout=3s")
	if err != nil {
		t.Fatal(err)
	}
	if c.ServiceURL != "pulsar+ssl://broker:6651" || c.TLSCAFile != "/ca.pem" || c.TokenFile != "/tok" || c.ConnectTimeout != 3*time.Second || c.Topic != "" {
		t.Fatalf("parsed %+v", c)
	}
	if c, err := ParseService("pulsar://10.0.0.5:6650"); err != nil || c.ServiceURL != "pulsar://10.0.0.5:6650" {
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
		if _, err := ParseService(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", spec, err, want)
		}
	}
}

// TestSecretsNeverPrinted: a token or a password in a URL is refused, and
// no refusal prints it (it would end up in logs and CI output); user info
// before the host is refused too. (internal/redact tests what log lines
// print.)
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
	} {
		var err error
		if strings.Count(spec, "/") == 2 || strings.Contains(spec, "persistent://") && !strings.Contains(spec, "subscription") {
			_, err = ParseService(spec)
		} else {
			_, _, err = ParseURL(spec)
		}
		if err == nil {
			t.Errorf("%s: accepted", redact.URL(spec))
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the refusal prints the secret: %v", err)
		}
	}
}

// TestParseTopic: publish -to takes a topic URL with the connection's
// settings, its defaults filled in (a short topic, the port); a consumer's
// setting is refused rather than ignored.
func TestParseTopic(t *testing.T) {
	t.Setenv(TokenEnv, "tok")
	c, err := ParseTopic("pulsar+ssl://broker/rides?operation-timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.ServiceURL, want.Topic, want.OperationTimeout, want.Token = "pulsar+ssl://broker:6651", "persistent://public/default/rides", 2*time.Second, "tok"
	if c != want {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	if _, err := ParseTopic("pulsar://broker/rides?subscription=s"); err == nil || !strings.Contains(err.Error(), "subscription= is not a connection setting") {
		t.Fatalf("a consumer's setting: %v", err)
	}
	c, others, err := ParseURL("pulsar://broker:1234/rides?subscription=s&connect-timeout=1s")
	if err != nil || others.Get("subscription") != "s" || len(others) != 1 || c.ConnectTimeout != time.Second || c.ServiceURL != "pulsar://broker:1234" {
		t.Fatalf("ParseURL: %+v, others %v, %v", c, others, err)
	}
}
