"""MQTT over TLS with a private CA, client certificates and passwords, in MQTT 3.1.1, into the fleet receiver.

A real mosquitto with `require_certificate true` and a password file: the gateway and the
receiver each present a certificate signed by the test CA and a user name and password.
A wrong password is refused by the broker, named in the transport's error (without the
password), and the rows stay in the outbox.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import wait_until
from tests.fleet.conftest import dsn, fleet_db, gateways, pg_server, register, workers  # noqa: F401 - fixtures
from tests.fleet.servers import Mosquitto
from tests.servers import need_program


def _issue(folder: Path, name: str, ca: tuple | None, *, server: bool = False) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca[1].subject if ca else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(ca[0] if ca else key, hashes.SHA256())
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    for suffix in ("crt", "key"):
        os.chmod(folder / f"{name}.{suffix}", 0o644)  # mosquitto reads them as its own user
    return key, cert


def test_tls_with_client_certificates_and_passwords_over_mqtt_3_1_1(tmp_path, fleet_db, dsn, workers, gateways) -> None:  # noqa: F811
    passwd_tool = need_program("mosquitto_passwd", "mosquitto")
    server, name = fleet_db
    broker = Mosquitto(scheme="mqtts")
    pki = broker.dir
    ca = _issue(pki, "ca", None)
    _issue(pki, "broker", ca, server=True)
    _issue(pki, "gateway", ca)
    _issue(pki, "receiver", ca)
    passwords = pki / "passwords"
    subprocess.run([passwd_tool, "-c", "-b", str(passwords), "gw-tls", "gw-pass"], check=True, capture_output=True)
    subprocess.run([passwd_tool, "-b", str(passwords), "ingest", "ingest-pass"], check=True, capture_output=True)
    os.chmod(passwords, 0o644)
    broker.conf.write_text(
        broker.conf.read_text()
        + f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'broker.crt'}\nkeyfile {pki / 'broker.key'}\nrequire_certificate true\n"
        + f"allow_anonymous false\npassword_file {passwords}\n"
    )
    broker.start()
    try:
        tls = ["--mqtt-ca", str(pki / "ca.crt"), "--mqtt-cert", str(pki / "receiver.crt"), "--mqtt-key", str(pki / "receiver.key"), "--mqtt-version", "3.1.1"]
        worker = workers(dsn, f"mqtts://ingest:ingest-pass@127.0.0.1:{broker.port}", extra=tls).ready()
        files = {"tls_ca": str(pki / "ca.crt"), "tls_cert": str(pki / "gateway.crt"), "tls_key": str(pki / "gateway.key"), "mqtt_version": "3.1.1"}
        gateway = gateways("gw-tls", f"mqtts://gw-tls:gw-pass@127.0.0.1:{broker.port}", **files)
        register(dsn, gateway)
        gateway.produce(["inv", "meter"], 30)
        gateway.drain()
        assert server.query(name, "SELECT count(*) AS n FROM fleet_items WHERE gateway = 'gw-tls'")[0]["n"] == 60
        assert worker.metric("egw_ingest_batches_total", via="mqtt", outcome="stored") == 1

        intruder = gateways("gw-bad", f"mqtts://gw-tls:wrong-pass@127.0.0.1:{broker.port}", connect=False, **files)
        intruder.produce(["inv"], 5)
        wait_until(lambda: "refused" in intruder.uploader.link.last_error, timeout=15, what="the broker refusing the password")
        result = intruder.step()
        assert result.outcome == "retry" and "broker refused the connection: Not authorized" in result.error and "wrong-pass" not in result.error
        assert intruder.pending() == 5  # nothing released
        for one in (gateway, intruder):
            one.close()  # while the broker is still there to hear "offline"
    finally:
        broker.close()
