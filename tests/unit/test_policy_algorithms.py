"""The policy package's adapters, without Rucio's configuration (tests/integration loads them into Rucio)."""

import pytest
from packaging.specifiers import SpecifierSet
from rucio.common.exception import RucioException
from rucio.version import version_string

from rucio_magic_ext import policy
from rucio_magic_ext.policy import algorithms

RAW = "20200103_M2_05088072.001_D_BLLac-W0.40+090.raw.gz"


def test_supported_version_admits_the_installed_rucio_and_only_41() -> None:
    supported = SpecifierSet(policy.SUPPORTED_VERSION)
    assert version_string() in supported
    assert "41.0.0" in supported and "41.5.1" in supported
    assert "40.4.2" not in supported and "42.0.0" not in supported


def test_get_algorithms_registers_magic_for_each_type() -> None:
    registered = policy.get_algorithms()
    assert set(registered) == {"lfn2pfn", "non_deterministic_pfn", "scope"}
    assert all(set(names) == {"magic"} for names in registered.values())


def test_lfn2pfn_and_non_deterministic_pfn_follow_the_layout() -> None:
    expected = f"M2/RAW/2020/01/03/{RAW}"
    assert algorithms.lfn2pfn("magic_raw", RAW, "PIC-DISK", {}, {}) == expected
    assert algorithms.non_deterministic_pfn("M2_RAW_20200103_05088072", "magic_raw", RAW) == "/" + expected
    assert algorithms.lfn2pfn("user.jdoe", "notes.txt", "PIC-DISK", {}, {}).endswith("/notes.txt")


@pytest.mark.parametrize(
    ("did", "expected"),
    [
        (RAW, ("magic_raw", RAW)),
        ("M1_Calibrated_20200103", ("magic_cal", "M1_Calibrated_20200103")),
        ("ST_Melibea", ("magic_st", "ST_Melibea")),
        ("magic_cal:anything", ("magic_cal", "anything")),
        ("M1_Calibrated/", ("magic_cal", "M1_Calibrated")),
    ],
)
def test_extract_scope(did: str, expected: tuple[str, str]) -> None:
    assert algorithms.extract_scope(did, None) == expected


@pytest.mark.parametrize("did", ["notes.txt", "a:b:c", ":name"])
def test_extract_scope_refuses_with_a_reason(did: str) -> None:
    with pytest.raises(RucioException, match="scope"):
        algorithms.extract_scope(did, None)
