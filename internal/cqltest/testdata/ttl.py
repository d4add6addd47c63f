"""Checks per-cell TTL through the DataStax Python driver, an independent
CQL client. Usage: ttl.py PORT write|read. The Go test creates keyspace k
with table t (a int PRIMARY KEY, b int, c int), runs "write", advances the
server's clock by 11 s, then runs "read", which prints each row."""
import sys

from cassandra.cluster import Cluster

port, phase = int(sys.argv[1]), sys.argv[2]
cluster = Cluster(["127.0.0.1"], port=port, protocol_version=5,
                  schema_metadata_enabled=False, token_metadata_enabled=False, connect_timeout=5)
session = cluster.connect()
try:
    if phase == "write":
        # Row 1: an INSERT with TTL 100, then b again with TTL 10: b alone
        # expires first. Row 2: an UPDATE alone (no row marker), TTL 10.
        # Row 3: an INSERT without TTL, then b with TTL 10.
        session.execute("INSERT INTO k.t (a, b, c) VALUES (1, 1, 1) USING TTL 100")
        session.execute("UPDATE k.t USING TTL 10 SET b = 2 WHERE a = 1")
        session.execute("UPDATE k.t USING TTL 10 SET b = 3 WHERE a = 2")
        session.execute("INSERT INTO k.t (a, b) VALUES (3, 3)")
        session.execute("UPDATE k.t USING TTL 10 SET b = 4 WHERE a = 3")
        print("written")
    else:
        for r in sorted(session.execute("SELECT a, b, c FROM k.t"), key=lambda r: r.a):
            print(r.a, r.b, r.c)
finally:
    cluster.shutdown()
