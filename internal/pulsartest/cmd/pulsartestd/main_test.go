package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/internal/pulsartest"
)

func TestPartitionsFlag(t *testing.T) {
	p := partitionsFlag{}
	if err := p.Set("orders=3"); err != nil || p["orders"] != 3 {
		t.Fatalf("orders=3: %v %v", p, err)
	}
	for _, bad := range []string{"orders", "orders=x"} {
		if err := p.Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTokenFlags(t *testing.T) {
	var tokens tokensFlag
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tokens.Set("inline"); err != nil {
		t.Fatal(err)
	}
	if err := (tokenFilesFlag{&tokens}).Set(path); err != nil {
		t.Fatal(err)
	}
	if want := []string{"inline", "from-file"}; !slices.Equal(tokens, want) {
		t.Errorf("tokens = %q, want %q", tokens, want)
	}
	if err := tokens.Set(""); err == nil {
		t.Error("empty -token accepted")
	}
	if err := (tokenFilesFlag{&tokens}).Set(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Error("missing -token-file accepted")
	}
}

func TestTLSConfig(t *testing.T) {
	server, _, err := pulsartest.GenerateTLS()
	if err != nil {
		t.Fatal(err)
	}
	cert := server.Certificates[0]
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := tlsConfig("", ""); c != nil || err != nil {
		t.Errorf("no files: %v, %v; want plain TCP", c, err)
	}
	if c, err := tlsConfig(certFile, keyFile); err != nil || len(c.Certificates) != 1 {
		t.Errorf("cert and key: %v", err)
	}
	for _, pair := range [][2]string{{certFile, ""}, {"", keyFile}, {keyFile, certFile}} {
		if _, err := tlsConfig(pair[0], pair[1]); err == nil {
			t.Errorf("tlsConfig(%q, %q) accepted", pair[0], pair[1])
		}
	}
}

// TestInactiveTopicFlags: the -delete-inactive-topics flags reach the
// double's Config, their defaults leave the double's (the broker's)
// defaults in place, and out-of-range values are refused.
func TestInactiveTopicFlags(t *testing.T) {
	st, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := st.cfg
	if c.DeleteInactiveTopicsDisabled || c.DeleteInactiveTopicsFrequency != time.Minute || c.DeleteInactiveTopicsMaxInactive != 0 ||
		c.DeleteInactiveTopicsMode != pulsartest.DeleteWhenNoSubscriptions {
		t.Errorf("defaults: %+v", c)
	}
	st, err = parseFlags([]string{"-delete-inactive-topics=false", "-delete-inactive-topics-frequency=200ms",
		"-delete-inactive-topics-max-inactive=1s", "-delete-inactive-topics-mode=" + pulsartest.DeleteWhenCaughtUp, "-partitions", "orders=3"})
	if err != nil {
		t.Fatal(err)
	}
	c = st.cfg
	if !c.DeleteInactiveTopicsDisabled || c.DeleteInactiveTopicsFrequency != 200*time.Millisecond || c.DeleteInactiveTopicsMaxInactive != time.Second ||
		c.DeleteInactiveTopicsMode != pulsartest.DeleteWhenCaughtUp || c.Partitions["orders"] != 3 {
		t.Errorf("set: %+v", c)
	}
	for _, bad := range [][]string{
		{"-delete-inactive-topics-mode=never"},
		{"-delete-inactive-topics-frequency=-1s"},
		{"-delete-inactive-topics-max-inactive=48h"},
	} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestUnackedLimitFlags: the unacked and look-ahead limits default to the
// broker's (conf/broker.conf), reach the double's Config, and 0 turns a
// limit off as it does in broker.conf.
func TestUnackedLimitFlags(t *testing.T) {
	st, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := st.cfg
	if c.MaxUnackedMessagesPerConsumer != 50000 || c.MaxUnackedMessagesPerSubscription != 200000 ||
		c.KeySharedLookAheadPerConsumer != 2000 || c.KeySharedLookAheadPerSubscription != 20000 {
		t.Errorf("defaults: %+v", c)
	}
	st, err = parseFlags([]string{"-max-unacked-messages-per-consumer=0", "-max-unacked-messages-per-subscription=300000",
		"-key-shared-look-ahead-per-consumer=0", "-key-shared-look-ahead-per-subscription=100"})
	if err != nil {
		t.Fatal(err)
	}
	c = st.cfg
	if c.MaxUnackedMessagesPerConsumer != pulsartest.Unlimited || c.MaxUnackedMessagesPerSubscription != 300000 ||
		c.KeySharedLookAheadPerConsumer != pulsartest.Unlimited || c.KeySharedLookAheadPerSubscription != 100 {
		t.Errorf("set: %+v", c)
	}
	for _, bad := range [][]string{{"-max-unacked-messages-per-consumer=-1"}, {"-max-unacked-messages-per-subscription=2000000000"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestReorderFlag: the injected Key_Shared reordering is off by default,
// reaches the double's Config, and a negative count is refused.
func TestReorderFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{{nil, 0}, {[]string{"-key-shared-reorder-after-reconnect=7"}, 7}} {
		st, err := parseFlags(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if st.cfg.KeySharedReorderAfterReconnect != tc.want {
			t.Errorf("%q: KeySharedReorderAfterReconnect %d, want %d", tc.args, st.cfg.KeySharedReorderAfterReconnect, tc.want)
		}
	}
	if _, err := parseFlags([]string{"-key-shared-reorder-after-reconnect=-1"}); err == nil {
		t.Error("a negative count accepted")
	}
}
