"""The scanner's settings: the ``[magic-scanner]`` section of ``rucio.cfg``.

[magic-scanner]
rse = ORM-ONSITE                       # the observatory's (non-deterministic) RSE
roots = M1, M2, ST                     # folders below the RSE's prefix to watch (default: all of it)
include = *                            # file-name patterns to consider (fnmatch)
exclude = .*, *.tmp, *.part            # file-name patterns never to touch
settle_seconds = 300                   # size and mtime unchanged this long: the file is complete
checksums = adler32                    # adler32, or adler32, md5
batch_size = 2000                      # files per stage per cycle
account = magic_scanner                # owner of the DIDs and rules
replication_policy = /opt/rucio/etc/replication-policy.toml
night_closed_after_hours = 36          # a night with no new file this long is finished: close its datasets
retry_seconds = 60                     # first retry after an error; doubles per attempt
carrier_max_files = 1000               # a carrier batch closes at this many files,
carrier_max_bytes = 2000000000000      # or bytes,
carrier_max_age_seconds = 3600         # or age of its first file
census_seconds = 60                    # how often the gauges (files at risk, rules, replicas) are refreshed
audit_seconds = 3600                   # how often the census also audits the RSE (counts per class); 0: never
future_mtime_max_wait_seconds = 3600   # a file whose mtime lies in the future waits at most this long, unchanged
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from rucio_magic_ext.carrier.model import CarrierLimits

SECTION = "magic-scanner"


@dataclass(frozen=True)
class ScannerConfig:
    rse: str
    replication_policy: Path
    roots: tuple[str, ...] = ("",)
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = (".*", "*.tmp", "*.part")
    settle: timedelta = timedelta(minutes=5)
    checksums: tuple[str, ...] = ("adler32",)
    batch_size: int = 2000
    account: str = "magic_scanner"
    night_closed_after: timedelta = timedelta(hours=36)
    retry: timedelta = timedelta(minutes=1)
    carrier: CarrierLimits = field(default_factory=CarrierLimits)
    census: timedelta = timedelta(minutes=1)
    audit: timedelta = timedelta(hours=1)
    future_wait: timedelta = timedelta(hours=1)


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def load_config(section: str = SECTION) -> ScannerConfig:
    """Read the section from Rucio's configuration; a missing ``rse`` or policy file is an error."""
    from rucio.common.config import config_get, config_has_section

    if not config_has_section(section):
        raise ValueError(f"rucio.cfg has no [{section}] section: the scanner needs at least rse and replication_policy")

    def get(option: str, default: str | None = None) -> str:
        value = config_get(section, option, raise_exception=False, default=default)
        if value is None:
            raise ValueError(f"[{section}] {option} is required")
        return str(value)

    default = ScannerConfig(rse="", replication_policy=Path())
    policy = Path(get("replication_policy"))
    if not policy.is_file():
        raise ValueError(f"[{section}] replication_policy: {policy} is not a file")
    checksums = _list(get("checksums", "adler32"))
    if "adler32" not in checksums or not set(checksums) <= {"adler32", "md5"}:
        raise ValueError(f"[{section}] checksums must include adler32 (and may add md5), not {checksums}")
    return ScannerConfig(
        rse=get("rse"),
        replication_policy=policy,
        roots=_list(get("roots", "")) or ("",),
        include=_list(get("include", ",".join(default.include))),
        exclude=_list(get("exclude", ",".join(default.exclude))),
        settle=timedelta(seconds=float(get("settle_seconds", "300"))),
        checksums=checksums,
        batch_size=int(get("batch_size", str(default.batch_size))),
        account=get("account", default.account),
        night_closed_after=timedelta(hours=float(get("night_closed_after_hours", "36"))),
        retry=timedelta(seconds=float(get("retry_seconds", "60"))),
        carrier=CarrierLimits(
            max_files=int(get("carrier_max_files", str(default.carrier.max_files))),
            max_bytes=int(get("carrier_max_bytes", str(default.carrier.max_bytes))),
            max_age=timedelta(seconds=float(get("carrier_max_age_seconds", "3600"))),
        ),
        census=timedelta(seconds=float(get("census_seconds", "60"))),
        audit=timedelta(seconds=float(get("audit_seconds", "3600"))),
        future_wait=timedelta(seconds=float(get("future_mtime_max_wait_seconds", "3600"))),
    )
