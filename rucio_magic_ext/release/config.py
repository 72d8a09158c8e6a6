"""The release daemon's settings: the ``[magic-carrier]`` section of ``rucio.cfg``.

[magic-carrier]
rse = ORM-ONSITE              # the source RSE (default: [magic-scanner] rse)
account = magic_scanner       # who removes the carrier rules (default: [magic-scanner] account)
replication_policy = ...      # the policy the copies must satisfy (default: [magic-scanner] replication_policy)
dwell_seconds = 3600          # a copy must have been in place this long before its source goes
min_copies = 1                # verified copies (distinct RSEs) a file needs before its source goes
dry_run = false               # report what would be released, and why, without releasing anything
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

SECTION = "magic-carrier"


@dataclass(frozen=True)
class CarrierConfig:
    rse: str
    replication_policy: Path
    account: str = "magic_scanner"
    dwell: timedelta = timedelta(hours=1)
    min_copies: int = 1
    dry_run: bool = False


def load_config(section: str = SECTION) -> CarrierConfig:
    from rucio.common.config import config_get, config_get_bool

    def get(option: str, fallback_section: str | None = None, default: str | None = None) -> str:
        value = config_get(section, option, raise_exception=False, default=None)
        if value is None and fallback_section:
            value = config_get(fallback_section, option, raise_exception=False, default=None)
        if value is None:
            if default is None:
                raise ValueError(f"[{section}] {option} is required")
            value = default
        return str(value)

    min_copies = int(get("min_copies", default="1"))
    if min_copies < 1:
        raise ValueError(f"[{section}] min_copies must be at least 1: a source copy never goes without a verified copy")
    return CarrierConfig(
        rse=get("rse", "magic-scanner"),
        replication_policy=Path(get("replication_policy", "magic-scanner")),
        account=get("account", "magic-scanner", "magic_scanner"),
        dwell=timedelta(seconds=float(get("dwell_seconds", default="3600"))),
        min_copies=min_copies,
        dry_run=config_get_bool(section, "dry_run", raise_exception=False, default=False),
    )
