"""Rules the flow wants, grouped so that Rucio makes each policy entry's rules on many run datasets in one call."""

from __future__ import annotations

from rucio_magic_ext.rucio_db import RuleRequest, _alike


def _request(name: str, rse: str = "PIC-DISK", comment: str = "magic-policy:raw", **options: object) -> RuleRequest:
    return RuleRequest("magic_raw", name, rse, 1, comment, "MAGIC Export", **options)  # type: ignore[arg-type]


def test_requests_alike_but_for_their_did_go_together_in_their_first_order() -> None:
    a, b, c = _request("run_a"), _request("run_b"), _request("run_c")
    tape = _request("run_a", rse="PIC-TAPE", comment="magic-policy:raw-tape")
    assert _alike([a, tape, b, c]) == [[a, b, c], [tape]]


def test_any_other_difference_keeps_requests_apart() -> None:
    plain = _request("run_a")
    others = [
        _request("run_b", source_replica_expression="PIC-DISK"),
        _request("run_c", locked=True),
        _request("run_d", lifetime=3600),
        _request("run_e", grouping="NONE"),
        _request("run_f", purge_replicas=True),
    ]
    assert _alike([plain, *others]) == [[plain], *[[other] for other in others]]
