"""rucio.cfg read with Rucio's own helpers (``config_get_int``, ``_float``, ``_bool``, ``_list``): each default
written once, at the call, and a value that is missing or wrong stops a daemon or a command in one line naming
the file, the section and the key to fix."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from rucio_magic_ext.common import RefusedToStart

T = TypeVar("T")
REQUIRED: Any = None  # a setting without a default


class ConfigError(RefusedToStart, ValueError):
    """A setting that is missing or wrong: the message names the file, the section and the key to fix."""


def rucio_cfg() -> str:
    """The rucio.cfg Rucio reads (``RUCIO_CONFIG``, else the first of its own folders that holds one)."""
    from rucio.common.config import get_config_dirs

    if "RUCIO_CONFIG" in os.environ:
        return os.environ["RUCIO_CONFIG"]
    found = [os.path.join(folder, "rucio.cfg") for folder in get_config_dirs()]
    return next((path for path in found if os.path.exists(path)), " or ".join(found))


def setting(read: Callable[..., T], section: str, option: str, default: T = REQUIRED, fallback: str = "") -> T:
    """``[section] option`` through one of Rucio's readers (``config_get_int``, ``_float``, ``_bool``,
    ``_list``), else ``[fallback] option``, else ``default``; missing without a default, or not of its kind,
    is a ConfigError naming the file, the section and the key."""
    from rucio.common.exception import ConfigNotFound

    try:
        value = read(section, option, raise_exception=False, default=None)
        if value is None and fallback:
            value = read(fallback, option, raise_exception=False, default=None)
    except ConfigNotFound as missing:
        raise ConfigError(f"no rucio.cfg to read: {' '.join(str(missing).split())}") from None
    except ValueError as wrong:
        raise ConfigError(f"{rucio_cfg()}: [{section}] {option}: {wrong}") from None
    if value is None:
        if default is REQUIRED:
            also = f" (or [{fallback}] {option})" if fallback else ""
            raise ConfigError(f"{rucio_cfg()}: [{section}] {option}{also} is required")
        return default
    return value


def require_section(section: str, why: str) -> None:
    from rucio.common.config import config_has_section
    from rucio.common.exception import ConfigNotFound

    try:
        present = config_has_section(section)
    except ConfigNotFound as missing:
        raise ConfigError(f"no rucio.cfg to read: {' '.join(str(missing).split())}") from None
    if not present:
        raise ConfigError(f"{rucio_cfg()} has no [{section}] section: {why}")


def seconds(section: str, option: str, default: float, fallback: str = "") -> float:
    """A duration in seconds, never negative."""
    from rucio.common.config import config_get_float

    value = setting(config_get_float, section, option, default, fallback)
    if value < 0:
        raise ConfigError(f"{rucio_cfg()}: [{section}] {option} = {value:g}: a duration in seconds, 0 or more")
    return value
