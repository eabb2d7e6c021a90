"""OCPP over TLS is all or nothing: half a TLS configuration never serves plain ws://.

Chargers send their credentials (Basic auth, security profile 2) on the handshake, so
a gateway that falls back to ws:// because only the certificate or only the key was set
leaks them while the installer believes TLS is on.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from actors.ocpp.server import ListenerSettings
from tests.supervisor.test_config_errors import assert_config_error, egw, write


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egw.local")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def test_only_the_certificate_refuses_to_start_naming_the_missing_key(tmp_path, gateway_env):
    cert, _ = self_signed(tmp_path)
    path = write(tmp_path, f'ocpp_tls_cert = "{cert}"\n')
    result = egw(gateway_env, "run", "--config", str(path))
    assert_config_error(result, f"{path}: ocpp_tls_key: missing: ocpp_tls_cert is set ({cert}) but TLS also needs the private key (ocpp_tls_key / EGW_OCPP_TLS_KEY)")


def test_only_the_key_refuses_to_start_naming_the_missing_certificate(tmp_path, gateway_env):
    _, key = self_signed(tmp_path)
    result = egw(dict(gateway_env, EGW_OCPP_TLS_KEY=str(key)), "run")
    assert_config_error(result, "EGW_OCPP_TLS_KEY: ocpp_tls_cert: missing: ocpp_tls_key is set but TLS also needs the certificate (ocpp_tls_cert / EGW_OCPP_TLS_CERT)")


def test_a_missing_or_unloadable_file_is_named(tmp_path, gateway_env):
    cert, key = self_signed(tmp_path)
    gone = tmp_path / "gone.pem"
    result = egw(dict(gateway_env, EGW_OCPP_TLS_CERT=str(cert), EGW_OCPP_TLS_KEY=str(gone)), "run")
    assert_config_error(result, f"EGW_OCPP_TLS_KEY: ocpp_tls_key: no such file: {gone}")

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    result = egw(dict(gateway_env, EGW_OCPP_TLS_CERT=str(garbage), EGW_OCPP_TLS_KEY=str(key)), "run")
    assert_config_error(result)
    [line] = result.stderr.splitlines()
    assert line.startswith(f"egw: configuration error: EGW_OCPP_TLS_CERT: ocpp_tls_cert: {garbage} with key {key} does not load as a PEM certificate and its private key: ")


def test_a_complete_pair_checks_ok_and_is_served_as_wss(tmp_path, gateway_env):
    cert, key = self_signed(tmp_path)
    path = write(tmp_path, f'ocpp_tls_cert = "{cert}"\nocpp_tls_key = "{key}"\n')
    result = egw(gateway_env, "config", "--check", str(path))
    assert result.returncode == 0, result.stderr
    assert f"OCPP on wss://0.0.0.0:{gateway_env['EGW_OCPP_PORT']}" in result.stdout
    assert ListenerSettings(tls_cert=str(cert), tls_key=str(key)).ssl_context() is not None


@pytest.mark.parametrize("given", ["tls_cert", "tls_key"])
def test_the_listener_itself_never_falls_back_to_plain_ws(tmp_path, given):
    """Defence in depth for a listener config built without `egw run` (tests, plugins)."""
    cert, key = self_signed(tmp_path)
    settings = ListenerSettings(**{given: str(cert if given == "tls_cert" else key)})
    with pytest.raises(ValueError, match="needs both tls_cert and tls_key"):
        settings.ssl_context()
