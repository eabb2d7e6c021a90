"""The fleet receiver (`egw ingest serve`): signed batches in, every item in PostgreSQL exactly once.

Stateless workers take batches over HTTP (`POST /v1/batches`) and from an MQTT broker
(shared subscription `$share/<group>/<prefix>/+/batches`, so N workers split the fleet),
verify each JWS against the registered gateway key and the hash chain, write every item
with the unique key (gateway, stream, seq) and `ON CONFLICT DO NOTHING`, commit, and only
then acknowledge. Every piece of state lives in PostgreSQL, so a worker can be added,
restarted or SIGKILLed at any time; see docs/fleet.md.

    fleet.schema    migrations of the receiver's tables
    fleet.verify    parsing, signature and shape checks of one batch (no database)
    fleet.store     the transaction that stores one batch; registration; status
    fleet.worker    one worker: the HTTP face and the MQTT subscriber
    fleet.cli       `egw ingest serve | register | migrate | status`
"""
