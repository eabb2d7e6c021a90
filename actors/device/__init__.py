"""Inverters and meters polled over Modbus TCP/RTU.

Names: this family *polls* devices; the *harvest* family (actors/harvest) stores what it
polls in the SQLite *outbox* (storage/outbox). The batches a device actor has sent but the
harvest has not yet acknowledged are its *unacknowledged* batches (unacked.py).


    profiles/*.toml   register maps as data, one file per device family (see profile.py)
    profile.py        loading and validating profiles (errors name file and field)
    quantities.py     the normalized quantities, their units and sanity ranges
    codec.py          registers <-> typed values <-> physical values; SunSpec markers
    planner.py        merging points into as few reads as possible (<= 125 registers)
    sunspec.py        SunSpec discovery (40000/0/50000) and maps from pysunspec2 models
    decode.py         what to read each poll, decoding into values, flags and raw blocks
    link.py           the pymodbus connection of one endpoint and its three failure kinds
    poller.py         the poll loop as plain logic: deadlines, backoff, gaps, counter events
    unacked.py        bounded, re-sent, unacknowledged batches for the harvest actor
    actor.py          DeviceActor: the thin actor shell around the poll loop
    specs.py          device settings validation and the "devices" supervisor's child specs
    scan.py           `egw devices scan HOST[:PORT] | CIDR`
"""
