package cassandra

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

// A consistency the cluster cannot meet. Cassandra's coordinator answers
// UNAVAILABLE (0x1000: consistency, required, alive) before it contacts any
// replica when fewer replicas of the keyspace are alive than the level needs:
// LOCAL_QUORUM needs rf/2+1 of them, so the defaults (rf=3, LOCAL_QUORUM) on a
// one-node cluster need 2 and have 1. The driver's text is only "Cannot
// achieve consistency level LOCAL_QUORUM", and the write queue retries it
// for its whole bound (85 s by default) as it should for a node restarting
// mid-run; at Open the same answer is a setting that does not fit the
// cluster, so Open reports it at once (probeConsistency) with the keyspace's
// replication and what would fit.

// asUnavailable returns the UNAVAILABLE answer in err, or nil.
func asUnavailable(err error) *gocql.RequestErrUnavailable {
	var u *gocql.RequestErrUnavailable
	if errors.As(err, &u) {
		return u
	}
	return nil
}

// explainUnavailable adds what an UNAVAILABLE answer to a write means; other
// errors come back as they are. The queue still retries it (Permanent is
// false): a node that died mid-run may be back within the retries.
func (s *Sink) explainUnavailable(err error) error {
	u := asUnavailable(err)
	if u == nil {
		return err
	}
	return fmt.Errorf("keyspace %s: %s needs %d live replicas and the cluster has %d alive: nodes are down (retried until enough are back, within -sink.max-retries): %w",
		s.cfg.Keyspace, u.Consistency, u.Required, u.Alive, err)
}

// probeConsistency reads one row of the feature table at the rows'
// consistency and, when stronger, at the state's (stateConsistency), so a
// level the cluster's live replicas cannot meet fails Open now with the
// reason, not the first minute's writes after the queue's retries. An
// UNAVAILABLE is not retried here: the coordinator's failure detector has
// already judged the replicas down, and a node that is restarting takes
// longer than openRetryFor to come back.
func (s *Sink) probeConsistency(ctx context.Context, probe string) error {
	levels := []gocql.Consistency{gocql.ParseConsistency(s.cfg.Consistency)}
	if s.stateCons != levels[0] {
		levels = append(levels, s.stateCons)
	}
	for _, cl := range levels {
		err := openRetry(ctx, func() error {
			return s.sess.Query(probe, gocql.UUID{}, int64(0), int64(0)).Consistency(cl).ExecContext(ctx)
		})
		switch {
		case err == nil:
		case asUnavailable(err) != nil:
			return s.unmet(ctx, asUnavailable(err))
		case Permanent(err):
			return fmt.Errorf("sink cassandra: table %s.%s: %w (create it with `demandpipe schema cassandra` or ?create=true)", s.cfg.Keyspace, s.cfg.Table, err)
		default:
			return unanswered("table "+s.cfg.Keyspace+"."+s.cfg.Table, err)
		}
	}
	return nil
}

// unmet is Open's error for an UNAVAILABLE answer: the setting, what the
// keyspace's replication makes it need, what is alive, and what would fit.
func (s *Sink) unmet(ctx context.Context, u *gocql.RequestErrUnavailable) error {
	cfg := s.cfg
	var b strings.Builder
	b.WriteString("sink cassandra: consistency=" + cfg.Consistency)
	if u.Consistency != gocql.ParseConsistency(cfg.Consistency) {
		fmt.Fprintf(&b, " is raised to %s for the sink's state (a restart must read the checkpoint it wrote), which", u.Consistency)
	}
	repl, rf := s.replication(ctx)
	fmt.Fprintf(&b, " needs %d live replicas of keyspace %s", u.Required, cfg.Keyspace)
	if repl != "" {
		fmt.Fprintf(&b, " (%s)", repl)
	}
	fmt.Fprintf(&b, " but %d %s alive (the cluster answered Unavailable): add nodes or bring the down ones back", u.Alive, plural(u.Alive, "is", "are"))
	if rf < 0 {
		b.WriteString(", or lower the keyspace's replication factor")
		return errors.New(b.String())
	}
	// Every level the sink uses needs a local quorum at least (the state's
	// floor), rf/2+1 of the local replicas.
	if rf == 0 {
		b.WriteString(", or set ?dc= to a data centre the keyspace has replicas in")
	} else if quorum := rf/2 + 1; quorum <= u.Alive {
		fmt.Fprintf(&b, ", or use ?consistency=LOCAL_QUORUM (%d of the %d replicas)", quorum, rf)
	} else {
		if maxRF := 2*u.Alive - 1; maxRF >= 1 {
			fmt.Fprintf(&b, ", or use a keyspace with rf=%d", maxRF)
			if maxRF > 1 {
				fmt.Fprintf(&b, " or less")
			}
			fmt.Fprintf(&b, " (?rf=%d with ?create=true creates a new one; ALTER KEYSPACE %s changes this one)", maxRF, cfg.Keyspace)
		}
		fmt.Fprintf(&b, "; a weaker ?consistency= does not help: the sink reads and writes its state at %s at least", gocql.LocalQuorum)
	}
	return errors.New(b.String())
}

func plural(n int, one, more string) string {
	if n == 1 {
		return one
	}
	return more
}

// replication describes the keyspace's replication as system_schema has it
// ("SimpleStrategy, rf=3"; "NetworkTopologyStrategy, dc1=3, dc2=3") and
// returns the replication factor of the local data centre: Config.LocalDC's,
// SimpleStrategy's, or a single DC's; -1 when unknown (then the error says
// less, but still names the setting).
func (s *Sink) replication(ctx context.Context) (string, int) {
	var m map[string]string
	err := s.sess.Query(`SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?`, s.cfg.Keyspace).
		Consistency(gocql.One).ScanContext(ctx, &m)
	if err != nil {
		return "", -1
	}
	class := m["class"]
	class = class[strings.LastIndexByte(class, '.')+1:]
	if class == "SimpleStrategy" {
		rf, err := factor(m["replication_factor"])
		if err != nil {
			return class, -1
		}
		return fmt.Sprintf("%s, rf=%d", class, rf), rf
	}
	var dcs []string
	for k := range m {
		if k != "class" {
			dcs = append(dcs, k)
		}
	}
	sort.Strings(dcs)
	desc := class
	for _, dc := range dcs {
		desc += ", " + dc + "=" + m[dc]
	}
	local := s.cfg.LocalDC
	if local == "" && len(dcs) == 1 {
		local = dcs[0]
	}
	if v, ok := m[local]; ok && local != "" {
		if rf, err := factor(v); err == nil {
			return desc, rf
		}
	} else if local != "" && s.cfg.LocalDC != "" {
		return desc + " (none in dc=" + local + ")", 0
	}
	return desc, -1
}

// factor reads a replication factor; "3/1" (transient replicas) is 3.
func factor(s string) (int, error) {
	all, _, _ := strings.Cut(s, "/")
	return strconv.Atoi(strings.TrimSpace(all))
}
