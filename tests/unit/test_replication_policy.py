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


def chain(*extra: dict) -> dict:
    """RAW to PIC-DISK from La Palma, and the entries given."""
    return {"rule": [{"name": "disk", "levels": ["RAW"], "rse_expression": "PIC-DISK"}, *extra]}


def test_copies_after_the_first_come_from_the_first_destination() -> None:
    policy = parse_policy(
        chain(
            {"name": "tape", "levels": ["RAW"], "rse_expression": "PIC-TAPE", "source": "PIC-DISK"},
            {"name": "second", "levels": ["RAW"], "telescopes": ["M1"], "rse_expression": "DC2-DISK",
             "source": " PIC-DISK "},
        )
    )  # fmt: skip
    assert [(rule.name, rule.source) for rule in policy.rules_for(Level.RAW, Telescope.M1)] == [
        ("disk", None),
        ("tape", "PIC-DISK"),
        ("second", "PIC-DISK"),
    ]


def test_a_default_source_is_undone_by_an_empty_one() -> None:
    policy = parse_policy(
        {
            "defaults": {"source": "PIC-DISK"},
            "rule": [
                {"name": "disk", "levels": ["RAW"], "rse_expression": "PIC-DISK", "source": ""},
                {"name": "tape", "levels": ["RAW"], "rse_expression": "PIC-TAPE"},
            ],
        }
    )
    assert [rule.source for rule in policy.rules] == [None, "PIC-DISK"]


def test_the_shipped_example_sends_one_copy_from_la_palma(tmp_path: Path) -> None:
    """The commented three-destination example of etc/replication-policy.toml, uncommented, is a valid policy."""
    lines = (ETC / "replication-policy.toml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# [[rule]]"))
    example = tmp_path / "policy.toml"
    example.write_text("\n".join(line[2:] for line in lines[start:] if line.startswith("#")))
    policy = load_policy(example)
    raw = policy.rules_for(Level.RAW, Telescope.M1)
    assert [rule.source for rule in raw] == [None, "PIC-DISK", "PIC-DISK"]
    assert len({rule.rse_expression for rule in raw}) == 3


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"name": "x", "levels": ["RAW"], "rse_expression": "PIC-DISK", "source": "PIC-DISK"}, "its own destination"),
        ({"name": "x", "levels": ["RAW"], "rse_expression": "T", "source": "PIC-TAPE"}, "no other rule's"),
        ({"name": "x", "levels": ["RAW", "DL3"], "rse_expression": "T", "source": "PIC-DISK"}, "no copy of M1 DL3"),
    ],
)  # fmt: skip
def test_a_source_no_rule_fills_is_refused(extra: dict, says: str) -> None:
    with pytest.raises(PolicyError, match=f"rule 'x': source .*{says}"):
        parse_policy(chain(extra))


def test_a_source_must_be_filled_from_la_palma_by_copies_that_stay() -> None:
    to_tape = {"name": "tape", "levels": ["RAW"], "rse_expression": "PIC-TAPE", "source": "PIC-DISK"}
    from_tape = {"name": "x", "levels": ["RAW"], "rse_expression": "T", "source": "PIC-TAPE"}
    with pytest.raises(PolicyError, match="filled by \\['tape'\\], which take their copies from elsewhere"):
        parse_policy(chain(to_tape, from_tape))
    scratch = {"name": "scratch", "levels": ["RAW"], "rse_expression": "SCRATCH", "lifetime_days": 7}
    with pytest.raises(PolicyError, match="filled by \\['scratch'\\], whose copies expire"):
        parse_policy(chain(scratch, {**from_tape, "source": "SCRATCH"}))
    a = {"name": "a", "levels": ["RAW"], "rse_expression": "A", "source": "B"}
    b = {"name": "b", "levels": ["RAW"], "rse_expression": "B", "source": "A"}
    with pytest.raises(PolicyError, match="elsewhere too"):  # a loop would wait for ever
        parse_policy({"rule": [a, b]})
