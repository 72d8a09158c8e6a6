from pathlib import Path

import pytest

from rucio_magic_ext.naming import Level, Telescope
from rucio_magic_ext.replication import PolicyError, load_policy, parse_policy

ETC = Path(__file__).parents[2] / "etc"


def test_the_shipped_policy_covers_every_level() -> None:
    policy = load_policy(ETC / "replication-policy.toml")
    assert [rule.name for rule in policy.rules_for(Level.RAW, Telescope.M1)] == ["raw-to-pic"]
    assert policy.rules_for(Level.MELIBEA, Telescope.STEREO)[0].rse_expression == "PIC-DISK"
    assert policy.uncovered() == []
    assert all(rule.activity == "MAGIC Export" and rule.lifetime is None for rule in policy.rules)


def test_calibrated_data_to_two_disks_and_raw_to_tape() -> None:
    policy = parse_policy(
        {
            "defaults": {"activity": "MAGIC Export"},
            "rule": [
                {"name": "raw", "levels": ["RAW"], "rse_expression": "PIC-TAPE", "activity": "MAGIC Tape"},
                {"name": "cal", "levels": ["Calibrated"], "rse_expression": "type=DISK", "copies": 2},
                {"name": "m1-scratch", "levels": ["Calibrated"], "telescopes": ["M1"], "rse_expression": "SCRATCH",
                 "lifetime_days": 30},
            ],
        }
    )  # fmt: skip
    assert [(rule.name, rule.copies) for rule in policy.rules_for(Level.CALIBRATED, Telescope.M1)] == [
        ("cal", 2),
        ("m1-scratch", 1),
    ]
    assert [rule.name for rule in policy.rules_for(Level.CALIBRATED, Telescope.M2)] == ["cal"]
    assert policy.rules_for(Level.RAW, Telescope.M2)[0].activity == "MAGIC Tape"
    assert policy.rules_for(Level.CALIBRATED, Telescope.M1)[1].lifetime == 30 * 86400
    assert (Telescope.STEREO, Level.DL3) in policy.uncovered()


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ({"levels": ["RAW"]}, "rse_expression is required"),
        ({"rse_expression": "X"}, "'levels' is required"),
        ({"levels": ["Raw"], "rse_expression": "X"}, "'Raw' is not a valid Level"),
        ({"levels": ["RAW"], "rse_expression": "X", "copies": 0}, "copies must be at least 1"),
        ({"levels": ["RAW"], "rse_expression": "X", "lifetime_days": 0}, "lifetime_days must be positive"),
        ({"levels": ["RAW"], "rse_expression": "X", "grouping": "RUN"}, "grouping must be one of"),
        ({"levels": ["RAW"], "rse_expression": "X", "copy": 2}, "unknown key(s) ['copy']"),
    ],
)
def test_a_wrong_policy_is_refused_with_the_reason(rule: dict, says: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({"rule": [rule]})
    assert says in str(caught.value)


def test_an_empty_policy_or_duplicate_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no \\[\\[rule\\]\\]"):
        parse_policy({})
    with pytest.raises(PolicyError, match="unique"):
        parse_policy({"rule": [{"name": "a", "levels": ["RAW"], "rse_expression": "X"}] * 2})
    broken = tmp_path / "policy.toml"
    broken.write_text("[[rule]\n")
    with pytest.raises(PolicyError, match=str(broken)):
        load_policy(broken)
