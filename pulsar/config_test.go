package pulsar

import (
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/pulsar/conn"
	"github.com/demandpipe/demandpipe/source"
)

func TestParsePulsarURL(t *testing.T) {
	t.Setenv(conn.TokenEnv, "")
	c, err := ParseURL("pulsar://broker:6650/persistent://acme/rides/raw?subscription=dp&type=exclusive&initial=latest&until=end&dead-letter=bad&receiver-queue=50&ack-group-time=1s&ack-group-size=10&name=c1")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.ServiceURL, want.Topic, want.Subscription = "pulsar://broker:6650", "persistent://acme/rides/raw", "dp"
	want.Type, want.Initial, want.UntilEnd, want.DeadLetter = "exclusive", "latest", true, "persistent://public/default/bad"
	want.ReceiverQueue, want.AckGroupTime, want.AckGroupSize, want.Name = 50, time.Second, 10, "c1"
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MaxUnacked != 50000 {
		t.Fatalf("max-unacked defaults to %d, want the broker's 50000", c.MaxUnacked)
	}
	if m, err := ParseURL("pulsar://broker:6650/raw?subscription=dp&type=shared&max-unacked=250000"); err != nil || m.MaxUnacked != 250000 || m.unackedLimit() != 250000 {
		t.Fatalf("max-unacked=250000: %+v %v", m, err)
	}
	// Sticky key ranges go with key_shared only.
	k, err := ParseURL("pulsar://broker:6650/raw?subscription=dp&type=key_shared&key-ranges=0-99,200-300")
	if err != nil || !reflect.DeepEqual(k.KeyRanges, []int{0, 99, 200, 300}) || k.Validate() != nil {
		t.Fatalf("key-ranges: %v %v %v", k.KeyRanges, err, k.Validate())
	}
	k.Type = "failover"
	if err := k.Validate(); err == nil || !strings.Contains(err.Error(), "key-ranges needs type=key_shared") {
		t.Fatalf("key-ranges with failover: %v", err)
	}
	if _, err := ParseURL("pulsar://broker:6650/raw?subscription=dp&type=key_shared&key-ranges=9-1"); err == nil {
		t.Fatal("key-ranges=9-1 accepted")
	}
	if c.Identity() != "pulsar:persistent://acme/rides/raw subscription=dp" {
		t.Fatalf("identity %q", c.Identity())
	}
	// Defaults: a short topic, the port, the token from the environment.
	t.Setenv(conn.TokenEnv, "tok")
	c, err = ParseURL("pulsar+ssl://broker/rides?subscription=s")
	if err != nil {
		t.Fatal(err)
	}
	if c.ServiceURL != "pulsar+ssl://broker:6651" || c.Topic != "persistent://public/default/rides" || c.Token != "tok" || c.Type != "failover" || c.Initial != "earliest" {
		t.Fatalf("%+v", c)
	}
	for _, bad := range []string{
		"http://broker/rides?subscription=s",
		"pulsar:///rides?subscription=s",
		"pulsar://broker/rides?subscription=s&nope=1",
		"pulsar://broker/rides?subscription=s&until=later",
		"pulsar://broker/rides?subscription=s&receiver-queue=x",
		"pulsar://broker/rides?subscription=s&max-unacked=lots",
		"pulsar://broker/rides?subscription=s&token=secret",
	} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// TestPulsarConfigValidate: every out-of-range field is refused with its
// name in the message.
func TestPulsarConfigValidate(t *testing.T) {
	ok := func() Config {
		c := DefaultConfig()
		c.ServiceURL, c.Topic, c.Subscription = "pulsar://h:6650", "persistent://public/default/t", "s"
		return c
	}
	if c := ok(); c.Validate() != nil {
		t.Fatal(c.Validate())
	}
	// max-unacked=0 turns the check off; failover has no limit, so
	// max-unacked does not bound its receiver queue.
	for _, edit := range []func(*Config){
		func(c *Config) { c.Type, c.MaxUnacked = "key_shared", 0 },
		func(c *Config) { c.MaxUnacked, c.ReceiverQueue = 1500, 1000 },
	} {
		c := ok()
		edit(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	for _, tc := range []struct {
		field string
		edit  func(*Config)
	}{
		{"ServiceURL", func(c *Config) { c.ServiceURL = "http://h" }},
		{"topic", func(c *Config) { c.Topic = "" }},
		{"topic", func(c *Config) { c.Topic = "persistent://public/t" }},
		{"topic", func(c *Config) { c.Topic = "kafka://a/b/c" }},
		{"subscription", func(c *Config) { c.Subscription = "" }},
		{"type", func(c *Config) { c.Type = "fanout" }},
		{"initial", func(c *Config) { c.Initial = "middle" }},
		{"receiver-queue", func(c *Config) { c.ReceiverQueue = 0 }},
		{"receiver-queue", func(c *Config) { c.ReceiverQueue = 2_000_000 }},
		{"ack-group-time", func(c *Config) { c.AckGroupTime = -time.Second }},
		{"ack-group-time", func(c *Config) { c.AckGroupTime = time.Minute }},
		{"ack-group-size", func(c *Config) { c.AckGroupSize = 0 }},
		{"connect-timeout", func(c *Config) { c.ConnectTimeout = time.Millisecond }},
		{"operation-timeout", func(c *Config) { c.OperationTimeout = time.Hour }},
		{"token-file", func(c *Config) { c.Token, c.TokenFile = "x", "/etc/hostname" }},
		{"token-file", func(c *Config) { c.TokenFile = "/nonexistent/token" }},
		{"tls-ca-file", func(c *Config) { c.TLSCAFile = "/etc/hostname" }},
		{"dead-letter", func(c *Config) { c.DeadLetter = c.Topic }},
		{"max-unacked", func(c *Config) { c.MaxUnacked = -1 }},
		{"max-unacked", func(c *Config) { c.MaxUnacked = 1<<30 + 1 }},
		{"max-unacked", func(c *Config) { c.Type, c.MaxUnacked, c.ReceiverQueue = "shared", 1500, 1000 }},
	} {
		c := ok()
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v", tc.field, err)
		}
	}
}

// FuzzParsePulsarURL: any spec parses or fails without a panic, and a
// spec that validates names a topic with three parts and a subscription.
func FuzzParsePulsarURL(f *testing.F) {
	f.Add("pulsar://broker:6650/persistent://acme/rides/raw?subscription=dp&type=exclusive&until=end")
	f.Add("pulsar+ssl://b/rides?subscription=s&merge-wait=1s&dead-letter=x")
	f.Add("pulsar://b/?")
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := ParseURL(spec)
		if err != nil {
			return
		}
		c.Token = ""
		if c.Validate() != nil {
			return
		}
		if c.Subscription == "" || strings.Count(c.Topic, "/") != 4 || !strings.HasPrefix(c.Identity(), "pulsar:") {
			t.Fatalf("%q validated as %+v", spec, c)
		}
	})
}

// TestOpeners: the kinds pulsar and pulsar+ssl join source.Builtin()'s,
// each spec parsed with its scheme; a failed open returns a nil Source.
func TestOpeners(t *testing.T) {
	openers := source.Builtin()
	maps.Copy(openers, Openers())
	if got := strings.Join(openers.Kinds(), ","); got != "file,gen,pulsar,pulsar+ssl" {
		t.Fatalf("kinds %s", got)
	}
	for _, spec := range []string{"pulsar://b:6650/rides", "pulsar+ssl://b/rides"} {
		s, err := openers.Open(spec) // no subscription: refused before dialling
		if err == nil || s != nil || !strings.Contains(err.Error(), "no subscription") {
			t.Errorf("%s: source %v, err %v; want a nil Source and the missing subscription named", spec, s, err)
		}
	}
}
