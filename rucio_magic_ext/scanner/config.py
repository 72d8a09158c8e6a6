"""The scanner's settings: the ``[magic-scanner]`` section of ``rucio.cfg``.

Each default is written once, in ``ScannerConfig``; ``load_config`` reads every key with Rucio's own helpers
(``config_get_int``, ``_float``, ``_list``), and a key that is missing or wrong stops the caller in one line
naming the file, the section and the key. The README's daemon table says what each one means for a night.

[magic-scanner]
rse = ORM-ONSITE                       # the observatory's (non-deterministic) RSE
replication_policy = /opt/rucio/etc/replication-policy.toml
roots = M1, M2, ST                     # folders below the RSE's prefix to watch (default: all of it)
include = *                            # file-name patterns to consider (fnmatch)
exclude = .*, *.tmp, *.part            # file-name patterns never to touch
settle_seconds = 300                   # size and mtime unchanged this long: the file is complete
checksums = adler32                    # adler32, or adler32, md5
batch_size = 2000                      # files per stage per cycle
account = magic_scanner                # owner of the DIDs and rules
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


DEFAULT = ScannerConfig(rse="", replication_policy=Path())


def load_config(section: str = SECTION) -> ScannerConfig:
    """Read the section from Rucio's configuration; a missing ``rse`` or policy file is an error."""
    from rucio.common.config import config_get, config_get_int, config_get_list

    from rucio_magic_ext.carrier.preflight import policy_file
    from rucio_magic_ext.settings import ConfigError, require_section, rucio_cfg, seconds, setting

    require_section(section, "the scanner needs at least rse and replication_policy")

    def patterns(option: str, default: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(item for item in setting(config_get_list, section, option, list(default)) if item)

    def duration(option: str, default: timedelta, unit: float = 1.0) -> timedelta:
        return timedelta(seconds=seconds(section, option, default.total_seconds() / unit) * unit)

    checksums = patterns("checksums", DEFAULT.checksums)
    if "adler32" not in checksums or not set(checksums) <= {"adler32", "md5"}:
        raise ConfigError(
            f"{rucio_cfg()}: [{section}] checksums must include adler32 (and may add md5), not {', '.join(checksums)}"
        )
    return ScannerConfig(
        rse=setting(config_get, section, "rse"),
        replication_policy=policy_file(section),
        roots=patterns("roots", ()) or DEFAULT.roots,
        include=patterns("include", DEFAULT.include),
        exclude=patterns("exclude", DEFAULT.exclude),
        settle=duration("settle_seconds", DEFAULT.settle),
        checksums=checksums,
        batch_size=setting(config_get_int, section, "batch_size", DEFAULT.batch_size),
        account=setting(config_get, section, "account", DEFAULT.account),
        night_closed_after=duration("night_closed_after_hours", DEFAULT.night_closed_after, 3600),
        retry=duration("retry_seconds", DEFAULT.retry),
        carrier=CarrierLimits(
            max_files=setting(config_get_int, section, "carrier_max_files", DEFAULT.carrier.max_files),
            max_bytes=setting(config_get_int, section, "carrier_max_bytes", DEFAULT.carrier.max_bytes),
            max_age=duration("carrier_max_age_seconds", DEFAULT.carrier.max_age),
        ),
        census=duration("census_seconds", DEFAULT.census),
        audit=duration("audit_seconds", DEFAULT.audit),
        future_wait=duration("future_mtime_max_wait_seconds", DEFAULT.future_wait),
    )
