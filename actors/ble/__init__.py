"""BLE provisioning: a GATT service (bless over BlueZ) tunnelling REST requests.

    tunnel.py    the EGWTTP protocol: reassembly, limits, errors, paging cache, auth rules
    dispatch.py  executes tunnelled requests against the local REST API (loopback HTTP)
    server.py    the bless GATT server: characteristics, non-blocking callbacks
    window.py    the provisioning window (when BLE may change the gateway)
    actor.py     the supervised actor: window, `unavailable` + retry, child spec
    messages.py  Open/CloseProvisioningWindow, GetBleStatus -> BleStatus
    wifi.py      the WifiBackend interface (+ fake) behind the API's /api/wifi endpoints
    wifi_nm.py   WifiBackend over NetworkManager's D-Bus API

PROTOCOL.md describes the tunnel for phone-app authors.
"""
