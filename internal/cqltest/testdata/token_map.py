"""Checks a multi-node cqltest server's token ring through the DataStax
Python driver, an independent CQL client: the driver builds its token map
from system.local and system.peers_v2 (token and schema metadata on), and
prints the replicas it computes for keys of the tables the Go test created,
then writes each key with its TokenAwarePolicy. Usage: token_map.py PORT N.
Keyspaces r1 (SimpleStrategy 1), r2 (NetworkTopologyStrategy
datacenter1: 2) and r3 (SimpleStrategy 3), each with tables
t (k int PRIMARY KEY, v text) and c (a int, b text, c int, v text,
PRIMARY KEY ((a, b), c)). Output: "hosts H tokens T", then per key
"KS TABLE KEY host:port ..." (replicas in the driver's order)."""
import sys

from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
from cassandra.policies import (DCAwareRoundRobinPolicy, FallthroughRetryPolicy,
                                TokenAwarePolicy)

port, n = int(sys.argv[1]), int(sys.argv[2])
profile = ExecutionProfile(
    load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc="datacenter1")),
    retry_policy=FallthroughRetryPolicy())
cluster = Cluster(["127.0.0.1"], port=port, protocol_version=5, connect_timeout=5,
                  execution_profiles={EXEC_PROFILE_DEFAULT: profile})
# wait_for_all_pools: connect returns once the first host's pool is up, and
# until a replica's pool is, the driver sends that replica's statements to
# the next host of the plan, a non-replica (seen on a loaded machine).
session = cluster.connect(wait_for_all_pools=True)
try:
    tm = cluster.metadata.token_map
    owners = set(tm.token_to_host_owner.values())
    print("hosts", len(owners), "tokens", len(tm.ring))


    def replicas(ks, bound):
        hosts = cluster.metadata.get_replicas(ks, bound.routing_key)
        return " ".join("%s:%d" % (h.endpoint.address, h.endpoint.port) for h in hosts)


    for ks in ("r1", "r2", "r3"):
        ins_t = session.prepare("INSERT INTO %s.t (k, v) VALUES (?, ?)" % ks)
        ins_c = session.prepare("INSERT INTO %s.c (a, b, c, v) VALUES (?, ?, ?, ?)" % ks)
        for k in range(n):
            b = ins_t.bind((k, "x"))
            print(ks, "t", k, replicas(ks, b))
            session.execute(b)
            b = ins_c.bind((k, "b%d" % k, 1, "x"))
            print(ks, "c", k, replicas(ks, b))
            session.execute(b)
finally:
    cluster.shutdown()
