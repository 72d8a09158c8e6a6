"""Credentials are found where the grid looks, read again when renewed, refused when missing or expired, and
never told by their content: what a log or a ledger row sees is where they were found and how long they last."""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rucio_magic_ext.failures import Outage
from rucio_magic_ext.storage.base import AccessRefused, StorageUnavailable
from rucio_magic_ext.storage.credentials import (
    GRID_CA_DIR,
    Credentials,
    ca_dir,
    for_rse,
    proxy_expiry,
    proxy_path,
    token_expiry,
    token_places,
)


def jwt(expires_in: timedelta, scope: str = "storage.read:/") -> str:
    """A token shaped as WLCG's (unsigned here: the storage, not the flow, verifies signatures)."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    exp = int((datetime.now(timezone.utc) + expires_in).timestamp())
    return f"{part({'alg': 'ES256'})}.{part({'exp': exp, 'scope': scope, 'wlcg.ver': '1.0'})}.c2lnbmF0dXJl"


def proxy(folder: Path, expires_in: timedelta) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "magic operator")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - timedelta(days=2)).not_valid_after(now + expires_in)
        .sign(key, hashes.SHA256())
    )
    path = folder / "x509up"
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key_pem)
    return path


def test_the_grid_places_in_their_order() -> None:
    assert proxy_path({}, 1000) == "/tmp/x509up_u1000"
    assert proxy_path({"X509_USER_PROXY": "/run/proxy"}, 1000) == "/run/proxy"
    assert ca_dir({}) == GRID_CA_DIR and ca_dir({"X509_CERT_DIR": "/opt/cas"}) == "/opt/cas"
    assert token_places({}, 7) == ["/tmp/bt_u7"]
    env = {"BEARER_TOKEN_FILE": "/run/token", "XDG_RUNTIME_DIR": "/run/user/7"}
    assert token_places(env, 7) == ["/run/token", "/run/user/7/bt_u7", "/tmp/bt_u7"]


def test_a_token_in_the_environment_comes_before_any_file(tmp_path: Path) -> None:
    file = tmp_path / "bt"
    file.write_text(jwt(timedelta(hours=1)))
    found = Credentials("token").token({"BEARER_TOKEN": "opaque-value", "BEARER_TOKEN_FILE": str(file)})
    assert (found.value, found.where, found.expires) == ("opaque-value", "BEARER_TOKEN", None)
    found = Credentials("token").token({"BEARER_TOKEN_FILE": str(file)})
    assert found.where == str(file) and found.expires is not None


def test_a_renewed_token_file_is_read_again_without_a_restart(tmp_path: Path) -> None:
    file = tmp_path / "bt"
    first, second = jwt(timedelta(minutes=5)), jwt(timedelta(hours=2), "storage.read:/ storage.modify:/")
    file.write_text(first + "\n")
    credentials = Credentials("token", token_file=str(file))
    assert credentials.token({}).value == first
    file.write_text(second + "\n")  # a sidecar renews it
    os.utime(file, ns=(0, file.stat().st_mtime_ns + 1_000_000))
    assert credentials.token({}).value == second


def test_a_missing_or_expired_credential_is_refused_naming_the_rse_and_where_it_was_looked_for(tmp_path: Path) -> None:
    expired = tmp_path / "expired"
    expired.write_text(jwt(timedelta(minutes=-1)))
    with pytest.raises(AccessRefused, match=r"PIC-DISK: the token from .*expired expired at"):
        Credentials("token", token_file=str(expired), rse="PIC-DISK").token({})
    with pytest.raises(AccessRefused, match=r"PIC-DISK: no bearer token \(looked in /nowhere/bt_u"):
        Credentials("token", rse="PIC-DISK").token({"XDG_RUNTIME_DIR": "/nowhere", "BEARER_TOKEN_FILE": ""})
    with pytest.raises(AccessRefused, match=r"ORM-ONSITE: no X\.509 proxy at /nowhere/x509up"):
        Credentials("x509", proxy="/nowhere/x509up", rse="ORM-ONSITE").x509({})
    old = proxy(tmp_path, timedelta(minutes=-5))
    with pytest.raises(AccessRefused, match=r"the X\.509 proxy from .* expired at"):
        Credentials("x509", proxy=str(old)).x509({})
    refused = AccessRefused(13, "x", "p")
    assert isinstance(refused, StorageUnavailable) and isinstance(refused, Outage)  # the work waits, no file marked


def test_what_is_told_of_a_credential_never_holds_its_content(tmp_path: Path) -> None:
    token = jwt(timedelta(hours=3))
    file = tmp_path / "bt"
    file.write_text(token)
    told = Credentials("token", token_file=str(file), rse="PIC-DISK").describe()
    assert told == f"token from {file}, 179 min left" or told == f"token from {file}, 2 h left"
    assert token not in told and token.split(".")[1] not in told
    refusal = Credentials("token", token_file=str(file), rse="PIC-DISK").refused("GET answered 403 Forbidden")
    assert token.split(".")[1] not in str(refusal) and "PIC-DISK" in str(refusal) and str(file) in str(refusal)
    inline = Credentials("token")
    os.environ["BEARER_TOKEN"] = "opaque-secret"
    try:
        assert inline.describe() == "token from BEARER_TOKEN" and "opaque-secret" not in repr(inline.token())
    finally:
        del os.environ["BEARER_TOKEN"]


def test_expiry_is_read_from_the_token_and_from_every_certificate_of_the_proxy(tmp_path: Path) -> None:
    assert token_expiry("opaque") is None and token_expiry("a.not-base64!.c") is None
    left = token_expiry(jwt(timedelta(hours=1))) - datetime.now(timezone.utc)
    assert timedelta(minutes=59) < left <= timedelta(hours=1)
    path = proxy(tmp_path, timedelta(hours=12))
    left = proxy_expiry(path.read_bytes()) - datetime.now(timezone.utc)
    assert timedelta(hours=11) < left <= timedelta(hours=12)
    assert proxy_expiry(b"not a certificate") is None


def test_rucio_cfg_gives_each_rse_its_mechanism_with_one_line_for_a_wrong_one(tmp_path: Path, monkeypatch) -> None:
    from rucio.common import config as rucio_config

    from rucio_magic_ext.settings import ConfigError

    cfg = tmp_path / "rucio.cfg"
    cfg.write_text(
        "[magic-credentials]\nmechanism = x509\nca_dir = /opt/cas\n\n"
        "[magic-credentials:PIC-DISK]\nmechanism = token\ntoken_file = /run/pic-token\n\n"
        "[magic-credentials:BROKEN]\nmechanism = kerberos\n"
    )
    monkeypatch.setenv("RUCIO_CONFIG", str(cfg))
    rucio_config.clean_cached_config()
    for_rse.cache_clear()
    try:
        assert for_rse("ORM-ONSITE") == Credentials("x509", "/opt/cas", None, None, "ORM-ONSITE")
        assert for_rse("PIC-DISK") == Credentials("token", "/opt/cas", None, "/run/pic-token", "PIC-DISK")
        with pytest.raises(ConfigError, match=r"\[magic-credentials:BROKEN\] mechanism = kerberos: one of none"):
            for_rse("BROKEN")
    finally:
        monkeypatch.undo()
        rucio_config.clean_cached_config()
        for_rse.cache_clear()


def test_status_warns_of_a_credential_about_to_end_or_missing(tmp_path: Path) -> None:
    assert Credentials("x509", proxy=str(proxy(tmp_path, timedelta(hours=11)))).outlook().warning is None
    soon = Credentials("x509", proxy=str(proxy(tmp_path, timedelta(hours=2))), rse="ORM-ONSITE").outlook()
    assert soon.warning and "renew it before it ends" in soon.warning and soon.left < timedelta(hours=2)
    file = tmp_path / "bt"
    file.write_text(jwt(timedelta(minutes=3)))
    assert "renew it" in (Credentials("token", token_file=str(file)).outlook().warning or "")
    gone = Credentials("token", token_file=str(tmp_path / "none"), rse="PIC-DISK").outlook()
    assert gone.left is None and "no bearer token" in (gone.warning or "")
    assert Credentials().outlook().warning is None


def test_a_refusal_is_counted_when_a_storage_presents_not_when_status_describes(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    def counted() -> float:
        labels = {"rse": "PIC-DISK", "mechanism": "token"}
        return REGISTRY.get_sample_value("magic_storage_refused_total", labels) or 0.0

    missing = Credentials("token", token_file=str(tmp_path / "none"), rse="PIC-DISK")
    before = counted()
    missing.outlook()
    missing.describe()
    assert counted() == before
    with pytest.raises(AccessRefused):
        missing.presented()
    assert counted() == before + 1
    missing.refused("GET answered 403 Forbidden")
    assert counted() == before + 2
