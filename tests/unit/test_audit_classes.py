"""The audit's classification, case by case, without a stack: three views of an RSE in, every difference out."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from rucio_magic_ext.audit.classes import (
    Booked,
    CarrierSeen,
    Collection,
    Kind,
    Replica,
    RuleSeen,
    StoredFile,
    Views,
    classify,
    counts,
    is_flow_collection,
    needs_rules,
    night_of_path,
)
from rucio_magic_ext.ledger.states import CarrierState, FileState
from rucio_magic_ext.replication import parse_policy
from rucio_magic_ext.rucio_db import RuleRow

NOW = datetime(2022, 3, 10, 12, 0, 0)
OLD = (NOW - timedelta(days=3)).timestamp()
FRESH = (NOW - timedelta(minutes=5)).timestamp()
RAW = "M1/DAQ/RAW/2022_03_01/20220301_M1_05086952.001_D_CrabNebula-W0.40+035.raw.gz"
CAL = "M1/OSA/Calibrated/2022/03/01/20220301_M1_05086952.001_Y_CrabNebula-W0.40+035.root"
RAW_RUN, CAL_RUN = "M1_RAW_20220301_05086952", "M1_Calibrated_20220301_05086952"
POLICY = parse_policy(
    {
        "rule": [
            {"name": "raw-to-pic", "levels": ["RAW"], "rse_expression": "PIC-DISK"},
            {"name": "analysis-to-pic", "levels": ["Calibrated", "DL3"], "rse_expression": "PIC-DISK"},
        ]
    }
).rules


def stored(path: str, size: int = 100, mtime: float = OLD) -> StoredFile:
    return StoredFile(path, size, mtime)


def replica(path: str, size: int = 100, adler32: str = "0000abcd", state: str = "AVAILABLE") -> Replica:
    return Replica("magic_raw", path.rsplit("/", 1)[-1], path, size, adler32, state)


def booked(
    path: str, state: FileState, size: int = 100, carrier: str | None = None, dataset: str | None = None
) -> Booked:
    return Booked(path, "magic_raw", path.rsplit("/", 1)[-1], state, size, "0000abcd", carrier, dataset)


def views(storage=(), replicas=(), ledger=(), source=True, **more) -> Views:
    return Views("ORM-ONSITE", source, storage, replicas, ledger, policy=POLICY, **more)


def keys(found, kind: Kind) -> list[str]:
    return [finding.key for finding in found.of(kind)]


def test_three_views_that_agree_show_nothing_out_of_place() -> None:
    found = classify(views([stored(RAW)], [replica(RAW)], [booked(RAW, FileState.PROTECTED)]), NOW)
    assert found.clean and found.counts() == {kind.value: 0 for kind in Kind}
    assert (found.listed, found.registered, found.booked) == (1, 1, 1)


def test_a_file_nobody_discovered_is_dark_once_older_than_the_minimum_age() -> None:
    found = classify(views([stored(RAW), stored(CAL, mtime=FRESH)]), NOW)
    assert keys(found, Kind.DARK) == [RAW]
    assert keys(found, Kind.NEW) == [CAL]  # still the scanner's business
    assert found.of(Kind.DARK)[0].bytes == 100 and found.of(Kind.DARK)[0].mtime == OLD
    assert not classify(views([stored(CAL, mtime=FRESH)]), NOW).of(Kind.DARK)
    assert classify(views([stored(CAL, mtime=FRESH)]), NOW).clean  # new is not out of place


@pytest.mark.parametrize("state", [FileState.REJECTED, FileState.QUARANTINED, FileState.SEEN, FileState.DELETED])
def test_a_file_the_ledger_knows_is_not_dark_whatever_its_state(state: FileState) -> None:
    assert classify(views([stored(RAW)], ledger=[booked(RAW, state)]), NOW).clean


def test_a_file_rucio_knows_is_not_dark_even_while_being_copied() -> None:
    assert classify(views([stored(RAW, size=3)], [replica(RAW, state="COPYING")], source=False), NOW).clean


def test_an_available_replica_missing_on_storage_is_lost_one_being_written_is_not() -> None:
    found = classify(views([], [replica(RAW), replica(CAL, state="COPYING")], [booked(RAW, FileState.DELETED)]), NOW)
    assert keys(found, Kind.LOST) == [RAW]
    lost = found.of(Kind.LOST)[0]
    assert (lost.scope, lost.name, lost.bytes, lost.state) == ("magic_raw", RAW.rsplit("/", 1)[-1], 100, "DELETED")


def test_the_ledger_alone_at_the_source_before_deletion() -> None:
    ledger = [booked(RAW, FileState.PROTECTED), booked(CAL, FileState.DELETED)]
    found = classify(views(ledger=ledger), NOW)
    assert keys(found, Kind.LEDGER_ONLY) == [RAW]
    assert found.of(Kind.LEDGER_ONLY)[0].state == "PROTECTED"
    assert classify(views(ledger=[booked(RAW, FileState.QUARANTINED)]), NOW).clean  # set aside, not flowing


def test_the_ledger_alone_at_a_destination_once_its_copy_was_proven() -> None:
    ledger = [booked(RAW, FileState.DELETED), booked(CAL, FileState.PROTECTED)]
    found = classify(views(ledger=ledger, source=False), NOW)
    assert keys(found, Kind.LEDGER_ONLY) == [RAW]  # a copy not yet verified is not expected there


def test_a_ledger_row_whose_replica_rucio_keeps_at_another_path_is_not_ledger_only() -> None:
    elsewhere = Replica("magic_raw", RAW.rsplit("/", 1)[-1], "other/place", 100, "0000abcd", "AVAILABLE")
    found = classify(views([stored("other/place")], [elsewhere], [booked(RAW, FileState.PROTECTED)]), NOW)
    assert found.clean


def test_sizes_differ_and_checksums_only_when_asked() -> None:
    storage = [stored(RAW, size=99), stored(CAL)]
    rucio = [replica(RAW), replica(CAL, adler32="0000abcd")]
    assert keys(classify(views(storage, rucio), NOW), Kind.SIZE) == [RAW]
    assert not classify(views(storage, rucio), NOW).of(Kind.CHECKSUM)
    asked: list[str] = []

    def adler32(path: str) -> str:
        asked.append(path)
        return "00001111"

    found = classify(views(storage, rucio), NOW, checksum=adler32)
    assert keys(found, Kind.CHECKSUM) == [CAL] and asked == [CAL]  # a file of another size is not read
    assert "00001111" in found.of(Kind.CHECKSUM)[0].detail
    assert classify(views([stored(CAL)], [replica(CAL, adler32="abcd")]), NOW, checksum=lambda _: "0000ABCD").clean
    assert classify(views([stored(CAL)], [replica(CAL)]), NOW, checksum=lambda _: None).clean  # unreadable: no proof


@pytest.mark.parametrize(
    ("carrier", "orphan"),
    [
        (CarrierSeen("c1", CarrierState.PROTECTING, dataset=True, rules=("r1",)), False),
        (CarrierSeen("c2", CarrierState.GONE, dataset=False), False),
        (CarrierSeen("c3", None, dataset=True), True),  # in Rucio only
        (CarrierSeen("c4", None, dataset=False, rules=("r4",)), True),  # a rule left behind
        (CarrierSeen("c5", CarrierState.GONE, dataset=True), True),  # closed in the ledger, not in Rucio
        (CarrierSeen("c6", CarrierState.PROTECTING, dataset=False), True),  # its dataset removed
    ],
)
def test_orphan_carriers(carrier: CarrierSeen, orphan: bool) -> None:
    found = classify(views(carriers=[carrier]), NOW)
    assert keys(found, Kind.ORPHAN_CARRIER) == ([f"magic_carrier:{carrier.name}"] if orphan else [])


def test_empty_run_datasets_and_night_containers_but_not_top_containers() -> None:
    empty = [
        Collection("magic_raw", "M1_RAW_20220301_05086952", "DATASET"),
        Collection("magic_raw", "M1_RAW_20220301", "CONTAINER"),
        Collection("magic_raw", "M1_RAW", "CONTAINER"),
        Collection("magic_raw", "user_things", "DATASET"),
    ]
    found = classify(views(collections=empty), NOW)
    assert keys(found, Kind.EMPTY_COLLECTION) == ["magic_raw:M1_RAW_20220301_05086952", "magic_raw:M1_RAW_20220301"]


def test_rules_the_policy_explains_and_those_it_does_not() -> None:
    def rule(rule_id: str, name: str, comment: str, expression: str = "PIC-DISK", copies: int = 1) -> RuleSeen:
        return RuleRow(rule_id, "magic_raw", name, comment, expression, copies, "magic_scanner")

    rules = [
        rule("ok", "M1_RAW_20220301_05086952", "magic-policy:raw-to-pic"),
        rule("user", "M1_RAW_20220301_05086952", "my copy"),
        rule("level", "M1_RAW_20220301_05086952", "magic-policy:analysis-to-pic"),
        rule("where", "M1_RAW_20220301_05086952", "magic-policy:raw-to-pic", "ORM-ONSITE"),
        rule("container", "M1_RAW_20220301", "magic-policy:raw-to-pic"),
    ]
    found = classify(views(rules=rules), NOW)
    unexplained = sorted(str(finding.state) for finding in found.of(Kind.UNEXPLAINED_RULE))
    assert unexplained == ["container", "level", "user", "where"]


def test_counts_read_no_data_and_the_fraction_says_when_the_listing_is_wrong() -> None:
    def views_of_many() -> Views:
        paths = [f"M1/DAQ/RAW/2022_03_01/file{i}" for i in range(100)]
        return views([stored(p) for p in paths], [replica(p) for p in paths[1:]], [])

    tally = counts(views_of_many(), NOW)
    assert tally["dark"] == 1 and sum(tally.values()) == 1
    found = classify(views_of_many(), NOW)
    assert found.fraction == pytest.approx(0.01)
    assert classify(views([], [replica(RAW)]), NOW).fraction == 1.0


def test_the_night_of_a_path_at_the_observatory_and_at_the_data_centre() -> None:
    assert night_of_path(RAW) == date(2022, 3, 1)
    assert night_of_path("M1/RAW/2022/03/01/" + RAW.rsplit("/", 1)[-1]) == date(2022, 3, 1)
    assert night_of_path("M1/DAQ/RAW/2022_03_02/notes.txt") == date(2022, 3, 2)
    assert night_of_path("README") is None


def test_a_run_dataset_whose_policy_rule_is_gone_holds_its_files_and_is_named() -> None:
    def rule(name: str, comment: str) -> RuleSeen:
        return RuleRow("r", "magic_raw", name, comment, "PIC-DISK", 1, "magic_scanner")

    cal = Booked(CAL, "magic_cal", CAL.rsplit("/", 1)[-1], FileState.VERIFIED, 5, "0000abcd", None, CAL_RUN)
    held = [booked(RAW, FileState.PROTECTED, size=7, dataset=RAW_RUN), cal]
    ruled = [rule(RAW_RUN, "magic-policy:raw-to-pic")]
    found = classify(views(replicas=[replica(RAW), replica(CAL)], ledger=held, needed=POLICY, policy_rules=ruled), NOW)
    (missing,) = found.of(Kind.MISSING_RULE)
    assert missing.key == "magic_cal:M1_Calibrated_20220301_05086952"
    assert (missing.bytes, missing.state) == (5, "analysis-to-pic")  # the entry to make it again from
    assert "1 file(s) held at the source until it is made again" in missing.detail
    unread = classify(views(replicas=[replica(RAW), replica(CAL)], ledger=held, needed=POLICY), NOW)
    assert not unread.of(Kind.MISSING_RULE)  # not checked when the rules were not read
    alone = classify(views(ledger=held, needed=POLICY, policy_rules=ruled), NOW)
    assert not alone.of(Kind.MISSING_RULE)  # ledger rows Rucio does not have are ledger-only, nothing more


@pytest.mark.parametrize(
    ("state", "source", "named"),
    [
        (FileState.CHECKSUMMED, True, False),  # its rules are made with its registration
        (FileState.REGISTERED, True, True),
        (FileState.RELEASED, True, False),  # let go at the source: the destination's audit names it
        (FileState.PROTECTED, False, False),  # no copy proven at the destination yet
        (FileState.DELETED, False, True),  # the only copies, with nothing to keep them
    ],
)
def test_which_files_need_their_policy_rules_where(state: FileState, source: bool, named: bool) -> None:
    row = booked(RAW, state, dataset=RAW_RUN if needs_rules(state, source) else None)  # as the views read it
    found = classify(views(replicas=[replica(RAW)], ledger=[row], source=source, needed=POLICY, policy_rules=[]), NOW)
    assert bool(found.of(Kind.MISSING_RULE)) is named
    if named and not source:
        assert "proven here with nothing to keep them" in found.of(Kind.MISSING_RULE)[0].detail


def test_a_policy_entry_whose_rules_expire_needs_none_to_stand() -> None:
    entry = {"name": "raw", "levels": ["RAW"], "rse_expression": "PIC", "lifetime_days": 30}
    expiring = parse_policy({"rule": [entry]})
    row = booked(RAW, FileState.PROTECTED, dataset=RAW_RUN)
    found = classify(views(replicas=[replica(RAW)], ledger=[row], needed=expiring.rules, policy_rules=[]), NOW)
    assert not found.of(Kind.MISSING_RULE)


def test_a_policy_rule_removed_through_rucios_api_only_expires_and_counts_as_missing() -> None:
    ends = NOW + timedelta(minutes=40)
    expiring = RuleRow("r", "magic_raw", RAW_RUN, "magic-policy:raw-to-pic", "PIC-DISK", 1, "root", ends)
    row = booked(RAW, FileState.PROTECTED, dataset=RAW_RUN)
    found = classify(views(replicas=[replica(RAW)], ledger=[row], needed=POLICY, policy_rules=[expiring]), NOW)
    (missing,) = found.of(Kind.MISSING_RULE)
    assert "only a rule set to expire at 2022-03-10 12:40:00 UTC (removed)" in missing.detail


def test_a_rule_with_a_policy_comment_that_the_flow_did_not_make_is_foreign_and_counts_for_nothing() -> None:
    """A writer's (or an operator's) rule with the policy's comment is named, and the run still lacks the flow's."""
    mine = RuleRow("r1", "magic_raw", RAW_RUN, "magic-policy:raw-to-pic", "PIC-DISK", 1, "magic_scanner")
    theirs = RuleRow("r2", "magic_raw", RAW_RUN, "magic-policy:raw-to-pic", "PIC-DISK", 1, "mallory")
    elsewhere = RuleRow("r3", "magic_raw", RAW_RUN, "magic-policy:raw-to-pic", "PIC-TAPE", 1, "magic_scanner")
    held = [booked(RAW, FileState.PROTECTED, dataset=RAW_RUN)]
    found = classify(
        views([stored(RAW)], [replica(RAW)], held, rules=[mine, theirs, elsewhere], policy_rules=[theirs, elsewhere],
              needed=POLICY, account="magic_scanner"),
        NOW,
    )
    foreign = {finding.state: finding.detail for finding in found.of(Kind.FOREIGN_RULE)}
    assert set(foreign) == {"r2", "r3"}
    assert "made by account mallory, not by the flow's magic_scanner" in foreign["r2"]
    assert "asks 'PIC-TAPE', the policy 'PIC-DISK'" in foreign["r3"]
    assert not found.of(Kind.UNEXPLAINED_RULE)
    (missing,) = found.of(Kind.MISSING_RULE)  # neither stands in for the flow's own rule
    assert missing.key == f"magic_raw:{RAW_RUN}" and "has no rule on it" in missing.detail


def test_collections_the_flow_would_fill_that_another_account_made_or_that_expire_are_foreign() -> None:
    ends = NOW + timedelta(hours=1)
    found = classify(
        views(
            foreign_collections=[
                Collection("magic_raw", RAW_RUN, "DATASET", "mallory"),
                Collection("magic_raw", "M1_RAW_20220301", "CONTAINER", "magic_scanner", ends),
            ],
            account="magic_scanner",
        ),
        NOW,
    )
    details = {finding.key: finding.detail for finding in found.of(Kind.FOREIGN_COLLECTION)}
    assert "made by account mallory" in details[f"magic_raw:{RAW_RUN}"]
    assert "set to expire" in details["magic_raw:M1_RAW_20220301"]
    assert len(details) == 2
    assert is_flow_collection(RAW_RUN) and is_flow_collection("M1_RAW") and not is_flow_collection("my_analysis")


def test_two_dids_whose_replicas_name_one_path_are_a_shared_path() -> None:
    decoy = Replica("trust_commissioning", "decoy", RAW, 100, "00000001", "AVAILABLE")
    found = classify(views([stored(RAW)], [replica(RAW), decoy], [booked(RAW, FileState.PROTECTED)]), NOW)
    (shared,) = found.of(Kind.SHARED_PATH)
    assert shared.key == RAW and "is also the replica of trust_commissioning:decoy" in shared.detail
    assert not found.clean
