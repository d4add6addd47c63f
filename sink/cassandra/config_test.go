package cassandra

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/cassandra-gocql-driver/v2/lz4"
	"github.com/apache/cassandra-gocql-driver/v2/snappy"
	"github.com/uber/h3-go/v4"
)

func TestParseURL(t *testing.T) {
	t.Setenv(EnvUsername, "")
	t.Setenv(EnvPassword, "")
	c, err := ParseURL("cassandra://h1,h2:9043/feat?table=rows&consistency=local_one&dc=DC1&compression=lz4&ttl=3h&region_res=4&create=true&rf=2&conns=3")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Hosts, "|") != "h1|h2:9043" || c.Keyspace != "feat" || c.Table != "rows" || c.Consistency != "LOCAL_ONE" ||
		c.LocalDC != "DC1" || c.Compression != "lz4" || c.TTL != 3*time.Hour || c.RegionResolution != 4 || !c.CreateSchema ||
		c.ReplicationFactor != 2 || c.NumConns != 3 || c.TLS {
		t.Fatalf("parsed %+v", c)
	}
	d, err := ParseURL("cassandra://localhost")
	if err != nil {
		t.Fatal(err)
	}
	if d.StateName() != DefaultTable {
		t.Fatalf("state name %q, want the table's", d.StateName())
	}
	if e, err := ParseURL("cassandra://localhost/ks?table=t2&state=city_b"); err != nil || e.StateName() != "city_b" {
		t.Fatalf("state=: %q %v", e.StateName(), err)
	}
	if d.Keyspace != DefaultKeyspace || d.Table != DefaultTable || d.Consistency != DefaultConsistency || d.Compression != "snappy" || d.Port != 9042 {
		t.Fatalf("defaults %+v", d)
	}
	for raw, want := range map[string]string{
		"http://h/ks":                          "scheme",
		"cassandra:///ks":                      "no host",
		"cassandra://u:secret@h/ks":            "credentials in the URL",
		"cassandra://h/ks?password=secret":     "password= in the URL",
		"cassandra://h/ks?compression=zstd":    "compression=",
		"cassandra://h/ks?consistency=MOST":    "consistency=",
		"cassandra://h/ks?ttl=10s":             "ttl=",
		"cassandra://h/ks?ttl=forever":         "ttl=",
		"cassandra://h/ks?region_res=16":       "region_res=",
		"cassandra://h/ks?table=drop;table":    "semicolon",
		"cassandra://h/ks?table=drop%3Btable":  "table=",
		"cassandra://h/bad-ks":                 "keyspace",
		"cassandra://h/ks?bogus=1":             "unknown URL parameter",
		"cassandra://h/ks?cert=a.pem":          "cert= and key=",
		"cassandra://h:99999/ks":               "port",
		"cassandra://h/ks?tls=maybe":           "tls=",
		"cassandra://h/ks?state=no-dash":       "state=",
		"cassandra://h/ks?table=minutes":       "the name of a state table",
		"cassandra://h/ks?dc=a'b":              "dc=",
		"cassandra://h/ks?password_file=/nope": "password_file",
	} {
		_, err := ParseURL(raw)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error about %q", raw, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error shows the secret: %v", raw, err)
		}
	}
}

// TestCredentials: from the environment or a file, never shown.
func TestCredentials(t *testing.T) {
	t.Setenv(EnvUsername, "writer")
	t.Setenv(EnvPassword, "hunter2-env")
	c, err := ParseURL("cassandra://h/ks")
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "writer" || c.Password != "hunter2-env" {
		t.Fatalf("env credentials: %q %q", c.Username, c.Password)
	}
	pf := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pf, []byte("hunter2-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = ParseURL("cassandra://h/ks?password_file=" + pf)
	if err != nil {
		t.Fatal(err)
	}
	if c.Password != "hunter2-file" {
		t.Fatalf("file password %q", c.Password)
	}
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, "hunter2") || !strings.Contains(s, "writer") {
			t.Fatalf("formatted config shows the password or hides the user: %s", s)
		}
	}
	t.Setenv(EnvUsername, "")
	if _, err := ParseURL("cassandra://h/ks"); err == nil || !strings.Contains(err.Error(), EnvUsername) {
		t.Fatalf("password without user: %v", err)
	}
}

