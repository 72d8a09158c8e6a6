"""The credentials a guarded storage asks of the flow, found where Rucio and the grid look for them.

X.509: the proxy in ``X509_USER_PROXY``, else ``/tmp/x509up_u<uid>``; the CAs in ``X509_CERT_DIR``, else
``/etc/grid-security/certificates``. Tokens: the WLCG Bearer Token Discovery order (``BEARER_TOKEN``,
``BEARER_TOKEN_FILE``, ``$XDG_RUNTIME_DIR/bt_u<uid>``, ``/tmp/bt_u<uid>``), looked up at every use and a file
read again only when it changed, so a token or proxy that a sidecar renews is used without a restart.

``[magic-credentials]`` in rucio.cfg sets them for every RSE, ``[magic-credentials:RSE]`` for one (``mechanism``
``none``, ``x509`` or ``token``; ``x509_proxy``, ``ca_dir``, ``token_file`` where a site keeps them elsewhere).
A credential's content never leaves this module: logs, ledger rows and metrics see ``describe()``.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import cast

from rucio_magic_ext.storage.base import AccessRefused

MECHANISMS = ("none", "x509", "token")
#: How long before its end a credential is worth a warning: a grid proxy is renewed hours ahead (voms-proxy-init
#: gives 12 hours), a token minutes ahead (a sidecar renews it at half-life).
WARN_BEFORE = {"x509": timedelta(hours=6), "token": timedelta(minutes=5)}
GRID_CA_DIR = "/etc/grid-security/certificates"
SECTION = "magic-credentials"


def proxy_path(env: Mapping[str, str], uid: int) -> str:
    return env.get("X509_USER_PROXY") or f"/tmp/x509up_u{uid}"


def ca_dir(env: Mapping[str, str]) -> str:
    return env.get("X509_CERT_DIR") or GRID_CA_DIR


def token_places(env: Mapping[str, str], uid: int) -> list[str]:
    """The files the WLCG discovery looks in, in its order, after ``BEARER_TOKEN`` (a value, not a file)."""
    places = [env["BEARER_TOKEN_FILE"]] if env.get("BEARER_TOKEN_FILE") else []
    if env.get("XDG_RUNTIME_DIR"):
        places.append(f"{env['XDG_RUNTIME_DIR']}/bt_u{uid}")
    return [*places, f"/tmp/bt_u{uid}"]


def token_expiry(token: str) -> datetime | None:
    """When a JWT says it expires (read, not verified: the storage verifies it); None for an opaque token."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return datetime.fromtimestamp(int(claims["exp"]), timezone.utc)
    except (ValueError, KeyError, TypeError, binascii.Error, OverflowError):
        return None


def proxy_expiry(pem: bytes) -> datetime | None:
    """When the first certificate of a proxy's chain to expire does; None when the file holds no certificate."""
    from cryptography import x509

    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError:
        return None
    return min(cert.not_valid_after_utc for cert in chain)


@dataclass(frozen=True)
class Found:
    """A credential as found now: its value (a token, or a proxy's path), where it was found, when it ends."""

    value: str = field(repr=False)
    where: str
    expires: datetime | None


