"""What the scanner and carrier tests share: nights written at the observatory, and looks into the ledger
and Rucio. Each test uses a night of its own, so the tests see each other's files but never touch them."""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from rucio_magic_ext import layout
from rucio_magic_ext.ledger import FileState, Ledger
from rucio_magic_ext.ledger.models import LedgerFile
from tools.make_night import PlannedFile, plan_night, write_night

ORM, PIC = "ORM-ONSITE", "PIC-DISK"


def flow_steps(source: str = ORM) -> tuple[str | tuple[str, ...], ...]:
    """One round of every daemon of the MAGIC flow, in the order a file travels; the reaper at the source last."""
    return (
        "magic-scanner",
        "judge-evaluator",
        "conveyor-preparer",
        "conveyor-submitter",
        ("conveyor-poller", "--older-than", "0"),
        "conveyor-finisher",
        "necromancer",
        "judge-repairer",
        "magic-carrier",
        "judge-cleaner",
        ("reaper", "--rses", source),
    )


def orm_root(stack: Any) -> Path:
    return stack.settings.storage_dir / "orm-onsite"


def write_observed_night(stack: Any, night: date, runs: int = 3, seed: int = 0) -> list[PlannedFile]:
    """A small synthetic night at the observatory, every file closed long ago (settled)."""
    plan = plan_night(night, runs=runs, seed=seed, scale=1e-5)
    write_night(plan, orm_root(stack), stamp_times=True)
    return plan


def write_file(stack: Any, path: str, data: bytes, mtime: float | None = None) -> Path:
    target = orm_root(stack) / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    if mtime is not None:
        os.utime(target, (mtime, mtime))
    return target


def adler32_of(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()):08x}"


def ledger() -> Ledger:
    return Ledger.from_config()


def rows_of(plan: list[PlannedFile], rse: str = ORM) -> dict[str, LedgerFile]:
    return ledger().known(rse, [planned.path for planned in plan])


def states_of(plan: list[PlannedFile], rse: str = ORM) -> Counter[FileState]:
    return Counter(row.state for row in rows_of(plan, rse).values())


def all_in(plan: list[PlannedFile], state: FileState, rse: str = ORM) -> bool:
    rows = rows_of(plan, rse)
    return len(rows) == len(plan) and all(row.state is state for row in rows.values())


def dids_of(plan: list[PlannedFile]) -> list[dict[str, str]]:
    return [{"scope": layout.scope(p.record), "name": p.name} for p in plan]


def events_of(path: str, rse: str = ORM) -> list[Any]:
    ((_, events),) = ledger().history(rse, path)
    return events


def placement(planned: PlannedFile) -> layout.Placement:
    folder = layout.observatory_folder("/" + planned.path)
    return layout.placement(planned.record, folder.night if folder else None)


def assert_all_in(plan: list[PlannedFile], state: FileState) -> None:
    """Every file of the plan in ``state``; the message names the others, where they are and why."""
    rows = rows_of(plan)
    laggards = [
        (p.path, rows[p.path].state.value, rows[p.path].last_error) if p.path in rows else (p.path, "unseen", None)
        for p in plan
        if p.path not in rows or rows[p.path].state is not state
    ]
    assert not laggards, f"{len(laggards)} of {len(plan)} not {state.value}: {laggards[:5]}"


@contextmanager
def unavailable(rucio_client: Any, rse: str, operation: str) -> Iterator[None]:
    """``rse`` refuses ``operation`` (read, write, delete) for the block, as an operator would switch it off."""
    rucio_client.update_rse(rse, {f"availability_{operation}": False})
    try:
        yield
    finally:
        rucio_client.update_rse(rse, {f"availability_{operation}": True})


def client_for(rucio_client: Any, account: str, attributes: dict[str, str] | None = None) -> Any:
    """A REST client logged in as a new account (userpass), with the given account attributes."""
    import uuid

    from rucio.client import Client

    password = uuid.uuid4().hex
    rucio_client.add_account(account, "USER", f"{account}@example.org")
    rucio_client.add_identity(
        account, identity=account, authtype="USERPASS", email=f"{account}@example.org", password=password
    )
    for key, value in (attributes or {}).items():
        rucio_client.add_account_attribute(account, key, value)
    return Client(account=account, auth_type="userpass", creds={"username": account, "password": password})


def assert_bytes_kept(stack: Any, plan: list[PlannedFile]) -> None:
    """Every file of the plan still at the observatory with the bytes the ledger registered."""
    rows = rows_of(plan)
    for planned in plan:
        source = orm_root(stack) / planned.path
        assert source.exists(), f"{planned.path} is gone from the observatory"
        assert adler32_of(source) == rows[planned.path].adler32, planned.path


def register_beside_the_api(rse: str, scope: str, name: str, size: int, adler32: str, pfn: str) -> None:
    """A replica registered in process, past the policy package's checks, as a site's own script on Rucio's
    database (or an older Rucio) might: the REST API refuses a second DID at a path another DID's replica names,
    so the flow's own defences against one are tried this way."""
    from rucio.common.types import InternalAccount, InternalScope
    from rucio.core.replica import add_replicas
    from rucio.core.rse import get_rse_id

    replica = {"scope": InternalScope(scope), "name": name, "bytes": size, "adler32": adler32, "pfn": pfn}
    add_replicas(rse_id=get_rse_id(rse), files=[replica], account=InternalAccount("root"), ignore_availability=True)


def assert_proven_at_pic(stack: Any, plan: list[PlannedFile]) -> None:
    """Every file of the plan gone from the observatory, its copy at PIC-DISK on disk with the registered bytes."""
    rows = rows_of(plan)
    for planned in plan:
        copy = stack.settings.storage_dir / "pic-disk" / placement(planned).path
        assert copy.exists(), f"no copy of {planned.path} at PIC-DISK"
        assert (copy.stat().st_size, adler32_of(copy)) == (rows[planned.path].size, rows[planned.path].adler32)
        assert not (orm_root(stack) / planned.path).exists(), f"{planned.path} still at the observatory"