// Config.String must not print the password even through %+v: Config has
// a String method, so fmt uses it for %v and %+v.
var _ fmt.Stringer = Config{}

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for p, b := range map[string][]byte{ca: certPEM, cert: certPEM, key: keyPEM} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := ParseURL(fmt.Sprintf("cassandra://h/ks?ca=%s&cert=%s&key=%s&server_name=db.internal", ca, cert, key))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := c.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !c.TLS || tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "db.internal" || tc.InsecureSkipVerify {
		t.Fatalf("tls config %+v", tc)
	}
	c.CAFile = key // not a certificate
	if _, err := c.TLSConfig(); err == nil {
		t.Fatal("a key accepted as CA")
	}
	off, _ := ParseURL("cassandra://h/ks")
	if tc, err := off.TLSConfig(); tc != nil || err != nil {
		t.Fatalf("TLS off: %v %v", tc, err)
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "db.internal"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		DNSNames: []string{"db.internal"}, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func TestSchema(t *testing.T) {
	for ttl, want := range map[time.Duration]string{
		2 * time.Hour:       "'compaction_window_unit': 'MINUTES', 'compaction_window_size': 5",
		24 * time.Hour:      "'compaction_window_unit': 'HOURS', 'compaction_window_size': 1",
		30 * 24 * time.Hour: "'compaction_window_unit': 'HOURS', 'compaction_window_size': 30",
		24 * 24 * time.Hour: "'compaction_window_unit': 'DAYS', 'compaction_window_size': 1",
		time.Minute:         "'compaction_window_unit': 'MINUTES', 'compaction_window_size': 1",
	} {
		c := DefaultConfig()
		c.TTL = ttl
		if s := Schema(c); !strings.Contains(s, want) || !strings.Contains(s, fmt.Sprintf("default_time_to_live = %d", int(ttl.Seconds()))) {
			t.Errorf("ttl %v: %s", ttl, s)
		}
		size, unit := twcsWindow(ttl)
		mult := map[string]time.Duration{"MINUTES": time.Minute, "HOURS": time.Hour, "DAYS": 24 * time.Hour}[unit]
		if windows := ttl / (time.Duration(size) * mult); windows > 24 || windows < 1 {
			t.Errorf("ttl %v: %d windows of %d %s", ttl, windows, size, unit)
		}
	}
	c := DefaultConfig()
	c.LocalDC, c.ReplicationFactor = "DC1", 3
	s := Schema(c)
	for _, want := range []string{"'NetworkTopologyStrategy', 'DC1': 3", "PRIMARY KEY ((product, minute, region), cell)", "TimeWindowCompactionStrategy", "LZ4Compressor",
		"CREATE TABLE IF NOT EXISTS demandpipe.engine_state", "PRIMARY KEY ((name, kind), key, chunk)", "CLUSTERING ORDER BY (key DESC, chunk ASC)",
		"CREATE TABLE IF NOT EXISTS demandpipe.minutes", "PRIMARY KEY (name, minute)", "CLUSTERING ORDER BY (minute DESC)"} {
		if !strings.Contains(s, want) {
			t.Errorf("schema lacks %q:\n%s", want, s)
		}
	}
}

// TestRegionIsH3Parent: the bit arithmetic equals h3-go's CellToParent for
// random cells at every resolution pair.
func TestRegionIsH3Parent(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for range 2000 {
		res := rng.IntN(16)
		c, err := h3.LatLngToCell(h3.NewLatLng(rng.Float64()*170-85, rng.Float64()*360-180), res)
		if err != nil {
			t.Fatal(err)
		}
		for pr := 0; pr <= 15; pr++ {
			got := region(uint64(c), pr)
			want := uint64(c)
			if pr < res {
				p, err := c.Parent(pr)
				if err != nil {
					t.Fatal(err)
				}
				want = uint64(p)
			}
			if got != want {
				t.Fatalf("region(%x, %d) = %x, want %x", uint64(c), pr, got, want)
			}
		}
	}
}

// TestSnappyS2Compatible: SnappyS2 output decodes with the driver's
// golang/snappy compressor and the other way round; absurd sizes are
// refused before allocating.
func TestSnappyS2Compatible(t *testing.T) {
	d := makeTestData(t, 7, 1, 500, 500)
	body := frameBody(d.merged(d.minutes[0]))
	var s2c SnappyS2
	ref := snappy.SnappyCompressor{}
	prefix := []byte("hdr")
	enc, err := s2c.AppendCompressedWithLength(append([]byte(nil), prefix...), body)
	if err != nil || !bytes.HasPrefix(enc, prefix) {
		t.Fatal(err)
	}
	dec, err := ref.AppendDecompressedWithLength(nil, enc[len(prefix):])
	if err != nil || !bytes.Equal(dec, body) {
		t.Fatalf("golang/snappy cannot decode SnappyS2: %v", err)
	}
	renc, _ := ref.AppendCompressedWithLength(nil, body)
	dec, err = s2c.AppendDecompressedWithLength([]byte("x"), renc)
	if err != nil || !bytes.Equal(dec[1:], body) || dec[0] != 'x' {
		t.Fatalf("SnappyS2 cannot decode golang/snappy: %v", err)
	}
	// A block claiming 1 GiB is refused.
	huge := []byte{0x80, 0x80, 0x80, 0x80, 0x04, 0}
	if _, err := s2c.AppendDecompressedWithLength(nil, huge); err == nil {
		t.Fatal("1 GiB claim accepted")
	}
	if _, err := s2c.AppendDecompressedWithLength(nil, []byte{0xff}); err == nil {
		t.Fatal("garbage accepted")
	}
	if (SnappyS2{}).Name() != "snappy" || (lz4.LZ4Compressor{}).Name() != "lz4" {
		t.Fatal("codec names must match the server's exactly")
	}
}

// TestRegionsPerRead pins the data model's promise (CASSANDRA.md): a
// pricing read of one cell is one partition, and of the ~200 cells within
// 8 rings of a resolution-8 cell at most a few, at the default region
// resolution 5.
func TestRegionsPerRead(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(5, 5))
	hist := map[int]int{}
	for range 1000 {
		c, err := h3.LatLngToCell(h3.NewLatLng(40.5+rng.Float64()*0.5, -74.3+rng.Float64()*0.6), 8)
		if err != nil {
			t.Fatal(err)
		}
		disk, _ := h3.GridDisk(c, 8)
		regions := map[uint64]bool{}
		for _, d := range disk {
			regions[region(uint64(d), DefaultRegionResolution)] = true
		}
		hist[len(regions)]++
	}
	t.Logf("regions touched by a 217-cell read (1000 random NYC centres): %v", hist)
	for n := range hist {
		if n > 4 {
			t.Fatalf("a 217-cell read touched %d regions: %v", n, hist)
		}
	}
}
