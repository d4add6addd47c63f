package cassandra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// The writer lease (issue 22): one run at a time writes under a state
// name. Everything a run writes that another run's writes would corrupt
// is keyed by its state name (Config.StateName, default the feature
// table's name): its checkpoints, count records and minutes rows. Two
// runs under one name interleave them, and their rows in the table, so
// the second must be refused and a run that loses its place must stop.
//
// The lease is a row of the state table under its own kind, (name,
// 'lease', 0, 0), its data the holder (leaseHolder, JSON), written by
// lightweight transactions at Config.LeaseSerial (LOCAL_SERIAL by
// default) and committed at the state's consistency:
//
//	INSERT ... IF NOT EXISTS USING TTL ttl       Open takes it
//	UPDATE ... USING TTL ttl SET data = new      every ttl/3, while data is
//	    IF data = last                            still what this run wrote
//	DELETE ... IF data = last                    Close gives it back
//
// A refused INSERT answers with the row, so the error names the holder
// (host, pid, since when) and when its lease runs out. A renewal that is
// not applied (another run holds the record, or it is gone), or that has
// not been applied for a TTL (less a second: Cassandra's TTLs count whole
// seconds), loses the lease: the sink fails (Done, Err; Write, CloseMinute
// and Close return the error) and commits nothing more. A renewal's
// answer can be lost after it was applied (WRITE_TIMEOUT of type CAS):
// the next one is then not applied and answers with this run's own newer
// record, which it adopts.
//
// A crashed run's lease expires by its TTL, and the restart's error says
// when. Waiting for it instead would make a second run started by mistake
// wait as long before it is refused, while the holder's host and pid
// cannot be told from a crashed one's from afar. On the holder's own
// machine they can: a record whose holder ran in this kernel (same boot
// id) and pid namespace, under a pid that no longer runs (or under this
// process's pid with a lease id it no longer holds), belongs to a run
// that is gone, and Open takes it over at once (UPDATE ... IF data =
// theirs). A supervisor restarting a crashed run on the same machine
// (systemd, a test killing its child) resumes without waiting.

// kindLease is the lease record's kind in the state table.
const kindLease = "lease"

// leaseHolder is the lease record's data.
type leaseHolder struct {
	ID   string `json:"id"` // random: this run's lease, not its process
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// Boot (the kernel's boot id) and PIDNS (the pid namespace) say
	// whether Host and PID can be checked from here (leaseHolder.gone).
	Boot    string `json:"boot,omitempty"`
	PIDNS   string `json:"pidns,omitempty"`
	Since   int64  `json:"since_ms"`   // taken, unix ms (the holder's clock)
	Renewed int64  `json:"renewed_ms"` // last written, unix ms
	TTL     int64  `json:"ttl_s"`
}

// leaseIdentity is this process as a lease names it (no ID or times).
// A variable: the tests stand for processes on other machines.
var leaseIdentity = sync.OnceValue(func() leaseHolder {
	h := leaseHolder{PID: os.Getpid()}
	h.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		h.Boot = strings.TrimSpace(string(b))
	}
	if ns, err := os.Readlink("/proc/self/ns/pid"); err == nil {
		h.PIDNS = ns
	}
	return h
})

// heldLeases are the ids of the leases this process holds (taken and not
// yet closed): a record under this process's own pid with another id is a
// sink of this process that closed without giving it back (a failed
// release) or a process before it that had this pid.
var heldLeases sync.Map

// gone reports whether h's run has ended, as far as this process can
// tell: only for a holder in this kernel and pid namespace.
func (h leaseHolder) gone(me leaseHolder) bool {
	if h.Boot == "" || h.Boot != me.Boot || h.PIDNS != me.PIDNS {
		return false
	}
	if h.PID == me.PID {
		_, held := heldLeases.Load(h.ID)
		return !held
	}
	p, err := os.FindProcess(h.PID)
	if err != nil {
		return false
	}
	defer p.Release()
	// Signal 0 checks the pid (a pidfd on Linux): gone only when there is
	// no such process. A zombie, or one we may not signal, is alive.
	return errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone)
}

