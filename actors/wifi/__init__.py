"""Wi-Fi provisioning, shared by the gateway's front-ends.

One interface (`actors.wifi.backend.WifiBackend`) with NetworkManager over D-Bus
(`actors.wifi.networkmanager`) and an in-memory fake for demos behind it. The REST API
serves it (`/api/wifi`, `actors.api.provisioning`); the BLE tunnel reaches the same
endpoints, and the BLE actor asks it whether the gateway is already provisioned. It is
not part of either front-end, so neither imports the other to reach it.
"""
