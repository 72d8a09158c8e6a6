"""``rucio-magic scope retire SCOPE``: remove a whole test or commissioning scope, which Rucio 41 cannot do by
itself. Runs server-side (Rucio's core API on the database of ``rucio.cfg``), as an admin."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rucio_magic_ext import layout
from rucio_magic_ext.carrier.model import CARRIER_SCOPE
from rucio_magic_ext.replication import PolicyError, load_policy
from rucio_magic_ext.retire.plan import Plan, make_plan, protected_scopes, render, scope_refusal

REFUSED = 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``scope retire`` on ``rucio-magic``'s subcommands."""
    scope = subparsers.add_parser("scope", help="whole scopes: retire a test or commissioning scope")
    actions = scope.add_subparsers(dest="scope_command", required=True)
    retire = actions.add_parser(
        "retire",
        help="remove every DID, rule and replica of a scope (Rucio's undertaker and reaper do the deleting)",
        description="Runs server-side, as an admin: every rule on the scope's DIDs is removed (locked ones unlocked "
        "first, any account's), its collections are detached from other scopes and emptied and get an expiry, its "
        "replicas an OBSOLETE tombstone. Rucio's undertaker then deletes the collections, its reaper the bytes and "
        "the files' DIDs. Rucio 41 cannot delete a scope: the empty scope stays. MAGIC's scopes, the carriers' and "
        "those the replication policy places files in are refused, as is a scope with files inside other scopes' "
        "collections or files whose only copies are at non-deterministic RSEs (unless --force-only-copies; a copy "
        "elsewhere counts only once read at its storage with its registered size and adler32). A replica at a "
        "non-deterministic RSE whose path another scope's DID names too is kept in place, its file's DID with it, "
        "and named: deleting the path would delete that DID's bytes. Exit 2: refused, nothing changed.",
    )
    retire.add_argument("scope")
    retire.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    retire.add_argument(
        "--force-only-copies",
        action="store_true",
        help="also retire files whose only copies are at non-deterministic (source) RSEs",
    )
    retire.add_argument(
        "--wait", action="store_true", help="then wait until no DID, rule or replica of the scope is left"
    )
    retire.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits (default: %(default)s)")
    retire.add_argument(
        "--policy", type=Path, help="the replication policy (default: [magic-scanner] replication_policy)"
    )
    retire.set_defaults(handler=run)


def protected(policy: Path | None) -> frozenset[str]:
    """MAGIC's scopes, the carriers', the scopes the policy's levels place files in, ``[magic-policy] scopes``."""
    from rucio.common.config import config_get

    if policy is None:
        configured = config_get("magic-scanner", "replication_policy", raise_exception=False, default=None)
        policy = Path(configured) if configured else None
    levels = {level for rule in load_policy(policy).rules for level in rule.levels} if policy else set()
    extra = config_get("magic-policy", "scopes", raise_exception=False, default="") or ""
    return protected_scopes(
        (*layout.SCOPES, CARRIER_SCOPE), (layout.SCOPE_OF_LEVEL[level] for level in levels), extra.split(",")
    )


def run(args: argparse.Namespace) -> int:
    """Refuse before reading the scope where its name suffices; print the plan; carry it out unless a dry run."""
    from rucio_magic_ext.retire import catalogue

    try:
        guarded = protected(args.policy)
    except (OSError, PolicyError) as error:
        return _refuse(args.scope, f"cannot read the replication policy: {error}")
    refusal = scope_refusal(args.scope, guarded)
    if refusal:
        return _refuse(args.scope, refusal.reason)
    if not catalogue.scope_exists(args.scope):
        return _refuse(args.scope, f"Rucio has no scope {args.scope}")
    plan = make_plan(catalogue.read_inventory(args.scope), guarded, args.force_only_copies)
    print("\n".join(render(plan)))
    if plan.refused:
        for refusal in plan.refusals:
            _refuse(args.scope, refusal.reason, refusal.names)
        return REFUSED
    if args.dry_run:
        print("dry run: nothing changed")
        return 0
    catalogue.carry_out(plan, print)
    if plan.kept:
        print(f"scope {args.scope} keeps {len(plan.kept)} replica(s) whose path another scope's DID names, and "
              "their files' DIDs: run the retirement again once those DIDs' replicas have left the path")  # fmt: skip
    print(f"scope {args.scope} stays, empty once Rucio's daemons are done: Rucio 41 has no scope deletion")
    return wait(args.scope, args.timeout, kept_counts(plan)) if args.wait else 0


def kept_counts(plan: Plan) -> dict[str, int]:
    """What stays of the scope once Rucio's daemons are done: the kept replicas and their files' DIDs."""
    return {"dids": len({entry.replica.did for entry in plan.kept}), "rules": 0, "replicas": len(plan.kept)}


def wait(scope: str, timeout: float, kept: dict[str, int] | None = None, every: float = 5) -> int:
    """Poll until no DID, rule or replica of ``scope`` is left but those ``kept``; 1 if more remain at the timeout."""
    from rucio_magic_ext.retire import catalogue

    kept = kept or {}
    deadline = time.monotonic() + timeout
    while True:
        counts = catalogue.left(scope)
        if all(n <= kept.get(what, 0) for what, n in counts.items()):
            staying = ", ".join(f"{n} {what}" for what, n in kept.items() if n)
            print(f"scope {scope}: no DID, rule or replica left" + (f" but the kept {staying}" if staying else ""))
            return 0
        if time.monotonic() >= deadline:
            shown = ", ".join(f"{n} {what}" for what, n in counts.items())
            print(f"scope {scope}: still {shown} after {timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(every)


def _refuse(scope: str, reason: str, names: tuple[str, ...] = ()) -> int:
    print(f"rucio-magic scope retire {scope}: refused, nothing changed: {reason}", file=sys.stderr)
    for name in names:
        print(f"  {name}", file=sys.stderr)
    return REFUSED
