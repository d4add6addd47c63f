"""Runs statements the cqltest server must refuse with UNAVAILABLE through the
DataStax Python driver, an independent CQL client, and prints one line per
statement: NAME CONSISTENCY REQUIRED ALIVE SUMMARY for cassandra.Unavailable,
NAME ok when it succeeded, NAME error TYPE otherwise. Usage: unavailable.py
PORT. The Go test creates the keyspaces: rf3 (SimpleStrategy, 3) with table
t (k int PRIMARY KEY, v text), and nts (NetworkTopologyStrategy,
datacenter1: 1, dc2: 1) with the same table."""
import sys

from cassandra import ConsistencyLevel, Unavailable
from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
from cassandra.policies import FallthroughRetryPolicy
from cassandra.query import BatchStatement, BatchType, SimpleStatement

port = int(sys.argv[1])
# The default policy answers an Unavailable with "retry on the next host",
# and with one host that ends in NoHostAvailable: let the error through.
profile = ExecutionProfile(retry_policy=FallthroughRetryPolicy())
cluster = Cluster(["127.0.0.1"], port=port, protocol_version=4,
                  schema_metadata_enabled=False, token_metadata_enabled=False,
                  connect_timeout=5, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
session = cluster.connect()
CL = ConsistencyLevel


def run(name, stmt, params=None):
    try:
        session.execute(stmt, params)
        print(name, "ok")
    except Unavailable as e:
        # str(e): 'Error from server: code=1000 [Unavailable exception]
        # message="..." info={...}'
        print(name, CL.value_to_name[e.consistency], e.required_replicas,
              e.alive_replicas, str(e).split(" info=")[0])
    except Exception as e:  # reported, and the Go test fails on it
        print(name, "error", type(e).__name__, str(e).replace("\n", " "))


try:
    # QUERY (a simple statement, not prepared)
    run("query", SimpleStatement("INSERT INTO rf3.t (k, v) VALUES (1, 'a')",
                                 consistency_level=CL.LOCAL_QUORUM))
    # EXECUTE (a prepared statement)
    sel = session.prepare("SELECT v FROM rf3.t WHERE k = ?")
    sel.consistency_level = CL.ALL
    run("execute", sel, (1,))
    # BATCH of a prepared statement
    ins = session.prepare("INSERT INTO rf3.t (k, v) VALUES (?, ?)")
    b = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=CL.QUORUM)
    b.add(ins, (2, "b"))
    b.add(ins, (2, "c"))
    run("batch", b)
    # EACH_QUORUM: dc2 has no live node
    run("each_quorum", SimpleStatement("INSERT INTO nts.t (k, v) VALUES (1, 'a')",
                                       consistency_level=CL.EACH_QUORUM))
    # What one live node can do
    run("one", SimpleStatement("INSERT INTO rf3.t (k, v) VALUES (3, 'd')",
                               consistency_level=CL.ONE))
finally:
    cluster.shutdown()
