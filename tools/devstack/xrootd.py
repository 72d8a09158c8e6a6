"""A real XRootD server for a storage element of the stack: root:// and WebDAV (HTTP) on its own ports.

    server = XrootdServer("pic", state_dir / "xrootd-pic", port=free_port(), http_port=free_port())
    server.start()            # waits until root:// and HTTP both answer
    server.root_url           # root://127.0.0.1:PORT  (a file is root://127.0.0.1:PORT//path)
    server.http_url           # http://127.0.0.1:HTTP_PORT
    server.data               # the folder that the server's '/' maps to
    server.stop()

Debian's `xrootd-server`, `xrootd-client` and `xrootd-server-plugins` (5.5) provide everything: the server
refuses to run as root, so under root it runs as `nobody` (or any unprivileged user) through `setpriv`,
which execs in place and so keeps one pid and one process group for `processes.stop`. The server answers
adler32 checksums itself (`xrootd.chksum`), serves WebDAV through `libXrdHttp` and accepts root://
third-party copies (`ofs.tpc`, run by `xrdcp --server`). Its log, pid file, admin files and data all live
under its state folder, so two servers (an observatory and a data centre) run side by side.

A server may be guarded as a site guards its storage, with the credentials of a `grid.Grid` (`auth`):

    grid = Grid.make(folder)
    XrootdServer("pic", state, port, http_port, auth="x509", grid=grid)   # TLS, GSI + VOMS, client certificates
    XrootdServer("pic", state, port, http_port, auth="token", grid=grid)  # TLS, ztn + SciTokens, bearer tokens

Both require TLS on root:// (`xrootd.tls all`: a client must use roots://, or root:// with TLS) and serve HTTPS
on the HTTP port; an anonymous client is refused by the authorisation (`acc.authdb`, which grants nothing but to
VO `magic` in x509 mode, nothing at all in token mode, where the token's scopes decide).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from . import processes

if TYPE_CHECKING:
    from .grid import Grid

PACKAGES = ("xrootd-server", "xrootd-client", "xrootd-server-plugins")
HTTP_PLUGIN = "libXrdHttp-5.so"
#: What a guarded server needs beyond PACKAGES: per `auth`, (plugin file, Debian package).
AUTH_PLUGINS = {
    "x509": (("libXrdSecgsi-5.so", "xrootd-plugins"), ("libXrdVoms-5.so", "xrootd-voms-plugins")),
    "token": (("libXrdSecztn-5.so", "xrootd-plugins"), ("libXrdAccSciTokens-5.so", "xrootd-scitokens-plugins")),
}
AUTH_MODES = ("none", "x509", "token")
#: The CA bundle of the system, which the SciTokens plugin (libcurl) trusts when it fetches an issuer's keys.
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PLUGIN_DIRS = (Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"), Path("/usr/lib64"),
               Path("/usr/lib"))
#: The account a server started by root runs as.
UNPRIVILEGED_USER = "nobody"


class XrootdError(RuntimeError):
    """The server could not be started or did not answer; the message says why and where its log is."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _has_plugin(name: str) -> bool:
    return any((folder / name).exists() for folder in PLUGIN_DIRS)


def missing(auth: str = "none") -> str | None:
    """Why an XRootD server (guarded as `auth` says) cannot run here, or None when it can."""
    absent = [name for name in ("xrootd", "xrdfs", "xrdcp") if shutil.which(name) is None]
    if not _has_plugin(HTTP_PLUGIN):
        absent.append(HTTP_PLUGIN)
    if absent:
        return f"{', '.join(absent)} not found: apt-get install {' '.join(PACKAGES)}"
    plugins = [(name, package) for name, package in AUTH_PLUGINS.get(auth, ()) if not _has_plugin(name)]
    if plugins:
        return (f"{', '.join(name for name, _ in plugins)} not found: "
                f"apt-get install {' '.join(sorted({package for _, package in plugins}))}")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv not found (to run xrootd unprivileged under root): apt-get install util-linux"
    return None


#: The observatory's root:// door is Rucio's gfal protocol (etc/site-xrootd.cfg): gfal2's module and XRootD plugin.
GFAL_PACKAGES = ("python3-gfal2", "gfal2-plugin-xrootd")


def gfal_missing() -> str | None:
    """Why Rucio's gfal protocol cannot reach a root:// door from this Python, or None when it can."""
    if importlib.util.find_spec("gfal2") is None or not _has_plugin("gfal2-plugins/libgfal_plugin_xrootd.so"):
        return (f"Rucio's gfal protocol reaches the observatory's root:// door with gfal2 and its XRootD plugin: "
                f"apt-get install {' '.join(GFAL_PACKAGES)} (tools/devstack check links gfal2 into .venv)")
    return None


