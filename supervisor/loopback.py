"""Keep the actor system's sockets off the network.

Every thespian socket (admin, each actor, the logger) accepts pickled objects, so
anyone who can connect can run code in the gateway. Thespian binds them to all
interfaces; this module makes them bind to 127.0.0.1 only. It must run before the
actor system starts: forked actor processes inherit the patched class.

The thespian 4.0.1 behaviour worked around: `IPActorAddress.__init__`
(thespian/system/transport/IPBase.py) ends with
`self.bindname = ('', sa[1]) if external else sa`, and every listening socket's address
is made with `external` set: each actor's and the logger's in `TCPTransport.__init__`
(thespian/system/transport/TCPTransport.py, `templateAddr`, then
`self.socket.bind(*templateAddr.addressDetails.bindArgs)`), the admin's in
`TCPTransport.getAdminAddr`. `''` is INADDR_ANY. The supported setting,
`THESPIAN_BASE_IPADDR`, only chooses the advertised address (`baseaddr`, hence
`sockname`), never the bind name, and no capability names a bind address (thespian reads
'Admin Port', 'Convention Address.IPv4', 'Outbound Only', 'Admin Routing', 'Process
Startup Method', 'Thespian Watch Supported' and the like). So the variable is set (the
advertised address) and the private class is patched (the bind name).
`tests/supervisor/test_thespian_workarounds.py` shows thespian alone binding to all
interfaces, and fails when the patch does not confine a running system to loopback.
"""

from __future__ import annotations

import os

LOOPBACK = "127.0.0.1"
_patched = False


def confine_actor_sockets_to_loopback() -> None:
    """Advertise and bind every thespian TCP address on 127.0.0.1 (idempotent)."""
    global _patched
    os.environ["THESPIAN_BASE_IPADDR"] = LOOPBACK
    if _patched:
        return
    from thespian.system.transport import IPBase

    original_init = IPBase.IPActorAddress.__init__

    def loopback_init(self: IPBase.IPActorAddress, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)
        host, port = self.bindname[0], self.bindname[1]
        if host in ("", "0.0.0.0", None):
            self.bindname = (LOOPBACK, port)

    IPBase.IPActorAddress.__init__ = loopback_init
    _patched = True
