"""Protect: the permanent rules of the replication policy on each run dataset, and the carrier batches.

Registered files join an open carrier of their policy (the ledger first, then Rucio, so a crash repeats
and never forgets). A carrier that is full or old closes: its dataset is closed and it gets a source rule
(``purge_replicas``, pinning the files at the source) and one destination rule per policy entry. Its files
are then PROTECTED: their copies are under way, and their source copies are held until verified.
"""

from __future__ import annotations

import logging

from rucio_magic_ext import layout
from rucio_magic_ext.carrier.batches import (
    CARRIER_SCOPE,
    DESTINATION_RULE_COMMENT,
    SOURCE_RULE_COMMENT,
    NewFile,
    plan_batches,
    policy_key,
)
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.ledger.models import LedgerCarrier, LedgerFile
from rucio_magic_ext.ledger.states import CarrierState
from rucio_magic_ext.ledger.store import LostRace, utcnow
from rucio_magic_ext.naming import parse
from rucio_magic_ext.replication import RuleSpec
from rucio_magic_ext.scanner.catalogue import RuleRequest
from rucio_magic_ext.scanner.context import Context

ACTOR = "scanner.protect"
CARRIER_ACTIVITY = "MAGIC Carrier"


def specs_of(context: Context, row: LedgerFile) -> list[RuleSpec]:
    record = parse(str(row.name))
    return context.policy.rules_for(record.level, record.telescope)


def permanent_rules(context: Context, rows: list[LedgerFile]) -> list[RuleRequest]:
    """One rule per policy entry on each run dataset of ``rows``."""
    wanted = {}
    for row in rows:
        placed = layout.placement(parse(str(row.name)), row.night)
        for spec in specs_of(context, row):
            request = RuleRequest(
                placed.scope,
                placed.dataset,
                spec.rse_expression,
                spec.copies,
                spec.rule_comment,
                spec.activity,
                spec.lifetime,
                spec.grouping,
            )
            wanted[(placed.scope, placed.dataset, spec.name)] = request
    return list(wanted.values())


def protect(context: Context) -> int:
    """Rules for newly registered files, carriers filled and closed; returns how many files became PROTECTED."""
    rows = context.due(FileState.REGISTERED, without_carrier=True)
    if rows:
        try:
            context.catalogue.ensure_rules(permanent_rules(context, rows))
            _fill_carriers(context, rows)
        except LostRace as race:  # another worker closed a carrier first: these files join a new one next cycle
            context.logger(logging.INFO, "protect: %s", race)
        except Exception as error:
            context.ledger.fail(rows, f"protect: {error}", ACTOR, context.config.retry)
            context.logger(logging.ERROR, "protecting %d file(s) failed, will retry: %s", len(rows), error)
    protected = 0
    closable = context.carriers.in_states([CarrierState.OPEN, CarrierState.CLOSING], context.worker, context.workers)
    for carrier in closable:
        try:
            protected += _close_if_due(context, carrier)
        except Exception as error:
            context.logger(logging.ERROR, "closing carrier %s failed, will retry: %s", carrier.name, error)
    return protected


def _fill_carriers(context: Context, rows: list[LedgerFile]) -> None:
    specs = {row.id: specs_of(context, row) for row in rows}
    unplaced = [row for row in rows if specs[row.id]]
    files = [NewFile(row.id, row.size, policy_key(spec.name for spec in specs[row.id])) for row in unplaced]
    plan = plan_batches(context.rse, context.carriers.open_carriers(), files, context.config.carrier, utcnow())
    context.carriers.record(plan.opened, plan.assigned, {row.id: row.size for row in unplaced})
    members: dict[tuple[str, str], list[tuple[str, str]]] = {(CARRIER_SCOPE, c.name): [] for c in plan.opened}
    for row in unplaced:
        members.setdefault((CARRIER_SCOPE, plan.assigned[row.id]), []).append((str(row.scope), str(row.name)))
    context.catalogue.add_to_carriers(members)
    uncovered = [row for row in rows if not specs[row.id]]
    if uncovered:
        context.ledger.note(uncovered, ACTOR, "no replication rule in the policy covers this level: kept at the source")


def _close_if_due(context: Context, carrier: LedgerCarrier) -> int:
    from rucio_magic_ext.carrier.batches import OpenCarrier, closing_reason

    if carrier.state is CarrierState.OPEN:
        state = OpenCarrier(carrier.name, carrier.policy, carrier.files, carrier.bytes, carrier.opened_at)
        reason = closing_reason(state, context.config.carrier, utcnow())
        if reason is None:
            return 0
        context.carriers.move(carrier, CarrierState.CLOSING, detail=f"closed: {reason}")
    files = context.carriers.files(carrier.name)
    did = (CARRIER_SCOPE, carrier.name)
    context.catalogue.add_to_carriers({did: [(str(f.scope), str(f.name)) for f in files]})
    context.catalogue.close([did])
    specs = {spec.name: spec for spec in context.policy.rules}
    requests = [
        RuleRequest(
            CARRIER_SCOPE,
            carrier.name,
            context.rse,
            1,
            SOURCE_RULE_COMMENT,
            CARRIER_ACTIVITY,
            grouping="NONE",
            purge_replicas=True,
        )
    ]
    requests += [
        RuleRequest(
            CARRIER_SCOPE,
            carrier.name,
            specs[name].rse_expression,
            specs[name].copies,
            DESTINATION_RULE_COMMENT.format(rule=name),
            specs[name].activity,
            grouping=specs[name].grouping,
        )
        for name in carrier.policy.split(",")
        if name in specs
    ]
    rules = context.catalogue.ensure_rules(requests)
    # Files first, carrier last: a crash in between leaves the carrier CLOSING, and closing it again is harmless.
    waiting = [f for f in files if f.state is FileState.REGISTERED]
    context.ledger.move(waiting, FileState.PROTECTED, ACTOR, f"in carrier {carrier.name}, rules in place")
    context.carriers.move(
        carrier,
        CarrierState.PROTECTING,
        source_rule=rules[requests[0]],
        destination_rules=",".join(rules[request] for request in requests[1:]),
    )
    context.logger(logging.INFO, "carrier %s closed: %d file(s), %d byte(s)", carrier.name, len(files), carrier.bytes)
    return len(waiting)
