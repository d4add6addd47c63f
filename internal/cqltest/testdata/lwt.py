"""Runs the lightweight transactions of a writer lease through the DataStax
Python driver, an independent CQL client, and prints one line per
statement: NAME, ResultSet.was_applied and the answer's row as (column,
value) pairs in the server's column order. Usage: lwt.py PORT VERSION. The
Go test creates table k.l (name text, kind text, key bigint, chunk int,
data blob, n int, PRIMARY KEY ((name, kind), key, chunk))."""
import sys

from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
from cassandra.policies import FallthroughRetryPolicy
from cassandra.query import SimpleStatement, tuple_factory

port, version = int(sys.argv[1]), int(sys.argv[2])
profile = ExecutionProfile(retry_policy=FallthroughRetryPolicy(), row_factory=tuple_factory,
                           consistency_level=ConsistencyLevel.LOCAL_QUORUM,
                           serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL)
cluster = Cluster(["127.0.0.1"], port=port, protocol_version=version,
                  schema_metadata_enabled=False, token_metadata_enabled=False,
                  connect_timeout=5, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
session = cluster.connect()

acquire = session.prepare(
    "INSERT INTO k.l (name, kind, key, chunk, data) VALUES (?, 'lease', 0, 0, ?) IF NOT EXISTS USING TTL ?")
renew = session.prepare(
    "UPDATE k.l USING TTL ? SET data = ? WHERE name = ? AND kind = 'lease' AND key = 0 AND chunk = 0 IF data = ?")
# A simple statement (QUERY, not EXECUTE) at SERIAL.
release = ("DELETE FROM k.l WHERE name = %s AND kind = 'lease' AND key = 0 AND chunk = 0 IF data = %s")


def run(name, stmt, params):
    rs = session.execute(stmt, params)
    applied = rs.was_applied
    print(name, applied, list(zip(rs.column_names, rs.one())))


try:
    run("acquire", acquire, ("a", b"A1", 10))
    run("acquire again", acquire, ("a", b"B1", 10))
    run("renew", renew, (10, b"A2", "a", b"A1"))
    run("stale renew", renew, (10, b"A3", "a", b"A1"))
    serial = SimpleStatement(release, serial_consistency_level=ConsistencyLevel.SERIAL)
    run("release by another", serial, ("a", b"B1"))
    run("release", serial, ("a", b"A2"))
    run("renew released", renew, (10, b"A3", "a", b"A2"))
    run("acquire short", acquire, ("a", b"D1", 1))
finally:
    cluster.shutdown()
