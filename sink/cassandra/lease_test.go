package cassandra

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/internal/cqltest"
	"github.com/demandpipe/demandpipe/sink"
)

// leaseClock is the test double's clock: TTLs expire when a test says.
type leaseClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *leaseClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *leaseClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// asHolder makes the sinks opened until the returned restore hold their
// lease as h (another machine, a process of this one that is gone).
func asHolder(h leaseHolder) (restore func()) {
	old := leaseIdentity
	leaseIdentity = func() leaseHolder { return h }
	return func() { leaseIdentity = old }
}

// crash ends s as a killed process would: no more renewals, the lease
// not given back, the session gone.
func crash(s *Sink) {
	l := s.lease
	close(l.stop)
	<-l.stopped
	heldLeases.Delete(l.me.ID)
	s.lease = nil
	s.Close()
}

// openTimed opens a sink and says how long Open took.
func openTimed(cfg Config, logf func(string, ...any)) (*Sink, time.Duration, error) {
	start := time.Now()
	s, err := Open(context.Background(), cfg, Options{Logf: logf})
	return s, time.Since(start), err
}

// TestLeaseRefusesASecondWriter: a second sink on the same table and
// state name is refused within a second, the error naming the table, the
// holder (host, pid, since when) and when its lease expires; once the
// first closed (the lease given back), the next open succeeds at once.
func TestLeaseRefusesASecondWriter(t *testing.T) {
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	first := openSink(t, cfg)
	defer first.Close()
	_, took, err := openTimed(cfg, t.Logf)
	me := leaseIdentity()
	for _, want := range []string{"demandpipe.features (state=features) is being written by another run",
		"host " + me.Host + " pid ", " since ", "s if that run is gone"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("second open: %v\nwant it to say %q", err, want)
		}
	}
	if took > time.Second {
		t.Fatalf("refused after %v, want within a second", took)
	}
	if !regexp.MustCompile(`renewed [01]s ago, expires in (29|30)s if`).MatchString(err.Error()) {
		t.Fatalf("second open: %v\nwant when the lease expires", err)
	}
	t.Logf("refused after %v: %v", took.Round(time.Millisecond), err)
	// The refused open wrote nothing and holds nothing: the first goes on.
	d := makeTestData(t, 31, 2, 200, 100)
	if err := d.write(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, took, err := openTimed(cfg, t.Logf)
	if err != nil || took > time.Second {
		t.Fatalf("open after the first closed: %v after %v", err, took)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLeaseExpiresAfterACrash: a run on another machine dies holding the
// lease (no release); a new open is refused, saying when the lease
// expires, until its TTL has passed on the cluster's clock, then succeeds.
func TestLeaseExpiresAfterACrash(t *testing.T) {
	clock := &leaseClock{t: time.Now()}
	srv, err := cqltest.Start(cqltest.Config{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := testConfig(srv)
	cfg.LeaseTTL = 3 * time.Second
	restore := asHolder(leaseHolder{Host: "elsewhere", PID: 4242, Boot: "another-kernel", PIDNS: "pid:[1]"})
	crashed := openSink(t, cfg)
	restore()
	crash(crashed)
	_, _, err = openTimed(cfg, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "host elsewhere pid 4242 since") || !regexp.MustCompile(`expires in [23]s if that run is gone`).MatchString(err.Error()) {
		t.Fatalf("open beside a crashed run's live lease: %v", err)
	}
	clock.Advance(cfg.LeaseTTL)
	s, err := Open(context.Background(), cfg, Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("open once the crashed run's lease expired: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLeaseTakenOverFromAGoneRunOfThisMachine: a lease whose holder ran
// on this machine (same kernel, same pid namespace) under a pid that has
// ended, or under this process's pid with a lease this process no longer
// holds, is taken over at once.
func TestLeaseTakenOverFromAGoneRunOfThisMachine(t *testing.T) {
	me := leaseIdentity()
	if me.Boot == "" || me.PIDNS == "" {
		t.Skip("no /proc: a holder on this machine cannot be checked")
	}
	ended := exec.Command("true")
	if err := ended.Run(); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	for _, tc := range []struct {
		what string
		pid  int
	}{{"an ended process", ended.Process.Pid}, {"this process, closed without giving it back", me.PID}} {
		h := me
		h.PID = tc.pid
		restore := asHolder(h)
		gone := openSink(t, cfg)
		restore()
		crash(gone)
		var (
			mu   sync.Mutex
			logs []string
		)
		s, took, err := openTimed(cfg, func(f string, a ...any) {
			mu.Lock()
			logs = append(logs, f)
			mu.Unlock()
		})
		if err != nil || took > time.Second {
			t.Fatalf("%s: open after %v: %v", tc.what, took, err)
		}
		if !strings.Contains(strings.Join(logs, "\n"), "took over the writer lease") {
			t.Fatalf("%s: no word of the takeover in %q", tc.what, logs)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLeaseStolenFailsTheSink: another writer overwrites the lease
// record; within one renewal (TTL/3) the sink fails (Done, Err), and
// Write, CloseMinute and Close return the error; Close leaves the other's
// record alone.
func TestLeaseStolenFailsTheSink(t *testing.T) {
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	cfg.LeaseTTL = 3 * time.Second
	s := openSink(t, cfg)
	defer s.Close()
	d := makeTestData(t, 32, 3, 200, 100)
	first := &testData{minutes: d.minutes[:1], batches: d.batches}
	if err := first.write(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	thief, _ := json.Marshal(leaseHolder{ID: "7e1f", Host: "thief", PID: 7, Since: time.Now().UnixMilli(), Renewed: time.Now().UnixMilli(), TTL: 30})
	steal := "UPDATE demandpipe.engine_state SET data = 0x" + hex.EncodeToString(thief) + " WHERE name = 'features' AND kind = 'lease' AND key = 0 AND chunk = 0"
	if _, err := srv.Exec(steal); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case <-s.Done():
	case <-time.After(cfg.LeaseTTL/3 + time.Second):
		t.Fatalf("the sink still runs %v after its lease was taken", time.Since(start))
	}
	t.Logf("failed %v after the lease was taken: %v", time.Since(start).Round(time.Millisecond), s.Err())
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "another run holds it: host thief pid 7") {
		t.Fatalf("Err: %v", err)
	}
	b := d.batches[firstBatchOf(d, d.minutes[1])]
	if err := s.Write(context.Background(), b); err == nil || !strings.Contains(err.Error(), "writer lease is lost") {
		t.Fatalf("Write after the loss: %v", err)
	}
	if err := s.CloseMinute(context.Background(), d.minutes[1]); err == nil || !strings.Contains(err.Error(), "writer lease is lost") {
		t.Fatalf("CloseMinute after the loss: %v", err)
	}
	if err := s.Close(); err == nil || !strings.Contains(err.Error(), "writer lease is lost") {
		t.Fatalf("Close after the loss: %v", err)
	}
	rows, err := srv.Exec("SELECT data FROM demandpipe.engine_state WHERE name = 'features' AND kind = 'lease'")
	if err != nil || len(rows) != 1 || string(rows[0][0]) != string(thief) {
		t.Fatalf("the thief's record after Close: %q %v", rows, err)
	}
}

// TestLeaseLostWhenNotRenewed: renewals that keep failing (every
// statement times out) for the lease's TTL fail the sink: another run
// may hold the lease by then.
func TestLeaseLostWhenNotRenewed(t *testing.T) {
	srv := startServer(t, 0)
	cfg := testConfig(srv)
	cfg.LeaseTTL = 3 * time.Second
	s := openSink(t, cfg)
	defer s.Close()
	srv.SetFaultRate(cqltest.FaultTimeout, 1)
	defer srv.ClearFaults()
	start := time.Now()
	select {
	case <-s.Done():
	case <-time.After(cfg.LeaseTTL + time.Second):
		t.Fatalf("the sink still runs %v into failing renewals", time.Since(start))
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "(its TTL is 3s, counted in whole seconds by Cassandra): another run may hold it now") {
		t.Fatalf("Err: %v", err)
	}
	t.Logf("failed %v into failing renewals: %v", time.Since(start).Round(time.Millisecond), s.Err())
}

// TestLeaseAggregateParts: the processes of a scale-out aggregate role
// write one table, each under its own state name, committing their parts
// (sink.PartCheckpointer): their leases are apart, so they do not refuse
// each other, while a second process under one of their names is refused.
func TestLeaseAggregateParts(t *testing.T) {
	srv := startServer(t, 0)
	base := testConfig(srv)
	ctx := context.Background()
	var aggs []*Sink
	for i, state := range []string{"aggregate_0", "aggregate_1"} {
		cfg := base
		cfg.State = state
		s := openSink(t, cfg)
		defer s.Close()
		aggs = append(aggs, s)
		part := []string{"slot/0", "slot/1"}[i]
		s.StagePartState(part, 29_000_000, sink.State{Counts: []byte{byte(i)}, Checkpoint: []byte(part), KeepFrom: 28_999_990})
		if err := s.CloseMinute(ctx, 29_000_000); err != nil {
			t.Fatalf("%s: %v", state, err)
		}
	}
	for i, part := range []string{"slot/0", "slot/1"} {
		cp, _, err := aggs[1-i].LoadPartState(part) // the other process reads it
		if err != nil || string(cp) != part {
			t.Fatalf("part %s: %q %v", part, cp, err)
		}
	}
	cfg := base
	cfg.State = "aggregate_1"
	if _, err := Open(ctx, cfg, Options{Logf: t.Logf}); err == nil || !strings.Contains(err.Error(), "(state=aggregate_1) is being written by another run") {
		t.Fatalf("a second process under state=aggregate_1: %v", err)
	}
	for _, s := range aggs {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLeaseConfig: the URL's lease parameters, their defaults and range.
func TestLeaseConfig(t *testing.T) {
	c, err := ParseURL("cassandra://h/ks")
	if err != nil || !c.Lease || c.LeaseTTL != 30*time.Second || c.LeaseSerial != "LOCAL_SERIAL" {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	c, err = ParseURL("cassandra://h/ks?lease_ttl=5s&lease_serial=serial")
	if err != nil || c.LeaseTTL != 5*time.Second || c.LeaseSerial != "SERIAL" || !strings.Contains(c.String(), "lease=5s SERIAL") {
		t.Fatalf("lease_ttl=5s&lease_serial=serial: %v %v", c, err)
	}
	c, err = ParseURL("cassandra://h/ks?lease=false&lease_ttl=0s")
	if err != nil || c.Lease || !strings.Contains(c.String(), "lease=off") {
		t.Fatalf("lease=false: %v %v", c, err)
	}
	for raw, want := range map[string]string{
		"cassandra://h/ks?lease_ttl=2s":     "lease_ttl=2s: must be whole seconds in 3s..1h",
		"cassandra://h/ks?lease_ttl=2h":     "lease_ttl=2h0m0s: must be whole seconds in 3s..1h",
		"cassandra://h/ks?lease_serial=ONE": `lease_serial="ONE": want LOCAL_SERIAL or SERIAL`,
		"cassandra://h/ks?lease=maybe":      `lease="maybe": want true or false`,
		"cassandra://h/ks?lease_ttl=thirty": `lease_ttl="thirty": want a duration`,
	} {
		if _, err := ParseURL(raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", raw, err, want)
		}
	}
}