func (h leaseHolder) String() string {
	return fmt.Sprintf("host %s pid %d since %s", h.Host, h.PID, time.UnixMilli(h.Since).UTC().Format(time.RFC3339))
}

// expiry says when h's lease runs out if its run is gone, from now.
func (h leaseHolder) expiry(now time.Time) string {
	renewed := time.UnixMilli(h.Renewed)
	in := renewed.Add(time.Duration(h.TTL) * time.Second).Sub(now)
	ago := now.Sub(renewed).Round(time.Second)
	if in <= 0 {
		return fmt.Sprintf("renewed %s ago, its %ds TTL is running out now", ago, h.TTL)
	}
	return fmt.Sprintf("renewed %s ago, expires in %s if that run is gone", ago, in.Round(time.Second))
}

func parseHolder(data []byte) (leaseHolder, error) {
	var h leaseHolder
	if err := json.Unmarshal(data, &h); err != nil || h.ID == "" {
		return h, fmt.Errorf("an unreadable lease record %q", data)
	}
	return h, nil
}

// errLeaseLost marks the errors of a lost lease (errors.Is).
var errLeaseLost = errors.New("the writer lease is lost")

// lease is a sink's writer lease, held from acquireLease to close.
type lease struct {
	sess           *gocql.Session
	what           string // the table and state name, for messages
	name           string // the state name: the record's partition
	acquire, renew string // statements
	release        string
	serial, commit gocql.Consistency
	ttl, every     time.Duration
	attempt        time.Duration // one statement's deadline
	logf           func(string, ...any)
	me             leaseHolder // this run: set before the lease is taken

	mu         sync.Mutex
	cur        []byte    // the record's data as this run last wrote it
	validUntil time.Time // no other run can hold it before: last write sent + ttl - 1s

	lost    atomic.Pointer[error]
	done    chan struct{} // closed when lost
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

// acquireLease takes the lease of s's state name, or says who holds it.
func acquireLease(ctx context.Context, s *Sink) (*lease, error) {
	cfg := s.cfg
	st := cfg.Keyspace + "." + StateTable
	const key = " WHERE name = ? AND kind = ? AND key = 0 AND chunk = 0"
	l := &lease{
		sess: s.sess, name: s.name, logf: s.logf,
		what:    fmt.Sprintf("%s.%s (state=%s)", cfg.Keyspace, cfg.Table, s.name),
		acquire: "INSERT INTO " + st + " (name, kind, key, chunk, data) VALUES (?, ?, 0, 0, ?) IF NOT EXISTS USING TTL ?",
		renew:   "UPDATE " + st + " USING TTL ? SET data = ?" + key + " IF data = ?",
		release: "DELETE FROM " + st + key + " IF data = ?",
		serial:  serialConsistency(cfg.LeaseSerial), commit: s.stateCons,
		ttl: cfg.LeaseTTL, every: cfg.LeaseTTL / 3,
		attempt: min(cfg.Queue.AttemptTimeout, cfg.LeaseTTL/3),
		done:    make(chan struct{}), stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	id := make([]byte, 16)
	rand.Read(id)
	l.me = leaseIdentity()
	l.me.ID, l.me.TTL = hex.EncodeToString(id), int64(cfg.LeaseTTL/time.Second)
	l.me.Since = time.Now().UnixMilli()
	ttl := int(l.me.TTL)
	for range 3 {
		sent := time.Now()
		mine := l.record(sent)
		var (
			applied bool
			data    []byte
		)
		err := openRetry(ctx, func() (err error) {
			applied, data, err = l.cas(ctx, l.acquire, l.name, kindLease, mine, ttl)
			return err
		})
		if err != nil {
			return nil, l.openError(s, err)
		}
		if applied {
			return l.start(mine, sent), nil
		}
		h, err := parseHolder(data)
		if err != nil {
			return nil, fmt.Errorf("sink cassandra: %s: %w in %s", l.what, err, StateTable)
		}
		if h.ID == l.me.ID { // applied by an attempt whose answer was lost
			return l.start(data, time.UnixMilli(h.Renewed)), nil
		}
		if !h.gone(l.me) {
			return nil, fmt.Errorf("sink cassandra: %s is being written by another run: %s (its writer lease %s). "+
				"Two runs writing under one state name interleave their rows and checkpoints: stop that run, or start this one again once its lease has expired; "+
				"the processes of a scale-out deployment writing one table each need their own state=",
				l.what, h, h.expiry(time.Now()))
		}
		// A run of this machine that is gone: take its lease over.
		sent = time.Now()
		mine = l.record(sent)
		err = openRetry(ctx, func() (err error) {
			applied, _, err = l.cas(ctx, l.renew, ttl, mine, l.name, kindLease, data)
			return err
		})
		if err != nil {
			return nil, l.openError(s, err)
		}
		if applied {
			l.logf("sink cassandra: %s: took over the writer lease of a run of this machine that is gone (%s)", l.what, h)
			return l.start(mine, sent), nil
		}
		// The record changed under us: look again.
	}
	return nil, fmt.Errorf("sink cassandra: %s: the writer lease changed hands three times while this run tried to take it", l.what)
}

// openError is acquireLease's error for a statement that failed.
func (l *lease) openError(s *Sink, err error) error {
	switch {
	case asUnavailable(err) != nil:
		return fmt.Errorf("sink cassandra: %s: the writer lease: %w (lease_serial=%s needs a quorum of the keyspace's replicas alive; lease=false runs without a lease)",
			l.what, err, l.serial)
	case Permanent(err):
		return fmt.Errorf("sink cassandra: table %s.%s: the writer lease: %w (create it with `demandpipe schema cassandra` or ?create=true)", s.cfg.Keyspace, StateTable, err)
	}
	return unanswered("the writer lease of "+l.what, err)
}

// record is this run's lease record, renewed at now.
func (l *lease) record(now time.Time) []byte {
	h := l.me
	h.Renewed = now.UnixMilli()
	b, _ := json.Marshal(h)
	return b
}

// start holds the lease whose record is data, last written at sent, and
// starts renewing it.
func (l *lease) start(data []byte, sent time.Time) *lease {
	l.cur, l.validUntil = data, sent.Add(l.ttl-time.Second)
	heldLeases.Store(l.me.ID, true)
	go l.run()
	return l
}

// cas runs a lightweight transaction on the lease record: applied, or
// the record's data when there is one.
func (l *lease) cas(ctx context.Context, stmt string, args ...any) (applied bool, data []byte, err error) {
	row := map[string]any{}
	applied, err = l.sess.Query(stmt, args...).Consistency(l.commit).SerialConsistency(l.serial).MapScanCASContext(ctx, row)
	if b, ok := row["data"].([]byte); ok {
		data = b
	}
	return applied, data, err
}

// run renews the lease every ttl/3 until close, or until it is lost. A
// failed renewal is tried again every second (ttl/12 when shorter).
func (l *lease) run() {
	defer close(l.stopped)
	wait := l.every
	failing := false
	for {
		t := time.NewTimer(wait)
		select {
		case <-l.stop:
			t.Stop()
			return
		case <-t.C:
		}
		err := l.renewOnce()
		switch {
		case err == nil:
			if failing {
				l.logf("sink cassandra: %s: the writer lease is renewed again", l.what)
			}
			wait, failing = l.every, false
		case errors.Is(err, errLeaseLost):
			l.lose(err)
			return
		default:
			l.mu.Lock()
			left := time.Until(l.validUntil)
			l.mu.Unlock()
			if left <= 0 || Permanent(err) {
				l.lose(l.expired(err))
				return
			}
			if !failing {
				l.logf("sink cassandra: %s: renewing the writer lease failed (retried; the run stops if it is not renewed within %s): %v", l.what, left.Round(100*time.Millisecond), err)
			}
			wait, failing = min(time.Second, l.every/4), true
		}
	}
}

// renewOnce writes the record again with a new TTL if it is still this
// run's.
func (l *lease) renewOnce() error {
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), l.attempt)
		sent := time.Now()
		next := l.record(sent)
		l.mu.Lock()
		cur := l.cur
		l.mu.Unlock()
		applied, data, err := l.cas(ctx, l.renew, int(l.ttl/time.Second), next, l.name, kindLease, cur)
		cancel()
		if err != nil {
			return err
		}
		if applied {
			l.mu.Lock()
			l.cur, l.validUntil = next, sent.Add(l.ttl-time.Second)
			l.mu.Unlock()
			return nil
		}
		if data == nil {
			return fmt.Errorf("%w: %s: its record is gone (expired or deleted): another run may have written since", errLeaseLost, l.what)
		}
		h, err := parseHolder(data)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", errLeaseLost, l.what, err)
		}
		if h.ID != l.me.ID {
			return fmt.Errorf("%w: %s: another run holds it: %s (renewed %s)", errLeaseLost, l.what, h,
				time.UnixMilli(h.Renewed).UTC().Format(time.RFC3339))
		}
		// An earlier renewal was applied though its answer was lost:
		// renew what it wrote.
		l.mu.Lock()
		l.cur = data
		l.validUntil = time.Now().Add(time.Until(time.UnixMilli(h.Renewed).Add(l.ttl - time.Second)))
		l.mu.Unlock()
	}
	return nil
}

