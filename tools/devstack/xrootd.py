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
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import processes

PACKAGES = ("xrootd-server", "xrootd-client", "xrootd-server-plugins")
HTTP_PLUGIN = "libXrdHttp-5.so"
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


def missing() -> str | None:
    """Why an XRootD server cannot run here (binaries or the HTTP plugin absent), or None when it can."""
    absent = [name for name in ("xrootd", "xrdfs", "xrdcp") if shutil.which(name) is None]
    if not any((folder / HTTP_PLUGIN).exists() for folder in PLUGIN_DIRS):
        absent.append(HTTP_PLUGIN)
    if absent:
        return f"{', '.join(absent)} not found: apt-get install {' '.join(PACKAGES)}"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv not found (to run xrootd unprivileged under root): apt-get install util-linux"
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
        return f"root://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

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
        if self.unix_auth:
            lines += ["xrootd.seclib default", "sec.protocol unix"]
        if self.checksum:
            lines.append(f"xrootd.chksum {self.checksum}")
        if self.tpc:
            # Without it a destination answers 'tpc not supported' and leaves a 0-byte file.
            lines.append(f"ofs.tpc ttl 60 70 xfr 10 pgm {shutil.which('xrdcp') or '/usr/bin/xrdcp'} --server")
        return "\n".join(lines) + "\n"

    def prepare(self) -> None:
        """Create the folders and the config; the data and admin folders belong to the server's account."""
        reason = missing()
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
        if account is None:
            return command
        return ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", *command]

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (kept if already running) and wait until root:// and HTTP both answer."""
        if not self.is_alive():
            self.prepare()
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
            processes.start(f"xrootd-{self.name}", self.argv(), env, self.log_file.parent, self.pid_file.parent)
        self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_alive():
                raise XrootdError(f"xrootd {self.name} exited while starting:\n{self.log_tail()}")
            if self.answers():
                return
            time.sleep(0.1)
        raise XrootdError(f"xrootd {self.name} did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def answers(self) -> bool:
        """True when `xrdfs stat /` succeeds and the HTTP port answers a request."""
        try:
            subprocess.run(["xrdfs", self.root_url, "stat", "/"], check=True, timeout=10,
                           capture_output=True, env={**os.environ, "XRD_CONNECTIONRETRY": "1"})
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return False
        request = urllib.request.Request(f"{self.http_url}/", method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=5):
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
