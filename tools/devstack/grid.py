"""The credentials of a guarded storage, all made inside one folder for one run: a grid in miniature.

    grid = Grid.make(folder)          # CA directory, host/user certificates, VOMS proxies, token issuer
    grid.proxy                        # an RFC 3820 proxy of the user with the VOMS attributes of VO `magic`
    grid.mint_token()                 # a WLCG token with storage.read:/ storage.modify:/ storage.create:/
    grid.oidc_options(folder / "idpsecrets.json")  # Rucio's [oidc] options: its client of the issuer
    grid.ca_bundle()                  # the system's CA bundle with the run's CA, for REQUESTS_CA_BUNDLE
    grid.stop()                       # stops the issuer's HTTPS server

The CA directory is laid out as grid tools expect (`<hash>.0`, `<hash>.signing_policy`, `<hash>.namespaces`),
the host certificate names 127.0.0.1 and localhost, the proxies are made by `voms-proxy-fake` (voms-clients) with a
VOMS server certificate of the run's CA, so that no VOMS server is needed; a server checks them against the
run's `vomsdir`. A second CA, unknown to the run's clients, signs `rogue_cert` (a host certificate for 127.0.0.1)
and `rogue_user_cert`; `rogue_ca_dir` trusts both CAs, for a server that shows the rogue certificate. The token
issuer is a small HTTPS server (a thread, on the run's host certificate) that serves
`/.well-known/openid-configuration` and the JWKS of its EC key, as an OIDC provider does; tokens are signed ES256.
Its `token_endpoint` grants tokens to one client (`client_id`, `client_secret`) by the `client_credentials` grant,
with the audience and scope the client asks, as a site's IAM does for Rucio's reaper (`rucio.core.oidc.request_token`,
configured by `[oidc] idpsecrets` and `admin_issuer`: `oidc_options`). Rucio checks the issuer's certificate with
`requests`, which trusts REQUESTS_CA_BUNDLE: `ca_bundle` is the system's bundle with the run's CA.
The host certificate's CN is localhost: GSI matches the CN (not the SAN) against the URL's host, so root:// clients
of a server at 127.0.0.1 set XrdSecGSISRVNAMES=localhost (`x509_env`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import http.server
import ipaddress
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VO = "magic"
FQAN = f"/{VO}/Role=NULL/Capability=NULL"
#: The audience the servers accept and `mint_token` writes by default.
AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"
FULL_SCOPE = "storage.read:/ storage.modify:/ storage.create:/"
#: The key of the issuer in Rucio's idpsecrets file (`[oidc] admin_issuer`), and the client Rucio is to the issuer.
RUCIO_ISSUER_ID = "magic"
CLIENT_ID = "rucio"
#: Seconds a token of the token endpoint lives (WLCG: 5 minutes to 6 hours).
GRANT_LIFETIME = 1200
#: The CA bundle of the system: what `requests` (REQUESTS_CA_BUNDLE here) and libcurl trust.
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PACKAGES = ("openssl", "voms-clients")
#: The host certificate's SAN: XRootD names a loopback peer ::ffff:127.0.0.1 (as a server's third-party copy does).
HOST_NAMES = ("127.0.0.1", "::ffff:127.0.0.1", "::1", "localhost")
_HOUR = datetime.timedelta(hours=1)
_DAY = datetime.timedelta(days=1)


class GridError(RuntimeError):
    """A credential could not be made; the message says which and why."""


def missing() -> str | None:
    """Why a grid cannot be made here (openssl or voms-proxy-fake absent), or None when it can."""
    absent = [name for name in ("openssl", "voms-proxy-fake") if shutil.which(name) is None]
    return f"{', '.join(absent)} not found: apt-get install {' '.join(PACKAGES)}" if absent else None


def _name(common_name: str, *units: str) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COUNTRY_NAME, "ES"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MAGIC")]
    parts += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit) for unit in units]
    return x509.Name([*parts, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _openssl_dn(name: x509.Name) -> str:
    """The name as grid files write it: /C=ES/O=MAGIC/CN=..."""
    return "".join(f"/{attribute.rfc4514_attribute_name}={attribute.value}" for attribute in name)


def _write_key(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o400)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


@dataclasses.dataclass
class _Authority:
    name: x509.Name
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str) -> _Authority:
        key = rsa.generate_private_key(65537, 2048)
        name = _name(common_name)
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - _HOUR).not_valid_after(now + 30 * _DAY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return cls(name, key, cert)

    def issue(self, subject: x509.Name, usage: list[x509.ObjectIdentifier],
              hosts: tuple[str, ...] = ()) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        key = rsa.generate_private_key(65537, 2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - _HOUR).not_valid_after(now + 7 * _DAY)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                                  critical=False))
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


#: What a POST handler answers: HTTP status and JSON body, from the form fields and the Authorization header.
PostHandler = Callable[[dict[str, str], str], tuple[int, dict[str, object]]]


class _IssuerHandler(http.server.BaseHTTPRequestHandler):
    documents: dict[str, bytes] = {}
    posts: dict[str, PostHandler] = {}

    def do_GET(self) -> None:
        body = self.documents.get(self.path.split("?")[0])
        self._answer(200 if body else 404, body or b"")

    def do_POST(self) -> None:
        handler = self.posts.get(self.path.split("?")[0])
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        if handler is None:
            self._answer(404, b"")
            return
        status, answer = handler(form, self.headers.get("Authorization", ""))
        self._answer(status, json.dumps(answer).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_https(cert: Path, key: Path, documents: dict[str, bytes], port: int = 0,
                posts: dict[str, PostHandler] | None = None) -> http.server.HTTPServer:
    """An HTTPS server on 127.0.0.1 in a daemon thread that answers GET of `documents` (path -> JSON body) and
    POST of `posts` (path -> handler of the form)."""
    handler = type("Handler", (_IssuerHandler,), {"documents": documents, "posts": posts or {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="token-issuer", daemon=True).start()
    return server


@dataclasses.dataclass
class Grid:
    """The paths of one run's credentials (all under `folder`) and its token issuer."""

    folder: Path
    ca_dir: Path
    ca_cert: Path
    host_cert: Path
    host_key: Path
    user_cert: Path
    user_key: Path
    user_dn: str
    proxy: Path
    expired_proxy: Path
    vomsdir: Path
    rogue_cert: Path
    rogue_key: Path
    rogue_ca_dir: Path
    rogue_user_cert: Path
    rogue_user_key: Path
    issuer_key: Path
    issuer: str = ""
    client_id: str = CLIENT_ID
    client_secret: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    #: (audience, scope) of every token the token endpoint granted, in order.
    grants: list[tuple[str, str]] = dataclasses.field(default_factory=list, repr=False)
    _server: http.server.HTTPServer | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def make(cls, folder: Path, issuer: bool = True) -> Grid:
        """Make every credential under `folder` (created) and, unless `issuer` is False, start the token issuer."""
        reason = missing()
        if reason:
            raise GridError(reason)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
        ca_dir = folder / "certificates"
        ca_dir.mkdir(exist_ok=True)
        ca = _Authority.create("MAGIC Test CA")
        ca_cert = ca_dir / "magic-test-ca.pem"
        _write_cert(ca_cert, ca.cert)
        _link_hashed(ca_cert, _openssl_dn(ca.name))

        server = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        paths: dict[str, Path] = {}
        for label, subject, usage, hosts, authority in (
                ("host", _name("localhost", "Hosts"), server, HOST_NAMES, ca),
                ("user", _name("Magic Tester", "Users"), [ExtendedKeyUsageOID.CLIENT_AUTH], (), ca),
                ("voms", _name("voms.magic.test", "Hosts"), server, ("voms.magic.test",), ca)):
            key, cert = authority.issue(subject, usage, hosts)
            _write_key(paths.setdefault(f"{label}_key", folder / f"{label}key.pem"), key)
            _write_cert(paths.setdefault(f"{label}_cert", folder / f"{label}cert.pem"), cert)
        rogue = _Authority.create("Unknown CA")
        rogue_ca_dir = folder / "certificates-rogue"  # what a server with a rogue certificate trusts: both CAs
        rogue_ca_dir.mkdir(exist_ok=True)
        for authority, file in ((ca, "magic-test-ca.pem"), (rogue, "unknown-ca.pem")):
            _write_cert(rogue_ca_dir / file, authority.cert)
            _link_hashed(rogue_ca_dir / file, _openssl_dn(authority.name))
        for label, subject, usage, hosts in (
                ("rogue", _name("localhost", "Hosts"), server, HOST_NAMES),
                ("rogue_user", _name("Magic Tester", "Users"), [ExtendedKeyUsageOID.CLIENT_AUTH], ())):
            key, cert = rogue.issue(subject, usage, hosts)
            _write_key(paths.setdefault(f"{label}_key", folder / f"{label}key.pem"), key)
            _write_cert(paths.setdefault(f"{label}_cert", folder / f"{label}cert.pem"), cert)

        vomsdir = folder / "vomsdir"
        (vomsdir / VO).mkdir(parents=True, exist_ok=True)
        voms_name = x509.load_pem_x509_certificate(paths["voms_cert"].read_bytes()).subject
        (vomsdir / VO / "voms.magic.test.lsc").write_text(f"{_openssl_dn(voms_name)}\n{_openssl_dn(ca.name)}\n")
        (vomsdir / VO).chmod(0o755)
        vomsdir.chmod(0o755)

        issuer_key = folder / "issuer.key"
        _write_key(issuer_key, ec.generate_private_key(ec.SECP256R1()))
        grid = cls(folder=folder, ca_dir=ca_dir, ca_cert=ca_cert, host_cert=paths["host_cert"],
                   host_key=paths["host_key"], user_cert=paths["user_cert"], user_key=paths["user_key"],
                   user_dn=_openssl_dn(_name("Magic Tester", "Users")), proxy=folder / "proxy.pem",
                   expired_proxy=folder / "proxy-expired.pem", vomsdir=vomsdir, rogue_cert=paths["rogue_cert"],
                   rogue_key=paths["rogue_key"], rogue_ca_dir=rogue_ca_dir, rogue_user_cert=paths["rogue_user_cert"],
                   rogue_user_key=paths["rogue_user_key"], issuer_key=issuer_key)
        grid._fake_proxy(grid.proxy, paths, hours=12)
        grid._fake_proxy(grid.expired_proxy, paths, hours=1, past="7200")
        if issuer:
            grid.start_issuer()
        return grid

    def _fake_proxy(self, out: Path, paths: dict[str, Path], hours: int, past: str | None = None) -> None:
        """An RFC proxy of the user with an attribute certificate of VO `magic` signed by the run's VOMS cert."""
        command = ["voms-proxy-fake", "-q", "-rfc", "-bits", "2048", "-cert", str(self.user_cert),
                   "-key", str(self.user_key), "-certdir", str(self.ca_dir), "-out", str(out),
                   "-hours", str(hours), "-vomslife", str(hours), "-voms", VO, "-uri", "voms.magic.test:15000",
                   "-hostcert", str(paths["voms_cert"]), "-hostkey", str(paths["voms_key"]), "-fqan", FQAN]
        if past:
            command += ["-pastproxy", past, "-pastac", past]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0 or not out.exists():
            raise GridError(f"voms-proxy-fake failed ({result.returncode}): {result.stderr or result.stdout}")
        out.chmod(0o600)

    # The token issuer -------------------------------------------------------------------------------------------

    def start_issuer(self, port: int = 0) -> str:
        """Serve the issuer's openid-configuration, JWKS and token endpoint over HTTPS; returns (and keeps) its
        URL."""
        if self._server is not None:
            return self.issuer
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
            port = sock.getsockname()[1]
        self.issuer = f"https://127.0.0.1:{port}"
        numbers = self._issuer_private_key().public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.key_id,
               "x": _b64(numbers.x.to_bytes(32, "big")), "y": _b64(numbers.y.to_bytes(32, "big"))}
        documents = {
            "/.well-known/openid-configuration": json.dumps(
                {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks", "token_endpoint": f"{self.issuer}/token",
                 "grant_types_supported": ["client_credentials"]}).encode(),
            "/jwks": json.dumps({"keys": [jwk]}).encode(),
        }
        self._server = serve_https(self.host_cert, self.host_key, documents, port, {"/token": self._grant})
        return self.issuer

    def _grant(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, object]]:
        """The token endpoint: a token with the asked audience and scope for the known client (HTTP basic auth),
        by the client_credentials grant only; 401 for another client or a wrong secret."""
        known = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if not secrets.compare_digest(authorization.encode(), f"Basic {known}".encode()):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        scope, audience = form.get("scope") or FULL_SCOPE, form.get("audience") or AUDIENCE
        token = self.mint_token(scope=scope, audience=audience, lifetime=GRANT_LIFETIME, subject=self.client_id)
        self.grants.append((audience, scope))
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": GRANT_LIFETIME, "scope": scope}

    def oidc_options(self, idpsecrets: Path, client_secret: str | None = None) -> dict[str, str]:
        """Write Rucio's `idpsecrets` file (its client of the run's issuer: rucio/core/oidc.py reads `issuer`,
        `client_id` and `client_secret` under the key `admin_issuer`) and return the [oidc] options of a rucio.cfg
        that uses it; `client_secret` writes another secret (which the issuer refuses)."""
        if not self.issuer:
            raise GridError("the token issuer is not started (start_issuer)")
        client = {"issuer": self.issuer, "client_id": self.client_id,
                  "client_secret": self.client_secret if client_secret is None else client_secret}
        idpsecrets = Path(idpsecrets)
        idpsecrets.write_text(json.dumps({RUCIO_ISSUER_ID: client}, indent=2) + "\n")
        idpsecrets.chmod(0o600)
        return {"idpsecrets": str(idpsecrets), "admin_issuer": RUCIO_ISSUER_ID}

    def ca_bundle(self) -> Path:
        """The system's CA bundle with the run's CA added (made once, in the grid's folder): REQUESTS_CA_BUNDLE
        of a process whose `requests` must trust the issuer and the servers as well as public sites."""
        bundle = self.folder / "ca-bundle.crt"
        if not bundle.exists():
            system = SYSTEM_CA_BUNDLE.read_bytes() if SYSTEM_CA_BUNDLE.exists() else b""
            bundle.write_bytes(system + b"\n" + self.ca_cert.read_bytes())
            bundle.chmod(0o644)
        return bundle

    def stop(self) -> None:
        """Stop the token issuer."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def key_id(self) -> str:
        return "magic-test"

    def _issuer_private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.issuer_key.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def mint_token(self, scope: str = FULL_SCOPE, audience: str = AUDIENCE, lifetime: float = 600,
                   subject: str = "magic-tester", issuer: str | None = None, **claims: object) -> str:
        """A WLCG token (profile 1.0) signed by the run's issuer; a negative `lifetime` gives an expired one."""
        now = int(time.time())
        payload = {"wlcg.ver": "1.0", "iss": issuer or self.issuer, "sub": subject, "aud": audience,
                   "scope": scope, "iat": now - 60 if lifetime > 0 else now + int(lifetime) - 60,
                   "nbf": now - 60 if lifetime > 0 else now + int(lifetime) - 60,
                   "exp": now + int(lifetime), "jti": str(uuid.uuid4()), **claims}
        header = {"alg": "ES256", "typ": "JWT", "kid": self.key_id}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
        r, s = decode_dss_signature(self._issuer_private_key().sign(signing_input.encode(),
                                                                    ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def write_token(self, path: Path, token: str) -> Path:
        """Write a token to a file readable only by its owner (as BEARER_TOKEN_FILE wants); returns the path."""
        path = Path(path)
        path.write_text(token + "\n")
        path.chmod(0o600)
        return path

    # What clients use -------------------------------------------------------------------------------------------

    def x509_env(self, proxy: Path | None = None) -> dict[str, str]:
        """The environment of a root:// (GSI) client with the run's proxy (or `proxy`), trusting the run's CA."""
        # XrdSecGSISRVNAMES: GSI (5.5 and the pip client 6) matches the server certificate's CN, not its SAN,
        # against the host of the URL; the run's host certificate is CN=localhost, a server's URL names 127.0.0.1.
        return {"X509_CERT_DIR": str(self.ca_dir), "X509_USER_PROXY": str(proxy or self.proxy),
                "XrdSecPROTOCOL": "gsi", "XrdSecGSISRVNAMES": "localhost"}

    def token_env(self, token_file: Path) -> dict[str, str]:
        """The environment of a root:// (ztn) client reading its token from `token_file`."""
        return {"X509_CERT_DIR": str(self.ca_dir), "BEARER_TOKEN_FILE": str(token_file), "XrdSecPROTOCOL": "ztn"}


def _link_hashed(ca_cert: Path, dn: str) -> None:
    """`<hash>.0`, `<hash>.signing_policy` and `<hash>.namespaces` next to the CA's file, for both subject hashes."""
    for option in ("-subject_hash", "-subject_hash_old"):
        digest = subprocess.run(["openssl", "x509", "-noout", option, "-in", str(ca_cert)], check=True,
                                capture_output=True, text=True).stdout.strip()
        link = ca_cert.parent / f"{digest}.0"
        if not link.exists():
            os.symlink(ca_cert.name, link)
        (ca_cert.parent / f"{digest}.signing_policy").write_text(
            f"access_id_CA X509 '{dn}'\npos_rights globus CA:sign\ncond_subjects globus '\"/C=ES/O=MAGIC/*\"'\n")
        (ca_cert.parent / f"{digest}.namespaces").write_text(
            f"TO Issuer \"{dn}\" \\\n  PERMIT Subject \"/C=ES/O=MAGIC/.*\"\n")