// lose fails the lease with err.
func (l *lease) lose(err error) {
	l.once.Do(func() {
		l.lost.Store(&err)
		close(l.done)
		l.logf("sink cassandra: %v: stopping", err)
	})
}

// check is nil while this run may write: the lease is held and was
// renewed within its TTL. nil on a sink without a lease.
func (l *lease) check() error {
	if l == nil {
		return nil
	}
	if err := l.lost.Load(); err != nil {
		return *err
	}
	l.mu.Lock()
	valid := l.validUntil
	l.mu.Unlock()
	if time.Now().After(valid) {
		err := l.expired(errors.New("renewals failing"))
		l.lose(err)
		return err
	}
	return nil
}

// expired is the error of a lease not renewed in time, cause the last
// renewal's failure.
func (l *lease) expired(cause error) error {
	l.mu.Lock()
	last := time.Since(l.validUntil.Add(time.Second - l.ttl))
	l.mu.Unlock()
	return fmt.Errorf("%w: %s: not renewed for %s (its TTL is %s, counted in whole seconds by Cassandra): another run may hold it now: %v",
		errLeaseLost, l.what, last.Round(100*time.Millisecond), l.ttl, cause)
}

// close stops the renewals and gives the lease back (unless it was lost),
// so that the next run starts at once. A failed release leaves the
// record to expire within the TTL.
func (l *lease) close() error {
	if l == nil {
		return nil
	}
	close(l.stop)
	<-l.stopped
	defer heldLeases.Delete(l.me.ID)
	if err := l.lost.Load(); err != nil {
		return *err
	}
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), l.attempt)
		applied, data, err := l.cas(ctx, l.release, l.name, kindLease, l.cur)
		cancel()
		if err != nil {
			l.logf("sink cassandra: %s: could not give the writer lease back (the next run waits until it expires, within %s): %v", l.what, l.ttl, err)
			return nil
		}
		if applied || data == nil {
			return nil
		}
		if h, err := parseHolder(data); err != nil || h.ID != l.me.ID {
			return nil // another's now; not ours to delete
		}
		l.cur = data // a renewal applied though its answer was lost
	}
	return nil
}

// Done is closed when the sink has failed for good: it lost its writer
// lease (another run writes under its state name now). Err says why. A
// sink without a lease (lease=false) never fails this way.
func (s *Sink) Done() <-chan struct{} {
	if s.lease == nil {
		return nil
	}
	return s.lease.done
}

// Err is the error Done reports, nil before.
func (s *Sink) Err() error {
	if s.lease == nil {
		return nil
	}
	if err := s.lease.lost.Load(); err != nil {
		return *err
	}
	return nil
}

// serialConsistency parses Config.LeaseSerial (Validate checked it).
func serialConsistency(s string) gocql.Consistency {
	if s == "SERIAL" {
		return gocql.Serial
	}
	return gocql.LocalSerial
}