class _Files:
    """A file's value and expiry, read again only when its size or mtime moved."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[tuple[int, int], str, datetime | None]] = {}

    def read(self, path: str, token: bool) -> tuple[str, datetime | None] | None:
        try:
            info = os.stat(path)
        except OSError:
            return None
        key = (info.st_size, info.st_mtime_ns)
        seen = self._seen.get(path)
        if seen is None or seen[0] != key:
            try:
                data = Path(path).read_bytes()
            except OSError:
                return None
            value = data.decode("ascii", "replace").strip() if token else path
            seen = (key, value, token_expiry(value) if token else proxy_expiry(data))
            self._seen[path] = seen
        return seen[1], seen[2]


_FILES = _Files()


@dataclass(frozen=True)
class Credentials:
    """What one RSE's storage asks: ``mechanism`` (none, x509, token), the CA folder TLS peers are verified
    against (None: the system's trust), and where a site keeps its proxy or token when not where the grid
    looks (None: discovered at each use)."""

    mechanism: str = "none"
    ca_dir: str | None = None
    proxy: str | None = None
    token_file: str | None = None
    rse: str = ""

    def tls_verify(self) -> str | bool:
        """What requests verifies a server against: the CA folder when there is one, else the system's."""
        return self.ca_dir if self.ca_dir and os.path.isdir(self.ca_dir) else True

    def x509(self, env: Mapping[str, str] | None = None) -> Found:
        """The proxy to present; AccessRefused when it is missing, unreadable or expired."""
        path = self.proxy or proxy_path(os.environ if env is None else env, os.getuid())
        read = _FILES.read(path, token=False)
        if read is None:
            raise self._refused(f"no X.509 proxy at {path}")
        return self._unexpired(Found(read[0], path, read[1]), "X.509 proxy")

    def token(self, env: Mapping[str, str] | None = None) -> Found:
        """The bearer token to present; AccessRefused when none is found or it has expired."""
        env = os.environ if env is None else env
        if not self.token_file and env.get("BEARER_TOKEN", "").strip():
            value = env["BEARER_TOKEN"].strip()
            return self._unexpired(Found(value, "BEARER_TOKEN", token_expiry(value)), "token")
        places = [self.token_file] if self.token_file else token_places(env, os.getuid())
        for place in places:
            read = _FILES.read(place, token=True)
            if read is not None and read[0]:
                return self._unexpired(Found(read[0], place, read[1]), "token")
        raise self._refused(f"no bearer token (looked in {', '.join(places)})")

    def current(self) -> Found | None:
        """The credential the mechanism presents, as found now; None for an open storage."""
        if self.mechanism == "x509":
            return self.x509()
        if self.mechanism == "token":
            return self.token()
        return None

    def describe(self) -> str:
        """What is presented and for how long, never its content: for logs, status and ledger rows."""
        if self.mechanism == "none":
            return "no credential"
        try:
            found = self.current()
        except AccessRefused as refused:
            return refused.strerror or str(refused)
        assert found is not None
        return self._told(found)

    def _told(self, found: Found) -> str:
        kind = "X.509 proxy" if self.mechanism == "x509" else "token"
        return f"{kind} from {found.where}{_left(found.expires)}"

    def outlook(self) -> Outlook:
        """What ``status`` and the gauges say of the credential now: found or not, and how long it lasts."""
        try:
            found = self.current()
        except AccessRefused as refused:
            return Outlook(self.rse, self.mechanism, refused.strerror or str(refused), None, refused.strerror)
        if found is None:
            return Outlook(self.rse, self.mechanism, "no credential", None, None)
        left = None if found.expires is None else found.expires - datetime.now(timezone.utc)
        soon = left is not None and left < WARN_BEFORE[self.mechanism]
        told = self._told(found)  # the credential as read once, not read again to be told
        return Outlook(self.rse, self.mechanism, told, left, f"{told}: renew it before it ends" if soon else None)

    def presented(self) -> Found | None:
        """The credential a storage presents with a request; one missing or expired is counted as refused."""
        try:
            return self.current()
        except AccessRefused:
            self._count()
            raise

    def refused(self, why: str, path: str = "") -> AccessRefused:
        """The storage's refusal, told with the credential that was presented, and counted."""
        self._count()
        return self._refused(f"{why} ({self.describe()})", path)

    def _count(self) -> None:
        from rucio_magic_ext import monitoring

        monitoring.storage_refused(self.rse or "-", self.mechanism)

    def _unexpired(self, found: Found, kind: str) -> Found:
        if found.expires is not None and found.expires <= datetime.now(timezone.utc):
            raise self._refused(f"the {kind} from {found.where} expired at {found.expires:%Y-%m-%d %H:%M:%S} UTC")
        return found

    def _refused(self, why: str, path: str = "") -> AccessRefused:
        at = f"{self.rse}: " if self.rse else ""
        return AccessRefused(errno.EACCES, f"{at}{why}", path)


@dataclass(frozen=True)
class Outlook:
    """A credential as ``status`` tells it: ``told`` (never its content), the time it has left when known,
    and a ``warning`` when it is missing, refused or about to end."""

    rse: str
    mechanism: str
    told: str
    left: timedelta | None
    warning: str | None


def _left(expires: datetime | None) -> str:
    if expires is None:
        return ""
    left = expires - datetime.now(timezone.utc)
    return f", {_duration(left)} left" if left > timedelta(0) else ", expired"


def _duration(left: timedelta) -> str:
    minutes = int(left.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h" if minutes < 48 * 60 else f"{minutes // 1440} days"


OPEN = Credentials()


@cache
def for_rse(rse: str) -> Credentials:
    """The credentials of ``[magic-credentials:RSE]``, else ``[magic-credentials]``; open when neither is there."""
    from rucio.common.config import config_get, config_has_section

    from rucio_magic_ext.settings import ConfigError, rucio_cfg, setting

    def read(section: str, option: str, **kwargs: object) -> str:  # the file's word, not the database's table
        return cast(str, config_get(section, option, check_config_table=False, **kwargs))

    section = f"{SECTION}:{rse}"
    if not (config_has_section(section) or config_has_section(SECTION)):
        return Credentials(ca_dir=ca_dir(os.environ), rse=rse)
    mechanism = setting(read, section, "mechanism", "none", SECTION).strip().lower()
    if mechanism not in MECHANISMS:
        where = section if config_has_section(section) else SECTION
        raise ConfigError(f"{rucio_cfg()}: [{where}] mechanism = {mechanism}: one of {', '.join(MECHANISMS)}")
    return Credentials(
        mechanism=mechanism,
        ca_dir=setting(read, section, "ca_dir", "", SECTION) or ca_dir(os.environ),
        proxy=setting(read, section, "x509_proxy", "", SECTION) or None,
        token_file=setting(read, section, "token_file", "", SECTION) or None,
        rse=rse,
    )
