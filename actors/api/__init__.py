"""The REST API: every part of the gateway answerable over HTTP.

    routes.py      the route table (one row per endpoint: method, path, parameters, body, responses, token)
    schemas.py     JSON Schemas of every request and response (validation and documentation alike)
    openapi.py     the OpenAPI 3.1 document, generated from the two above
    validation.py  request bodies and parameters against those schemas: 400 naming the field
    app.py         the aiohttp application: handlers, JSON errors (400/401/404/405/413/503), timeouts
    backend.py     what the handlers need from the gateway (a Protocol) and the errors it may raise
    gateway.py     that Protocol over a running gateway: actor tree, stores, charger commands, devices
    provisioning.py  /api/wifi (NetworkManager, or 503 wifi_unavailable) and /api/ble (the BLE window)
    stores.py      read-only views of the SQLite stores (outbox, chargers, transactions, identity)
    metrics.py     /metrics in Prometheus text format
    redact.py      secrets out of /api/config
    token.py       the bearer token for write endpoints (data dir, 0600)
    actor.py       the supervised actor serving it all; `api_child_spec(config)`
    cli.py         `egw status`;  token_cli.py: `egw token`
"""
