"""Waiting, for the dev stack and the tests: for a condition, with a deadline, or for a flow, round by round.

One loop each, so that every wait says what it waited for and how long, and none sleeps a fixed time in the
hope that something happened meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str | Callable[[], str], every: float = 0.5) -> T:
    """What ``condition()`` returns once it is true; TimeoutError naming ``what`` when ``timeout`` seconds pass
    first. ``what`` may be a function, called only then, to say where things stand."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            said = what() if callable(what) else what
            raise TimeoutError(f"{said} (waited {timeout:g} s)")
        time.sleep(every)


def in_rounds(
    step: Callable[[], object], done: Callable[[], bool], rounds: int, pause: float = 1.0, patience: float = 0.0
) -> int | None:
    """Run ``step`` and ask ``done()``, at least ``rounds`` times or for ``patience`` seconds, whichever is later;
    the number of rounds it took, or None when it never got there."""
    started, used = time.monotonic(), 0
    while used < rounds or time.monotonic() - started < patience:
        step()
        used += 1
        if done():
            return used
        time.sleep(pause)
    return None
