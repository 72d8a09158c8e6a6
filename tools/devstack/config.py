"""Settings of one dev stack and the config files rendered from them (``rucio.cfg``, ``alembic.ini``).

Everything a running stack needs to be found again (database, port) is kept in ``<state>/stack.json``,
so ``status``/``down``/``reset`` work without repeating the options given to ``up``.
"""

from __future__ import annotations

import configparser
import dataclasses
import importlib.util
import json
import os
import string
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ETC = REPO / "etc"
DEFAULT_STATE = REPO / ".state" / "devstack"
DEFAULT_PORT = 18080
# DEVSTACK_POLICY_PACKAGE="" runs with Rucio's generic policy (no package), e.g. to bisect a policy problem.
POLICY_PACKAGE = os.environ.get("DEVSTACK_POLICY_PACKAGE", "rucio_magic_ext.policy")
# The project's tool, which really copies between the local storages (rucio_magic_ext.transfertool).
DEFAULT_TRANSFERTOOL = "magic"
NO_CACHE_PORT = 9  # discard: nothing answers there


@dataclasses.dataclass
class Settings:
    """What makes one stack: where its state lives, its database and its REST port."""

    state: Path
    db: str = "sqlite"  # "sqlite" or "postgresql"
    port: int = DEFAULT_PORT
    pg_database: str = "rucio_magic_dev"
    pg_user: str = "rucio"
    pg_password: str = "rucio"
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    root_identity: str = "ddmlab"
    root_password: str = "secret"
    loglevel: str = "INFO"
    policy_package: str = POLICY_PACKAGE
    transfertool: str = DEFAULT_TRANSFERTOOL
    extra: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)  # rucio.cfg overrides
    # Rucio's cache in a memcached of the stack's own, as sites run it (when memcached is installed). Off by
    # default: step-by-step tests expect what a cache delays, e.g. the reaper pauses an RSE it found nothing
    # to delete on for 2 minutes, and only a cache remembers the pause.
    cache: bool = False
    cache_port: int = 0  # 0: no memcached (Rucio then caches nothing)
    # Where the RSEs' files live: "posix" (local folders, etc/site.cfg) or "xrootd" (an XRootD server each for
    # ORM-ONSITE and PIC-DISK, root:// and WebDAV, etc/site-xrootd.cfg).
    storage: str = "posix"
    # With storage="xrootd": "none" (open servers), or "x509" / "token", servers guarded as a site's (guard.py).
    auth: str = "none"
    # With storage="xrootd": 0 keeps both servers on this host's loopback; a rate (Mbit/s) puts ORM-ONSITE's server
    # in a network namespace of its own, joined to this host (PIC's side: Rucio and every daemon) by one link
    # shaped to that rate (link.py).
    link_mbit: float = 0
    xrootd_ports: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # server -> [root://, http]
    # Rucio's Prometheus metrics: each daemon serves /metrics on a port of its own, as a site's daemons do in
    # their own containers, and a Prometheus of the stack's scrapes them (tools/devstack/prometheus.py).
    metrics: bool = False
    metrics_ports: dict[str, int] = dataclasses.field(default_factory=dict)  # daemon -> its /metrics port
    prometheus_port: int = 0
    # Variables every process of the stack gets beside RUCIO_CONFIG, as a site sets them in its daemons'
    # containers (X509_USER_PROXY, X509_CERT_DIR, REQUESTS_CA_BUNDLE for guarded storage).
    environment: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def rucio_cfg(self) -> Path:
        return self.state / "rucio.cfg"

    @property
    def alembic_ini(self) -> Path:
        return self.state / "alembic.ini"

    @property
    def log_dir(self) -> Path:
        return self.state / "log"

    @property
    def run_dir(self) -> Path:
        return self.state / "run"

    @property
    def storage_dir(self) -> Path:
        return self.state / "storage"

    @property
    def db_url(self) -> str:
        if self.db == "sqlite":
            # Server and daemons share the file: wait up to a minute for a writer's lock instead of failing.
            return f"sqlite:///{self.state / 'rucio.db'}?timeout=60"
        if self.db == "postgresql":
            return (f"postgresql+psycopg://{self.pg_user}:{self.pg_password}"
                    f"@{self.pg_host}:{self.pg_port}/{self.pg_database}")
        raise ValueError(f"unknown database kind {self.db!r}: use sqlite or postgresql")

    @property
    def db_schema(self) -> str:
        """Rucio's tables live in schema ``rucio`` on PostgreSQL; SQLite has no schemas."""
        return "rucio" if self.db == "postgresql" else ""

    def save(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        data = dataclasses.asdict(self)
        data["state"] = str(self.state)
        (self.state / "stack.json").write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, state: Path) -> Settings | None:
        """The settings saved by the last ``up`` in this state folder, if any."""
        path = state / "stack.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["state"] = Path(data["state"])
        return cls(**data)


