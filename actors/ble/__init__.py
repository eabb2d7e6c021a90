"""BLE provisioning: a GATT service (bless over BlueZ) tunnelling REST requests.

    tunnel.py    the EGWTTP protocol: reassembly, limits, errors, paging cache, BLE scope and auth rules
    dispatch.py  executes tunnelled requests against the local REST API (loopback HTTP)
    server.py    the bless GATT server: characteristics, non-blocking callbacks
    window.py    the provisioning window (when BLE may change the gateway), persisted across restarts
    setup_code.py  the installer's setup code (on the label) and the wrong-code lockout
    cli.py       `egw ble code`, `egw ble window [open|close]`
    actor.py     the supervised actor: window, `unavailable` + retry, child spec
    messages.py  Open/CloseProvisioningWindow, GetBleStatus -> BleStatus
    wifi.py      the WifiBackend interface (+ fake) behind the API's /api/wifi endpoints
    wifi_nm.py   WifiBackend over NetworkManager's D-Bus API

PROTOCOL.md describes the tunnel for phone-app authors.
"""
