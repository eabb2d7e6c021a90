"""Store-and-forward: the harvest actor (durable outbox writer) and the transport actors (uploads).

    messages.py    the contract with device actors: ReadingBatch in, BatchAck out
    rejections.py  BatchRejected: the answer to a malformed batch (nothing stored)
    validation.py  checks on incoming batches, with precise reasons
    actor.py       HarvestActor: commit each batch in one transaction, then ack; enforce the budget
    uplink.py      Uploader: one endpoint's upload logic (batches, backoff, Retry-After, dead letters)
    transport.py   TransportActor: runs an Uploader on a timer, one actor per endpoint
    signing.py     compact ES256 JWS batches chained by the previous batch's hash
    specs.py       harvest_child_specs(config): this family's place in the supervision tree

Storage lives in `storage.outbox` and the gateway key in `storage.identity`; the
receiver the transports talk to in tests and the demo is `simulators.ingest`.
This package file imports nothing, so device actors importing `messages` stay light.
"""
