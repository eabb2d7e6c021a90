"""Energy manager: loadpoints, solar-surplus charging control, charging profiles to chargers.

    control.py   the pure controller: (settings, state, inputs) -> (state, decision)
    profiles.py  SetChargingProfile variants and the fallback order on Rejected
    config.py    `[[loadpoints]]` and the energy settings, validated
    actor.py     the actor shell: readings from the tree, limits to chargers, state to storage
    readings.py  device values from the tree, a charger's stack level, live events (pure)
    runtime.py   a loadpoint's live bookkeeping in the actor, and its REST view
    specs.py     its place in the supervision tree (`supervisor.tree.PARTS`)
"""
