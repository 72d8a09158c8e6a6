"""The release daemon's settings: the ``[magic-carrier]`` section of ``rucio.cfg``.

Each default is written once, in ``CarrierConfig``, and read with Rucio's own helpers; ``rse``, ``account`` and
``replication_policy`` come from ``[magic-scanner]`` unless this section sets its own, and an error names the
section the value was read from.

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
SCANNER = "magic-scanner"


@dataclass(frozen=True)
class CarrierConfig:
    rse: str
    replication_policy: Path
    account: str = "magic_scanner"
    dwell: timedelta = timedelta(hours=1)
    min_copies: int = 1
    dry_run: bool = False


DEFAULT = CarrierConfig(rse="", replication_policy=Path())


def load_config(section: str = SECTION) -> CarrierConfig:
    from rucio.common.config import config_get, config_get_bool, config_get_int

    from rucio_magic_ext.carrier.preflight import policy_file
    from rucio_magic_ext.settings import ConfigError, rucio_cfg, seconds, setting

    min_copies = setting(config_get_int, section, "min_copies", DEFAULT.min_copies)
    if min_copies < 1:
        raise ConfigError(
            f"{rucio_cfg()}: [{section}] min_copies must be at least 1: a source copy never goes without a "
            "verified copy"
        )
    return CarrierConfig(
        rse=setting(config_get, section, "rse", fallback=SCANNER),
        replication_policy=policy_file(section, SCANNER),
        account=setting(config_get, section, "account", DEFAULT.account, SCANNER),
        dwell=timedelta(seconds=seconds(section, "dwell_seconds", DEFAULT.dwell.total_seconds())),
        min_copies=min_copies,
        dry_run=setting(config_get_bool, section, "dry_run", DEFAULT.dry_run),
    )
