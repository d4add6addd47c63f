"""Reads rows written by gocql from the cqltest server with the DataStax Python
driver, an independent CQL client, and prints them one per line:
product minute region cell hex(f). Usage: read_features.py PORT COMPRESSION
[PROTOCOL] (COMPRESSION: none, lz4 or snappy; PROTOCOL: 4 (default) or 5,
whose segments the driver checks: CRC24 headers, CRC32 payloads). Partitions
to read come on stdin as "product minute region" lines."""
import sys

from cassandra.cluster import Cluster

port = int(sys.argv[1])
comp = sys.argv[2]
version = int(sys.argv[3]) if len(sys.argv) > 3 else 4
compression = {"none": False, "lz4": "lz4", "snappy": "snappy"}[comp]

cluster = Cluster(["127.0.0.1"], port=port, protocol_version=version,
                  compression=compression, schema_metadata_enabled=False,
                  token_metadata_enabled=False, connect_timeout=5)
session = cluster.connect()
try:
    # The driver silently falls back to no compression when its codec is
    # missing; report what the connection really uses.
    conn = session._pools[list(session._pools)[0]]._connection
    print("compressor", "none" if conn.compressor is None else comp)
    print("protocol", conn.protocol_version)
    stmt = session.prepare(
        "SELECT product, minute, region, cell, f FROM demandpipe.features "
        "WHERE product = ? AND minute = ? AND region = ?")
    for line in sys.stdin:
        if not line.strip():
            continue
        p, m, r = (int(x) for x in line.split())
        for row in session.execute(stmt, (p, m, r)):
            print(row.product, row.minute, row.region, row.cell, row.f.hex())
    # A plain (unprepared) query with literals, too.
    rows = list(session.execute(
        "SELECT name, minute, state FROM demandpipe.checkpoints WHERE name = 'sink'"))
    for row in rows:
        print("checkpoint", row.name, row.minute, row.state.hex())
finally:
    cluster.shutdown()
