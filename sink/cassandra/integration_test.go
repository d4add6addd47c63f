//go:build integration

package cassandra

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestIntegrationRoundTrip runs the round trip against a real Cassandra:
//
//	DEMANDPIPE_CASSANDRA='cassandra://127.0.0.1:9042/demandpipe_it?create=true&rf=1' \
//	  go test -tags integration -run Integration ./sink/cassandra
//
// It writes into a fresh table (features_it_<unix time>) and skips when
// DEMANDPIPE_CASSANDRA is unset.
func TestIntegrationRoundTrip(t *testing.T) {
	raw := os.Getenv("DEMANDPIPE_CASSANDRA")
	if raw == "" {
		t.Skip("DEMANDPIPE_CASSANDRA is unset")
	}
	cfg, err := ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Table = fmt.Sprintf("features_it_%d", time.Now().Unix())
	cfg.CreateSchema = true
	s, err := Open(context.Background(), cfg, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Logf("negotiated compression: %s", s.Codec())
	d := makeTestData(t, 11, 3, 2000, 700)
	if err := d.write(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	checkReadBack(t, NewReader(s.Session(), cfg), d.minutes, d.products, d.cells, d.want)
	if err := s.sess.Query(fmt.Sprintf("DROP TABLE %s.%s", cfg.Keyspace, cfg.Table)).Exec(); err != nil {
		t.Log(err)
	}
}
