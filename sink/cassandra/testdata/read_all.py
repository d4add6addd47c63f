"""Reads every feature row the demandpipe Cassandra sink wrote, with the
DataStax Python driver (an independent CQL client), and prints one line per
row: product minute cell hex(f). Usage: read_all.py PORT COMPRESSION
(none, lz4 or snappy)."""
import sys

from cassandra.cluster import Cluster

port, comp = int(sys.argv[1]), sys.argv[2]
cluster = Cluster(["127.0.0.1"], port=port, protocol_version=4,
                  compression={"none": False, "lz4": "lz4", "snappy": "snappy"}[comp],
                  schema_metadata_enabled=False, token_metadata_enabled=False, connect_timeout=5)
session = cluster.connect()
try:
    for row in session.execute("SELECT product, minute, cell, f FROM demandpipe.features"):
        print(row.product, row.minute, row.cell, row.f.hex())
finally:
    cluster.shutdown()
