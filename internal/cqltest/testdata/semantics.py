"""Checks the cqltest server's write timestamps, tombstone thresholds,
UNPREPARED answers, values of the wrong size and WRITE_TIMEOUT after
applying through the DataStax Python driver, an independent CQL client,
over protocol v5, and prints one line per check. Usage:
semantics.py PORT CONTROL_URL. The Go test creates keyspace k with table
t (p int, c int, v int, PRIMARY KEY (p, c)) and starts the server with
tombstone thresholds 20 (warn) and 50 (fail)."""
import sys
import urllib.request

from cassandra import InvalidRequest, ReadFailure, WriteTimeout
from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
from cassandra.policies import FallthroughRetryPolicy

port, control = int(sys.argv[1]), sys.argv[2]
profile = ExecutionProfile(retry_policy=FallthroughRetryPolicy())
cluster = Cluster(["127.0.0.1"], port=port, protocol_version=5,
                  schema_metadata_enabled=False, token_metadata_enabled=False,
                  connect_timeout=5, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
session = cluster.connect()


def value(p, c):
    rows = list(session.execute("SELECT v FROM k.t WHERE p = %s AND c = %s", (p, c)))
    return rows[0].v if rows else None


try:
    # The highest timestamp wins, whatever the order of arrival.
    session.execute("INSERT INTO k.t (p, c, v) VALUES (1, 1, 10) USING TIMESTAMP 2000")
    session.execute("INSERT INTO k.t (p, c, v) VALUES (1, 1, 20) USING TIMESTAMP 1000")
    print("older write ignored:", value(1, 1))
    # A delete at the write's timestamp wins the tie.
    session.execute("DELETE FROM k.t USING TIMESTAMP 2000 WHERE p = 1 AND c = 1")
    print("delete wins the tie:", value(1, 1))
    # 60 cells deleted (their rows live on, by the INSERT's row marker): a
    # read passing 30 of them warns (20), one passing 60 fails (50).
    for c in range(60):
        session.execute("INSERT INTO k.t (p, c, v) VALUES (2, %s, %s)", (c, c))
        session.execute("DELETE v FROM k.t WHERE p = 2 AND c = %s", (c,))
    session.execute("INSERT INTO k.t (p, c, v) VALUES (2, 100, 1)")
    rs = session.execute("SELECT c FROM k.t WHERE p = 2 AND c >= 30")
    print("warning:", [w.split(" for query")[0] for w in rs.response_future.warnings or []])
    try:
        session.execute("SELECT c FROM k.t WHERE p = 2")
        print("read failure: none")
    except ReadFailure as e:
        print("read failure:", type(e).__name__, sorted(e.error_code_map.values()) if e.error_code_map else e.failures)
    # UNPREPARED: the server forgets, the driver prepares again.
    ins = session.prepare("INSERT INTO k.t (p, c, v) VALUES (?, ?, ?)")
    session.execute(ins, (3, 1, 1))
    urllib.request.urlopen(urllib.request.Request(control + "/prepared/forget", method="POST")).read()
    session.execute(ins, (3, 2, 2))
    print("after forget:", value(3, 2))
    # A value of the wrong size for its column (3 bytes for an int),
    # bound as raw bytes past the driver's own serializer: INVALID, and
    # nothing written.
    bound = ins.bind((4, 1, 1))
    bound.values[2] = b"\x00\x01\x02"
    try:
        session.execute(bound)
        print("wrong size: accepted")
    except InvalidRequest as e:
        print("wrong size:", str(e).split("message=")[-1].strip('"}'), value(4, 1))
    # WRITE_TIMEOUT after the write was applied (Cassandra does not know
    # whether the replicas that did not answer wrote it; here they did).
    urllib.request.urlopen(urllib.request.Request(control + "/fault?kind=timeout-applied&n=1", method="POST")).read()
    try:
        session.execute(ins, (5, 1, 7))
        print("timeout applied: no timeout")
    except WriteTimeout as e:
        print("timeout applied:", type(e).__name__, value(5, 1))
finally:
    cluster.shutdown()
