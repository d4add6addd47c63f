package cqltest

import (
	"sort"
	"strconv"
	"strings"

	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// Consistency levels: the double stands for a cluster of Config.LiveNodes live
// nodes, all in Config.DataCenter, of which clients reach only this one (the
// others hold no data and appear in no system table). A read or write on a
// user keyspace whose consistency level needs more live replicas than that
// gets UNAVAILABLE (0x1000) with the consistency, required and alive counts,
// as Cassandra's coordinator answers before it contacts any replica: a
// one-node cluster with a keyspace of replication_factor 3 fails LOCAL_QUORUM
// (required 2, alive 1), and a test double that accepted it would hide that
// until production. With Config.Nodes > 1 the cluster is those nodes, all
// answering clients: a partition's replicas are the ring's (ring.go) and its
// live replicas those of them among the first LiveNodes nodes.
//
// The arithmetic follows Cassandra 4.0/5.0: required is
// org.apache.cassandra.db.ConsistencyLevel#blockFor (QUORUM = sum of the
// replication factors / 2 + 1, LOCAL_QUORUM = the local DC's factor / 2 + 1,
// ALL = the sum), and the comparison with the live replicas is
// org.apache.cassandra.locator.ReplicaPlans#assureSufficientLiveReplicas,
// branch by branch (ANY never fails: a hint on the coordinator will do;
// LOCAL_ONE and LOCAL_QUORUM count the local DC's live replicas; EACH_QUORUM
// checks each DC of a NetworkTopologyStrategy keyspace and names the first
// short one; every other level counts all live replicas). A replica set has
// min(factor, nodes) members, so the live replicas of a DC are
// min(its factor, LiveNodes) here, and none in any other DC.

// placement is a keyspace's replication, parsed once at CREATE KEYSPACE (the
// double has no ALTER KEYSPACE, so it never changes). A nil placement (the
// system keyspaces' LocalStrategy, an unknown strategy or an unreadable
// factor) is never checked.
type placement struct {
	simple bool       // SimpleStrategy: rf over the ring, no DCs
	rf     int        // SimpleStrategy's replication_factor
	dcs    []dcFactor // NetworkTopologyStrategy, sorted by DC name
}

type dcFactor struct {
	dc string
	rf int
}

// parsePlacement reads a CREATE KEYSPACE replication map whose class is
// already qualified (org.apache.cassandra.locator....). localDC receives a
// NetworkTopologyStrategy 'replication_factor' default, as Cassandra 4.0
// expands it to every DC it knows, and the double knows only its own.
func parsePlacement(repl map[string]string, localDC string) *placement {
	switch strings.TrimPrefix(repl["class"], "org.apache.cassandra.locator.") {
	case "SimpleStrategy":
		rf, ok := parseFactor(repl["replication_factor"])
		if !ok {
			return nil
		}
		return &placement{simple: true, rf: rf}
	case "NetworkTopologyStrategy":
		p := &placement{}
		seen := false
		for k, v := range repl {
			if k == "class" || k == "replication_factor" {
				continue
			}
			rf, ok := parseFactor(v)
			if !ok {
				return nil
			}
			p.dcs = append(p.dcs, dcFactor{k, rf})
			seen = seen || k == localDC
		}
		if v, ok := repl["replication_factor"]; ok && !seen {
			rf, ok := parseFactor(v)
			if !ok {
				return nil
			}
			p.dcs = append(p.dcs, dcFactor{localDC, rf})
		}
		sort.Slice(p.dcs, func(i, j int) bool { return p.dcs[i].dc < p.dcs[j].dc })
		return p
	}
	return nil
}

// parseFactor reads a replication factor; "3/1" (transient replication) counts
// its 3 replicas.
func parseFactor(s string) (int, bool) {
	all, _, _ := strings.Cut(s, "/")
	n, err := strconv.Atoi(strings.TrimSpace(all))
	return n, err == nil && n >= 0
}

// total is the sum of the replication factors (getReplicationFactor().allReplicas).
func (p *placement) total() int {
	if p.simple {
		return p.rf
	}
	n := 0
	for _, d := range p.dcs {
		n += d.rf
	}
	return n
}

// factorIn is the replication factor in dc (SimpleStrategy: the whole rf).
func (p *placement) factorIn(dc string) int {
	if p.simple {
		return p.rf
	}
	for _, d := range p.dcs {
		if d.dc == dc {
			return d.rf
		}
	}
	return 0
}

// liveIn is the live replicas in dc: every node is in localDC, where
// liveLocal of the partition's replicas are up.
func (p *placement) liveIn(dc, localDC string, liveLocal int) int {
	if !p.simple && dc != localDC {
		return 0
	}
	return liveLocal
}

// check returns the UNAVAILABLE error for a statement at cl on a partition
// with liveLocal live replicas (all in localDC: with one node,
// min(factor there, LiveNodes); with a ring, those of its replicas that
// are up; Server.assureLive), or nil when enough replicas are alive.
func (p *placement) check(cl primitive.ConsistencyLevel, liveLocal int, localDC string) error {
	if p == nil {
		return nil
	}
	quorum := p.total()/2 + 1
	localQuorum := p.factorIn(localDC)/2 + 1 // localQuorumFor: quorumFor without NTS
	allLive := liveLocal
	var required, alive int
	switch cl {
	case primitive.ConsistencyLevelAny:
		return nil
	case primitive.ConsistencyLevelLocalOne:
		required, alive = 1, liveLocal
	case primitive.ConsistencyLevelLocalQuorum:
		required, alive = localQuorum, liveLocal
	case primitive.ConsistencyLevelEachQuorum:
		if !p.simple {
			for _, d := range p.dcs {
				if a := p.liveIn(d.dc, localDC, liveLocal); a < d.rf/2+1 {
					return unavailable(cl, d.rf/2+1, a, " in DC "+d.dc)
				}
			}
			return nil
		}
		required, alive = quorum, allLive
	case primitive.ConsistencyLevelOne:
		required, alive = 1, allLive
	case primitive.ConsistencyLevelTwo:
		required, alive = 2, allLive
	case primitive.ConsistencyLevelThree:
		required, alive = 3, allLive
	case primitive.ConsistencyLevelQuorum, primitive.ConsistencyLevelSerial:
		required, alive = quorum, allLive
	case primitive.ConsistencyLevelLocalSerial:
		// blockFor is the local quorum, but assureSufficientLiveReplicas
		// has no LOCAL_SERIAL branch: its default counts every live replica.
		required, alive = localQuorum, allLive
	case primitive.ConsistencyLevelAll:
		required, alive = p.total(), allLive
	default:
		return nil
	}
	if alive < required {
		return unavailable(cl, required, alive, "")
	}
	return nil
}

// unavailable is Cassandra 4's UnavailableException.create: "Cannot achieve
// consistency level LOCAL_QUORUM" (with " in DC dc1" for EACH_QUORUM).
func unavailable(cl primitive.ConsistencyLevel, required, alive int, where string) error {
	return &reqError{code: codeUnavailable, msg: "Cannot achieve consistency level " + clName(cl) + where,
		cl: cl, required: int32(required), alive: int32(alive)}
}

// clName is Cassandra's name of a consistency level (primitive's String adds
// a prefix and the code).
func clName(cl primitive.ConsistencyLevel) string {
	names := [...]string{"ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "SERIAL", "LOCAL_SERIAL", "LOCAL_ONE"}
	if int(cl) < len(names) {
		return names[cl]
	}
	return "0x" + strconv.FormatUint(uint64(cl), 16)
}

// liveReplicas is a partition's live replicas in localDC in the one-node
// double, which stands for live nodes all up: min(factor there, live).
func (p *placement) liveReplicas(localDC string, live int) int {
	return min(p.factorIn(localDC), live)
}
