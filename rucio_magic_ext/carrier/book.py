"""The ledger's record of carrier batches: which are open, which files each carries, where each stands."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import func, insert, select, update

from rucio_magic_ext.carrier.model import CARRIER_SCOPE, OpenCarrier
from rucio_magic_ext.common import chunks, utcnow
from rucio_magic_ext.ledger import Ledger, LostRace
from rucio_magic_ext.ledger.models import LedgerCarrier, LedgerFile
from rucio_magic_ext.ledger.states import CarrierState, FileState
from rucio_magic_ext.ledger.store import rowcount


class CarrierBook:
    def __init__(self, ledger: Ledger, rse: str, scope: str = CARRIER_SCOPE) -> None:
        self.ledger, self.rse, self.scope = ledger, rse, scope

    def open_carriers(self) -> list[OpenCarrier]:
        with self.ledger.session() as session:
            rows = session.scalars(
                select(LedgerCarrier).where(LedgerCarrier.rse == self.rse, LedgerCarrier.state == CarrierState.OPEN)
            )
            return [OpenCarrier(row.name, row.policy, row.files, row.bytes, row.opened_at) for row in rows]

    def record(self, opened: Sequence[OpenCarrier], assigned: Mapping[int, str], sizes: Mapping[int, int]) -> None:
        """New carriers, and the files assigned to carriers, with each carrier's counts, in one transaction."""
        empty = {"rse": self.rse, "scope": self.scope, "state": CarrierState.OPEN, "files": 0, "bytes": 0}
        with self.ledger.session() as session:
            if opened:
                rows = [{**empty, "name": c.name, "policy": c.policy, "opened_at": c.opened_at} for c in opened]
                session.execute(insert(LedgerCarrier), rows)
            by_carrier: dict[str, list[int]] = {}
            for file_id, name in assigned.items():
                by_carrier.setdefault(name, []).append(file_id)
            for name, ids in by_carrier.items():
                for chunk in chunks(ids):
                    changed = rowcount(
                        session.execute(
                            update(LedgerFile)
                            .where(LedgerFile.id.in_(chunk), LedgerFile.carrier.is_(None))
                            .values(carrier=name, updated_at=utcnow())
                        )
                    )
                    if changed != len(chunk):
                        raise LostRace(f"{len(chunk) - changed} files were put in another carrier meanwhile")
                # Only an OPEN carrier takes files: one that started closing meanwhile refuses them, and the
                # whole assignment rolls back (its files wait for the next cycle and a new carrier).
                counted = rowcount(
                    session.execute(
                        update(LedgerCarrier)
                        .where(
                            LedgerCarrier.scope == self.scope,
                            LedgerCarrier.name == name,
                            LedgerCarrier.state == CarrierState.OPEN,
                        )
                        .values(
                            files=LedgerCarrier.files + len(ids),
                            bytes=LedgerCarrier.bytes + sum(sizes[file_id] for file_id in ids),
                        )
                    )
                )
                if counted != 1:
                    raise LostRace(f"carrier {name} started closing before these files joined it")

    def unassign(self, files: Sequence[LedgerFile]) -> None:
        """Take files whose registration failed back out of their carriers: they join another when tried again."""
        with self.ledger.session() as session:
            for row in files:
                if row.carrier is None:
                    continue
                session.execute(
                    update(LedgerFile)
                    .where(LedgerFile.id == row.id, LedgerFile.carrier == row.carrier)
                    .values(carrier=None, updated_at=utcnow())
                )
                session.execute(
                    update(LedgerCarrier)
                    .where(LedgerCarrier.scope == self.scope, LedgerCarrier.name == row.carrier)
                    .values(files=LedgerCarrier.files - 1, bytes=LedgerCarrier.bytes - row.size)
                )
                row.carrier = None

    def split(self, carrier: LedgerCarrier, rows: Sequence[LedgerFile], name: str) -> None:
        """A new carrier, CLOSING, of the same policy, with ``rows`` moved into it, in one transaction."""
        now = utcnow()
        size = sum(row.size for row in rows)
        with self.ledger.session() as session:
            session.execute(
                insert(LedgerCarrier).values(
                    rse=self.rse,
                    scope=self.scope,
                    name=name,
                    policy=carrier.policy,
                    state=CarrierState.CLOSING,
                    files=len(rows),
                    bytes=size,
                    opened_at=now,
                    closed_at=now,
                    detail=f"split from {carrier.name}",
                    split_from=carrier.name,
                )
            )
            moved = rowcount(
                session.execute(
                    update(LedgerFile)
                    .where(LedgerFile.id.in_([row.id for row in rows]), LedgerFile.carrier == carrier.name)
                    .values(carrier=name, updated_at=now)
                )
            )
            if moved != len(rows):
                raise LostRace(f"{len(rows) - moved} of {len(rows)} file(s) left carrier {carrier.name} meanwhile")
            session.execute(
                update(LedgerCarrier)
                .where(LedgerCarrier.id == carrier.id)
                .values(files=LedgerCarrier.files - len(rows), bytes=LedgerCarrier.bytes - size)
            )
        for row in rows:
            row.carrier = name

    def carriers_of(self, dids: Iterable[tuple[str, str]]) -> dict[tuple[str, str], LedgerCarrier]:
        """The carrier the ledger puts each file in, for the files it knows."""
        found: dict[tuple[str, str], LedgerCarrier] = {}
        wanted = list(dids)
        with self.ledger.session() as session:
            for chunk in chunks(wanted):
                names = [name for _, name in chunk]
                joined = (LedgerCarrier.scope == self.scope) & (LedgerCarrier.name == LedgerFile.carrier)
                query = (
                    select(LedgerFile.scope, LedgerFile.name, LedgerCarrier)
                    .join(LedgerCarrier, joined)
                    .where(LedgerFile.rse == self.rse, LedgerFile.name.in_(names))
                )
                asked = set(chunk)
                for scope, name, carrier in session.execute(query):
                    if (scope, name) in asked:
                        found[(scope, name)] = carrier
        return found

    def named(self, names: Iterable[str]) -> list[LedgerCarrier]:
        with self.ledger.session() as session:
            query = select(LedgerCarrier).where(LedgerCarrier.scope == self.scope, LedgerCarrier.name.in_(list(names)))
            return list(session.scalars(query))

    def in_states(self, states: Iterable[CarrierState], worker: int = 0, workers: int = 1) -> list[LedgerCarrier]:
        query = select(LedgerCarrier).where(LedgerCarrier.rse == self.rse, LedgerCarrier.state.in_(list(states)))
        if workers > 1:
            query = query.where(LedgerCarrier.id % workers == worker)
        with self.ledger.session() as session:
            return list(session.scalars(query.order_by(LedgerCarrier.id)))

    def move(self, carrier: LedgerCarrier, target: CarrierState, **values: Any) -> None:
        """Move a carrier on from the state the caller saw; LostRace if another worker did first."""
        stamp = {CarrierState.CLOSING: "closed_at", CarrierState.RELEASING: "released_at", CarrierState.GONE: "gone_at"}
        if target in stamp:
            values.setdefault(stamp[target], utcnow())
        seen = update(LedgerCarrier).where(LedgerCarrier.id == carrier.id, LedgerCarrier.state == carrier.state)
        with self.ledger.session() as session:
            changed = rowcount(session.execute(seen.values(state=target, **values)))
        if changed != 1:
            raise LostRace(f"carrier {carrier.name} left {carrier.state.value} meanwhile")
        carrier.state = target
        for key, value in values.items():
            setattr(carrier, key, value)

    def update(self, carrier: LedgerCarrier, **values: Any) -> None:
        """Change a carrier's details, not its state."""
        with self.ledger.session() as session:
            session.execute(update(LedgerCarrier).where(LedgerCarrier.id == carrier.id).values(**values))
        for key, value in values.items():
            setattr(carrier, key, value)

    def files(self, carrier: str, states: Iterable[FileState] | None = None) -> list[LedgerFile]:
        query = select(LedgerFile).where(LedgerFile.rse == self.rse, LedgerFile.carrier == carrier)
        if states is not None:
            query = query.where(LedgerFile.state.in_(list(states)))
        with self.ledger.session() as session:
            return list(session.scalars(query.order_by(LedgerFile.id)))

    def count(self, state: CarrierState) -> int:
        with self.ledger.session() as session:
            query = select(func.count()).where(LedgerCarrier.rse == self.rse, LedgerCarrier.state == state)
            return int(session.scalar(query) or 0)