def _account(user: str | None) -> pwd.struct_passwd | None:
    """The account to run as: `user`, else nobody when we are root (xrootd refuses root), else ourselves (None)."""
    if user is None and os.geteuid() != 0:
        return None
    return pwd.getpwnam(user or UNPRIVILEGED_USER)


def _reachable_by(path: Path, account: pwd.struct_passwd) -> bool:
    """True when every folder above `path` lets the account traverse it (owned by it, or open to others)."""
    for folder in path.resolve().parents:
        info = folder.stat()
        if info.st_uid == account.pw_uid:
            continue
        if not info.st_mode & 0o001:
            return False
    return True


@dataclasses.dataclass
class XrootdServer:
    """One XRootD server: root:// on `port`, HTTP/WebDAV on `http_port`, files under `state/data`.

    `checksum`: the algorithm the server computes (None: no server-side checksum, as on a storage
    without it); `tpc`: whether it accepts root:// third-party copies as a destination. `unix_auth`: clients
    identify with the unix protocol; False asks no authentication at all (loopback only), which Rucio's own
    xrootd protocol needs here: it runs xrdfs and xrdcp with XrdSecPROTOCOL=gsi (ztn with a token), and a server
    that offers only unix refuses them ("No protocols left to try").

    `auth` guards the server with the credentials of `grid` (see the module's text): "none" (open, as above),
    "x509" or "token"; `unix_auth` is then ignored.
    """

    name: str
    state: Path
    port: int
    http_port: int
    checksum: str | None = "adler32"
    tpc: bool = True
    user: str | None = None
    host: str = "127.0.0.1"
    unix_auth: bool = True
    auth: str = "none"
    grid: Grid | None = None
    netns: str | None = None  # a network namespace to run in (link.py: the observatory's), reached at `host`

    def __post_init__(self) -> None:
        if self.auth not in AUTH_MODES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_MODES)}, not {self.auth!r}")
        if self.auth != "none" and self.grid is None:
            raise ValueError(f"auth={self.auth!r} needs a grid (tools.devstack.grid.Grid.make)")

    @property
    def guarded(self) -> bool:
        return self.auth != "none"

    @property
    def security(self) -> Path:
        """The server's own copies of its credentials and its security configuration."""
        return self.state / "security"

    @property
    def data(self) -> Path:
        return self.state / "data"

    @property
    def admin(self) -> Path:
        return self.state / "admin"

    @property
    def config_file(self) -> Path:
        return self.state / "xrootd.cfg"

    @property
    def log_file(self) -> Path:
        return self.state / "log" / f"xrootd-{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.state / "run" / f"xrootd-{self.name}.pid"

    @property
    def root_url(self) -> str:
        return f"{'roots' if self.guarded else 'root'}://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.guarded else 'http'}://{self.host}:{self.http_port}"

    def url(self, path: str, scheme: str = "root") -> str:
        """The URL of a path under the server's '/', for root:// or http(s)://."""
        path = "/" + path.lstrip("/")
        return f"{self.root_url}/{path}" if scheme == "root" else f"{self.http_url}{path}"

    def config_text(self) -> str:
        lines = [
            f"xrd.port {self.port}",
            "all.export /",
            f"oss.localroot {self.data}",
            f"all.adminpath {self.admin}",
            f"all.pidpath {self.admin}",
            f"xrd.protocol XrdHttp:{self.http_port} libXrdHttp.so",
            "http.exthandler xrdtpc libXrdHttpTPC.so",
        ]
        if self.guarded:
            lines += self._guard_lines()
        elif self.unix_auth:
            lines += ["xrootd.seclib default", "sec.protocol unix"]
        if self.checksum:
            lines.append(f"xrootd.chksum {self.checksum}")
        if self.tpc:
            # Without it a destination answers 'tpc not supported' and leaves a 0-byte file. Under x509 the
            # destination pulls with the proxy the client delegated to it (gsi -dlgpxy), under token with none.
            creds = "fcreds ?gsi =X509_USER_PROXY " if self.auth == "x509" else ""
            lines.append(f"ofs.tpc {creds}ttl 60 70 xfr 10 pgm {shutil.which('xrdcp') or '/usr/bin/xrdcp'} --server")
        return "\n".join(lines) + "\n"

    def _guard_lines(self) -> list[str]:
        """TLS on both ports, the authentication of `auth` and an authorisation that refuses anonymous clients."""
        sec = self.security
        lines = [
            f"xrd.tls {sec / 'hostcert.pem'} {sec / 'hostkey.pem'}",
            f"xrd.tlsca certdir {sec / 'certificates'}",
            "xrootd.tls all",  # every root:// session in TLS (roots://, or root:// which the client then upgrades)
            f"http.cert {sec / 'hostcert.pem'}",
            f"http.key {sec / 'hostkey.pem'}",
            f"http.cadir {sec / 'certificates'}",
            "xrootd.seclib libXrdSec.so",
            "ofs.authorize 1",
            f"acc.authdb {sec / 'authdb'}",
            "acc.audit deny",
        ]
        if self.auth == "x509":
            lines += [
                f"sec.protocol gsi -ca:2 -crl:0 -cert:{sec / 'hostcert.pem'} -key:{sec / 'hostkey.pem'} "
                f"-certdir:{sec / 'certificates'} -gridmap:{sec / 'grid-mapfile'} -gmapopt:2 "
                "-vomsat:2 -vomsfun:libXrdVoms.so -dlgpxy:1",
                "sec.protbind * only gsi",
                f"http.gridmap {sec / 'grid-mapfile'}",
                "http.secxtractor libXrdVoms.so",
            ]
        else:
            lines += [
                "sec.protocol ztn",
                "sec.protbind * only ztn",
                f"ofs.authlib ++ libXrdAccSciTokens.so config={sec / 'scitokens.cfg'}",
                "http.header2cgi Authorization authz",
            ]
        return lines

    def _write_security(self, account: pwd.struct_passwd | None) -> None:
        """Copy the grid's host credentials and CA directory into `security` (the key the server's own, 0400) and
        write the authorisation files."""
        from . import grid as grid_module

        grid = self.grid
        assert grid is not None
        sec = self.security
        if sec.exists():
            shutil.rmtree(sec)
        sec.mkdir(parents=True)
        shutil.copytree(grid.ca_dir, sec / "certificates", symlinks=True)
        shutil.copytree(grid.vomsdir, sec / "vomsdir")
        shutil.copyfile(grid.host_cert, sec / "hostcert.pem")
        shutil.copyfile(grid.host_key, sec / "hostkey.pem")
        (sec / "hostkey.pem").chmod(0o400)
        (sec / "grid-mapfile").write_text(f'"{grid.user_dn}" magictester\n')
        if self.auth == "x509":
            # The VO's members (VOMS group /magic) may do everything; anyone else (a bare certificate) nothing.
            (sec / "authdb").write_text(f"g /{grid_module.VO} / a\n")
        else:
            # Nothing for anyone: what a client may do comes from its token's scopes alone.
            (sec / "authdb").write_text("# a token's scopes decide\n")
            (sec / "scitokens.cfg").write_text(
                "[Global]\n"
                # WLCG's "any", and the server's host name: the audience Rucio asks for a davs door (its hostname,
                # rucio.core.rse.determine_audience_for_rse), as sites list their storage's names.
                f"audience = {grid_module.AUDIENCE}, {self.host}\n"
                "onmissing = passthrough\n\n"
                f"[Issuer {grid_module.VO}]\n"
                f"issuer = {grid.issuer}\n"
                "base_path = /\n"
                "default_user = nobody\n")
            # The plugin fetches the issuer's keys with libcurl, which trusts the system's bundle only: the server
            # sees the system's bundle with the run's CA added (see `argv`), and caches keys in its own folder.
            system = SYSTEM_CA_BUNDLE.read_bytes() if SYSTEM_CA_BUNDLE.exists() else b""
            (sec / "ca-bundle.crt").write_bytes(system + b"\n" + grid.ca_cert.read_bytes())
            (self.state / "cache").mkdir(exist_ok=True)
        if account is not None:
            for item in (sec, *sec.rglob("*"), self.state / "cache"):
                if item.exists() and not item.is_symlink():
                    os.chown(item, account.pw_uid, account.pw_gid)

    def prepare(self) -> None:
        """Create the folders and the config; the data and admin folders belong to the server's account."""
        reason = missing(self.auth)
        if reason:
            raise XrootdError(reason)
        account = _account(self.user)
        for folder in (self.data, self.admin, self.log_file.parent, self.pid_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config_text())
        if account is not None:
            if not _reachable_by(self.state, account):
                raise XrootdError(
                    f"{self.data} is not reachable by the server's account {account.pw_name}: a folder above it "
                    "does not let others traverse it; put the state folder elsewhere (e.g. under /tmp)")
            for folder in (self.state, self.data, self.admin):
                os.chown(folder, account.pw_uid, account.pw_gid)
        if self.guarded:
            self._write_security(account)

    def adopt(self, path: Path) -> None:
        """Give a file or folder written straight into the data folder (as the DAQ writes on site), and the folders
        above it up to the data folder, to the server's account: the server may then delete it, as the reaper asks."""
        account = _account(self.user)
        if account is None:
            return
        path = Path(path)
        data = self.data.resolve()
        for item in (path, *path.parents):
            if item.resolve() == data or data not in item.resolve().parents:
                break
            with contextlib.suppress(FileNotFoundError):
                os.chown(item, account.pw_uid, account.pw_gid)

    def adopt_tree(self, folder: Path) -> None:
        """`adopt` every file and folder under `folder` (inside the data folder), and the folder itself."""
        self.adopt(folder)
        for item in Path(folder).rglob("*"):
            self.adopt(item)

    def argv(self) -> list[str]:
        command = ["xrootd", "-c", str(self.config_file), "-n", self.name]
        account = _account(self.user)
        if account is not None:
            command = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups",
                       *command]
        bundle = self.security / "ca-bundle.crt"
        if self.auth == "token" and os.geteuid() == 0 and bundle.exists() and shutil.which("unshare"):
            # A mount namespace of its own in which the system's CA bundle has the run's CA too: the SciTokens
            # plugin then fetches the issuer's keys over HTTPS as at a site. unshare and sh exec in place (one pid).
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       f'mount --bind "$0" {SYSTEM_CA_BUNDLE} && exec "$@"', str(bundle), *command]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]  # execs in place too
        return command

    def environment(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        if self.guarded:
            # GSI and XrdVoms check proxies and VOMS attributes against these; SciTokens caches keys there.
            env.update(X509_CERT_DIR=str(self.security / "certificates"), X509_VOMS_DIR=str(self.security / "vomsdir"),
                       XDG_CACHE_HOME=str(self.state / "cache"),
                       # what the server's own xrdcp (third-party copy) accepts as the source's certificate CN
                       XrdSecGSISRVNAMES="localhost")
        return env

    def start(self, timeout: float = 30.0, check: bool = True) -> None:
        """Start the server (kept if already running) and wait until root:// and HTTP both answer (with `check`
        False: until both ports accept connections, as for a server whose certificate clients refuse)."""
        if not self.is_alive():
            self.prepare()
            processes.start(f"xrootd-{self.name}", self.argv(), self.environment(), self.log_file.parent,
                            self.pid_file.parent)
        self.wait(timeout, check)

    def wait(self, timeout: float = 30.0, check: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_alive():
                raise XrootdError(f"xrootd {self.name} exited while starting:\n{self.log_tail()}")
            if self.answers() if check else self.listens():
                return
            time.sleep(0.1)
        raise XrootdError(f"xrootd {self.name} did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def listens(self) -> bool:
        """True when both ports accept a TCP connection."""
        for port in (self.port, self.http_port):
            try:
                socket.create_connection((self.host, port), timeout=2).close()
            except OSError:
                return False
        return True

    def client_env(self) -> dict[str, str]:
        """What an xrdfs/xrdcp needs in its environment to be let in: nothing when open, else the grid's proxy
        (x509) or a fresh token with every storage scope (token, in a file of the server's state folder)."""
        if not self.guarded:
            return {}
        assert self.grid is not None
        if self.auth == "x509":
            return self.grid.x509_env()
        token_file = self.grid.write_token(self.state / "probe.token", self.grid.mint_token())
        return self.grid.token_env(token_file)

    def answers(self) -> bool:
        """True when `xrdfs stat /` succeeds and the HTTP port answers a request (with the grid's credentials
        when guarded)."""
        try:
            subprocess.run(["xrdfs", self.root_url, "stat", "/"], check=True, timeout=10, capture_output=True,
                           env={**os.environ, "XRD_CONNECTIONRETRY": "1", **self.client_env()})
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return False
        request = urllib.request.Request(f"{self.http_url}/", method="HEAD")
        context = None
        if self.guarded:
            assert self.grid is not None
            context = ssl.create_default_context(cafile=str(self.grid.ca_cert))
            if self.auth == "x509":
                context.load_cert_chain(self.grid.proxy)
            else:
                request.add_header("Authorization", f"Bearer {self.grid.mint_token()}")
        try:
            with urllib.request.urlopen(request, timeout=5, context=context):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer: the plugin is up
        except OSError:
            return False

    def is_alive(self) -> bool:
        return processes.is_alive(self.pid_file)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the server and the copies it forked (SIGKILL after `timeout`); its files stay."""
        processes.stop([self.pid_file], timeout)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return f"(no log at {self.log_file})"
