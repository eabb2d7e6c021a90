"""The MQTT transport: the same uploader as over HTTP, with a broker in between.

`MqttUploader` is an `Uploader` whose "POST" publishes the signed batch (QoS 1) to
`<prefix>/<gateway>/batches` and waits for the receiver's acknowledgement on
`<prefix>/<gateway>/acks`. Everything else is the HTTP transport's logic, unchanged: the
same bytes are sent again until acknowledged, backoff with jitter, dead letters, halving
after a "too large", rows released only in the transaction that advances the cursor.

Why the receiver's acknowledgement and not the PUBACK: a PUBACK only says the broker has
the message. A broker restarted without persistence, a shared subscription whose worker
died mid-batch, or a receiver that refused the batch all follow a PUBACK. Only the
receiver's message, published after its database commit and naming the batch by its hash,
releases rows. An acknowledgement is a JSON object:

    {"batch": sha256-of-the-JWS, "status": 200, "acked": {stream: seq}, "stored": n, ...}
    {"batch": ..., "status": 401|409|400|413|503, "error": "why"}

`status` carries HTTP's meaning, so the uploader treats a refusal over MQTT exactly as
the same refusal over HTTP (401: the key is not registered yet, back off; 409/400:
dead letter; 503: the receiver's database is down, back off).

The link keeps one session per gateway and transport (a stable client id, a persistent
session), so acknowledgements published while the gateway was briefly away are
delivered when it is back; the last ones received are remembered (bounded), so a batch
acknowledged after its wait timed out is released at its next step without being
published again. When the broker is unreachable the step fails at once (nothing is
queued in memory: publishing happens only while connected), the rows stay in the outbox
(store-and-forward exactly as over HTTP), and the first step after the reconnect
publishes the unacknowledged batch again without waiting out the backoff.

Presence: `<prefix>/<gateway>/presence` holds "online" (retained) while connected; the
broker publishes the last will "offline" (retained) when the gateway vanishes, and a
clean stop publishes it too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
import urllib.parse
from collections import OrderedDict
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from actors.harvest.mqtt_settings import gateway_topic_problem
from actors.harvest.uplink import HttpReply, StepResult, TransportConfig, Uploader
from storage.identity import Signer
from storage.outbox import Outbox

KEEPALIVE_S = 30
SESSION_EXPIRY_S = 7 * 24 * 3600  # MQTT 5: the broker keeps the session (and queued acks) this long
ACKS_REMEMBERED = 256  # acknowledgements kept for batches not (or no longer) waited for
RECONNECT_POLL_S = 0.5  # while disconnected, how often a step looks whether the broker is back
OFFLINE = b"offline"
ONLINE = b"online"


def mqtt_topics(prefix: str, gateway: str) -> dict[str, str]:
    """The three topics of one gateway; ValueError when the gateway id cannot be a topic level."""
    problem = gateway_topic_problem(gateway)
    if problem:
        raise ValueError(problem)
    base = f"{prefix}/{gateway}"
    return {"batches": f"{base}/batches", "acks": f"{base}/acks", "presence": f"{base}/presence"}


class MqttLink:
    """One gateway transport's connection to the broker: publish a batch, wait for its acknowledgement.

    paho's network thread connects, reconnects (its own capped backoff) and delivers
    acknowledgements; `post()` runs on the transport's worker thread and only waits on a
    condition, so the actor is never blocked by the network.
    """

    def __init__(self, config: TransportConfig, gateway_id: str, *, log: Any = None) -> None:
        self.config, self.gateway_id, self.log = config, gateway_id, log
        self.topics = mqtt_topics(config.topic_prefix, gateway_id)
        parts = urllib.parse.urlsplit(config.url)
        self.host, self.tls = parts.hostname or "", parts.scheme == "mqtts"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.v5 = config.mqtt_version == "5"
        self._cond = threading.Condition()
        self._acks: OrderedDict[str, bytes] = OrderedDict()
        self.connected = False
        self.connections = 0  # successful connects so far: a change means "reconnected"
        self.last_error = "not connected yet"
        self.malformed_acks = 0
        client_id = f"egw-{gateway_id}-{config.name}"[:128]
        if self.v5:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        else:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False)
        if parts.username is not None:
            client.username_pw_set(urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "") if parts.password is not None else None)
        if self.tls:
            client.tls_set(ca_certs=config.tls_ca or None, certfile=config.tls_cert or None, keyfile=config.tls_key or None)
        client.will_set(self.topics["presence"], OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(min(config.backoff_max_s, 30))))
        client.max_queued_messages_set(4)  # never a backlog in memory: the outbox is the backlog
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    # ------------------------------------------------------------ lifecycle
    def start(self) -> MqttLink:
        """Connect in the background (paho's thread retries until the broker answers)."""
        properties = None
        kwargs: dict[str, Any] = {}
        if self.v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            kwargs["clean_start"] = False
        self.client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S, properties=properties, **kwargs)
        self.client.loop_start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Say "offline" (retained), then disconnect: a clean stop is not a vanished gateway's last will."""
        try:
            if self.connected:
                info = self.client.publish(self.topics["presence"], OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            pass
        finally:
            self.client.disconnect()
            self.client.loop_stop()

    # ------------------------------------------------------------ paho's thread
    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            self._log("warning", "broker refused the connection", reason=str(reason))
            return
        client.subscribe(self.topics["acks"], qos=1)
        client.publish(self.topics["presence"], ONLINE, qos=1, retain=True)
        with self._cond:
            self.connected = True
            self.connections += 1
            self._cond.notify_all()
        self._log("info", "connected to broker", broker=f"{self.host}:{self.port}", tls=self.tls, mqtt=self.config.mqtt_version, session_present=bool(getattr(flags, "session_present", False)))

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self.last_error = f"cannot connect to the broker at {self.host}:{self.port}"
        self._log("warning", "cannot connect to broker; rows stay in the outbox", broker=f"{self.host}:{self.port}")

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        with self._cond:
            was, self.connected = self.connected, False
            self._cond.notify_all()
        if was:  # a refused connection also ends here: keep the refusal's reason, it says more
            self.last_error = f"disconnected from the broker: {reason}"
            self._log("warning", "disconnected from broker; rows stay in the outbox", reason=str(reason))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            digest = json.loads(message.payload)["batch"]
            if not isinstance(digest, str):
                raise TypeError("batch is not a string")
        except (ValueError, KeyError, TypeError):
            self.malformed_acks += 1
            self._log("warning", "acknowledgement ignored: not a JSON object naming a batch", topic=message.topic, nbytes=len(message.payload))
            return
        with self._cond:
            self._acks[digest] = bytes(message.payload)
            self._acks.move_to_end(digest)
            while len(self._acks) > ACKS_REMEMBERED:
                self._acks.popitem(last=False)
            self._cond.notify_all()

    def _log(self, level: str, msg: str, **fields: Any) -> None:
        if self.log is not None:
            getattr(self.log, level)(msg, **fields)

    # ------------------------------------------------------------ the uploader's side
    def post(self, _url: str, body: bytes, timeout: float) -> HttpReply:
        """Publish one signed batch and wait for the receiver's acknowledgement of exactly these bytes.

        Raises OSError (the uploader backs off, the rows stay) when the broker is not
        connected, does not take the message, or no acknowledgement comes within `timeout`.
        """
        digest = hashlib.sha256(body).hexdigest()
        deadline = time.monotonic() + timeout
        with self._cond:
            early = self._acks.pop(digest, None)  # acknowledged after an earlier wait gave up
            if early is not None:
                return _reply(early)
            if not self.connected:
                raise OSError(f"{self.last_error}; batch kept in the outbox")
        info = self.client.publish(self.topics["batches"], body, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise OSError(f"publish failed: {mqtt.error_string(info.rc)}")
        with self._cond:
            while digest not in self._acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            raw = self._acks.pop(digest, None)
        if raw is not None:
            return _reply(raw)
        if not info.is_published():
            raise OSError(f"the broker did not confirm the batch (no PUBACK) within {timeout:g} s")
        raise OSError(f"the broker has the batch (PUBACK) but no receiver acknowledged it within {timeout:g} s")


def _reply(raw: bytes) -> HttpReply:
    """An acknowledgement as the HTTP reply it stands for (status, Retry-After, JSON body)."""
    ack = json.loads(raw)
    status = ack.get("status", 200)
    headers = {"retry-after": str(ack["retry_after"])} if "retry_after" in ack else {}
    return HttpReply(int(status) if isinstance(status, int) else 502, headers, raw)


class MqttUploader(Uploader):
    """An `Uploader` that publishes through an `MqttLink`; re-publishes at once after a reconnect."""

    def __init__(self, outbox: Outbox, signer: Signer, gateway_id: str, config: TransportConfig, link: MqttLink, **kwargs: Any) -> None:
        super().__init__(outbox, signer, gateway_id, config, post=link.post, **kwargs)
        self.link = link
        self._connections_seen = link.connections

    @classmethod
    def connect(cls, outbox: Outbox, signer: Signer, gateway_id: str, config: TransportConfig, *, log: Any = None, **kwargs: Any) -> MqttUploader:
        """An uploader whose link is already connecting in the background."""
        link = MqttLink(config, gateway_id, log=log).start()
        return cls(outbox, signer, gateway_id, config, link, **kwargs)

    def step(self) -> StepResult:
        connections = self.link.connections
        if connections != self._connections_seen:
            self._connections_seen = connections
            if self.failures:  # the broker is back: the unacknowledged batch goes now, not after the backoff
                self.next_attempt_mono = self.clock.mono()
        result = super().step()
        if not self.link.connected and result.outcome in ("retry", "waiting", "throttled"):
            return dataclasses.replace(result, delay_s=min(result.delay_s, RECONNECT_POLL_S))
        return result

    def close(self) -> None:
        try:
            self.link.close()
        finally:
            super().close()
