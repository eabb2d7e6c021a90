"""Ingest receiver: the upload endpoint the gateway's transports send signed batches to.

Verifies each batch's ES256 JWS against the registered gateway key, checks the hash
chain, stores items de-duplicated on (gateway, stream, seq) in its own SQLite and
acknowledges the highest contiguous seq per stream. Used by tests, the demo, the
benchmark, and installers checking a site's uplink.
"""

from simulators.ingest.server import IngestApp, IngestServerThread, serve
from simulators.ingest.store import IngestStore, BatchRejectedError

__all__ = ["IngestApp", "IngestServerThread", "IngestStore", "BatchRejectedError", "serve"]