def render(template: Path, values: dict[str, str], overrides: dict[str, dict[str, str]] | None = None) -> str:
    """Fill ``template`` (string.Template syntax), drop options whose placeholder is empty, apply ``overrides``."""
    unset = "<unset>"
    text = string.Template(template.read_text()).substitute({k: v or unset for k, v in values.items()})
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep option case
    parser.read_string(text)
    for section in parser.sections():
        for option, value in list(parser.items(section)):
            if value.strip() == unset:
                parser.remove_option(section, option)
    for section, options in (overrides or {}).items():
        if not parser.has_section(section):
            parser.add_section(section)
        for option, value in options.items():
            parser.set(section, option, value)
    lines: list[str] = []
    for section in parser.sections():
        lines.append(f"[{section}]")
        lines.extend(f"{option} = {value}" for option, value in parser.items(section))
        lines.append("")
    return "\n".join(lines)


def write_configs(settings: Settings) -> None:
    """Render ``rucio.cfg`` and ``alembic.ini`` into the state folder."""
    rucio_dir = Path(importlib.util.find_spec("rucio").submodule_search_locations[0])  # type: ignore[union-attr]
    values = {
        "state": str(settings.state),
        "port": str(settings.port),
        "db_url": settings.db_url,
        "db_schema": settings.db_schema,
        "root_identity": settings.root_identity,
        "root_password": settings.root_password,
        "loglevel": settings.loglevel,
        "policy_package": settings.policy_package,
        "transfertool": settings.transfertool,
        "etc": str(ETC),
        "settle_seconds": "5",
        "carrier_max_age_seconds": "30",
        "dwell_seconds": "0",
        "migrate_repo": str(rucio_dir / "db" / "sqla" / "migrate_repo"),
        # Without a memcached of its own, a port where nothing listens: Rucio finds no cache and uses none,
        # rather than one that another stack on this host fills.
        "cache_url": f"127.0.0.1:{settings.cache_port or NO_CACHE_PORT}",
    }
    for folder in (settings.state, settings.log_dir, settings.run_dir):
        folder.mkdir(parents=True, exist_ok=True)
    overrides = {section: dict(options) for section, options in settings.extra.items()}
    if settings.storage == "xrootd":
        # The conveyor submits only transfers between protocols of these schemes: root:// at both ends.
        conveyor = overrides.setdefault("conveyor", {})
        conveyor.setdefault("scheme", "root")
        # A third-party copy waits on the servers (XRootD's client polls the destination every 2.5 s), not on
        # this host: more of them at once.
        conveyor.setdefault("magic_max_active", "6")
    settings.rucio_cfg.write_text(render(ETC / "rucio.cfg.template", values, overrides))
    settings.alembic_ini.write_text(render(ETC / "alembic.ini.template", values))


#: Seconds between two censuses of the scanner when metrics are on: the gauges follow a night at the scrape's pace.
METRICS_CENSUS_SECONDS = "5"


def daemon_config(settings: Settings, name: str, port: int) -> Path:
    """A copy of the stack's ``rucio.cfg`` for one daemon, serving Rucio's metrics on ``port``: Rucio reads
    ``[monitor] metrics_port`` once per process, so each daemon needs a file of its own."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep option case
    parser.read_string(settings.rucio_cfg.read_text())
    for section, options in {
        "monitor": {"enable_metrics": "True", "metrics_port": str(port)},
        "magic-scanner": {"census_seconds": METRICS_CENSUS_SECONDS},
    }.items():
        if not parser.has_section(section):
            parser.add_section(section)
        for option, value in options.items():
            parser.set(section, option, value)
    path = settings.state / "metrics" / f"{name}.cfg"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as file:
        parser.write(file)
    return path
