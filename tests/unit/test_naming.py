from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rucio_magic_ext.naming import (
    RAW_RUN_TYPES,
    Family,
    Level,
    MagicName,
    MagicNameError,
    Telescope,
    format_name,
    is_magic_name,
    parse,
)

EXAMPLES = {
    "20200103_M2_05088072.001_D_BLLac-W0.40+090.raw.gz": dict(
        family=Family.RAW,
        telescope=Telescope.M2,
        night=date(2020, 1, 3),
        run=5088072,
        subrun=1,
        run_type="D",
        source="BLLac",
        wobble_offset=Decimal("0.40"),
        wobble_angle=90,
        extension="raw",
        compression="gz",
    ),
    "20210314_M1_05095172.001_Y_CrabNebula-W0.40+035.root": dict(
        family=Family.CALIBRATED,
        telescope=Telescope.M1,
        night=date(2021, 3, 14),
        subrun=1,
        run_type="Y",
        source="CrabNebula",
        wobble_angle=35,
        extension="root",
        compression=None,
    ),
    "20191127_M1_05086952.001_I_CrabNebula-W0.40+035.root": dict(family=Family.STAR, run=5086952),
    "20210314_05095172_S_CrabNebula-W0.40+035.root": dict(
        family=Family.SUPERSTAR, telescope=Telescope.STEREO, subrun=None, run_type="S"
    ),
    "20150313_05041823_Q_CrabNebula-W0.40+035.root": dict(family=Family.MELIBEA, run=5041823),
    "20131004_05029747_DL3_CrabNebula-W0.40+035.fits": dict(family=Family.DL3, run_type="DL3", extension="fits"),
    "20131004_05029747_DL3_CrabNebula-W0.40+035.fits.gz": dict(family=Family.DL3, compression="gz"),
    "run_05029747_DL3.fits": dict(family=Family.DL3_RUN, night=None, source=None, telescope=Telescope.STEREO),
    "20200211_M1_05089060.001_P_Aur-Iota-3.raw.gz": dict(run_type="P", source="Aur-Iota-3", wobble_offset=None),
    "20200204_M1_05089023.001_B_Regulus.raw": dict(run_type="B", extension="raw", compression=None),
    "20191003_M1_05085620.012_D_Boomerang-W3.root": dict(family=Family.MERPP, source="Boomerang-W3"),
    "20191003_M1_05085621.001_Y_CGRaBSJ0211+-W0.40+000.root": dict(source="CGRaBSJ0211+", wobble_angle=0),
    "20191003_M1_05085621.001_Y_4C+39.12-W0.40+180.root": dict(source="4C+39.12"),
    "20191003_M1_05085621.001_Y_4C+39.12.h5": dict(source="4C+39.12", extension="h5"),
    "GA_M1_za05to35_8_821318_Y_w0.root": dict(
        family=Family.SIMULATION,
        telescope=Telescope.M1,
        zenith_range=(5, 35),
        production=8,
        run=821318,
        run_type="Y",
        mc_wobble="w0",
        night=None,
    ),
    "GA_za05to35_8_1743990_S_wr.root": dict(family=Family.SIMULATION, telescope=Telescope.STEREO, run_type="S"),
    "ssignal05086952.001_M1.root": dict(family=Family.SIGNAL, run=5086952, subrun=1, telescope=Telescope.M1),
    "scalib05083180_M2.root": dict(family=Family.CALIBRATION_CONSTANTS, run=5083180, telescope=Telescope.M2),
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_parse_and_round_trip(name: str) -> None:
    record = parse(name)
    for field, expected in EXAMPLES[name].items():
        assert getattr(record, field) == expected, field
    assert format_name(record) == name
    assert record.name == name


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("20200103_M2_05088072.001_D_BLLac-W0.40+090.raw.gz", Level.RAW),
        ("20200103_M2_05088072.001_D_BLLac-W0.40+090.root", Level.CALIBRATED),
        ("ssignal05086952.001_M1.root", Level.CALIBRATED),
        ("20191127_M1_05086952.001_I_CrabNebula-W0.40+035.root", Level.STAR),
        ("20150313_05041823_Q_CrabNebula-W0.40+035.root", Level.MELIBEA),
        ("GA_za05to35_8_1743990_Q_w0.root", Level.MELIBEA),
        ("run_05029747_DL3.fits", Level.DL3),
    ],
)
def test_levels(name: str, level: Level) -> None:
    assert parse(name).level is level


@pytest.mark.parametrize(
    ("name", "part", "says"),
    [
        ("Output_flute.root", "name", "not unique by itself"),
        ("Status_flute.root", "name", "not unique by itself"),
        ("20200103_M2_0508807.001_D_BLLac.raw.gz", "run", "8 digits"),
        ("20200103_M2_05088072.01_D_BLLac.raw.gz", "subrun", "3 digits"),
        ("20201303_M2_05088072.001_D_BLLac.raw.gz", "night", "not a calendar date"),
        ("20200103_M3_05088072.001_D_BLLac.raw.gz", "telescope", "M1 or M2"),
        ("20200103_M2_05088072.001_X_BLLac.raw", "run type", "'X'"),
        ("20200103_M2_05088072.001_Y_BLLac.raw", "extension", "does not fit run type Y"),
        ("20200103_M2_05088072.001_D_BLLac.txt", "extension", ".raw, .raw.gz, .root or .h5"),
        ("20200103_M2_05088072.001_Y_BLLac.root.gz", "extension", "not stored compressed"),
        ("20200103_M2_05088072.001_D_.raw", "source", "target name"),
        ("20200103_05088072_X_CrabNebula.root", "run type", "S (superstar)"),
        ("20200103_05088072_DL3_CrabNebula.root", "extension", ".fits"),
        ("GA_M1_za35to05_8_821318_Y_w0.root", "zenith range", "empty"),
        ("GA_M1_za05to35_8_0821318_Y_w0.root", "run", "without leading zeros"),
        ("ssignal05086952_M1.root", "subrun", "3 digits"),
        ("M1/20200103_M2_05088072.001_D_BLLac.raw", "name", "not a path"),
        ("README.txt", "name", "not a MAGIC name"),
        ("", "name", "not a MAGIC name"),
    ],
)
def test_refusals_say_which_part(name: str, part: str, says: str) -> None:
    with pytest.raises(MagicNameError) as caught:
        parse(name)
    assert caught.value.part == part
    assert says in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert not is_magic_name(name)


def test_str_shows_every_field() -> None:
    shown = str(parse("20200103_M2_05088072.001_D_BLLac-W0.40+090.raw.gz"))
    for text in ("raw", "M2", "2020-01-03", "5088072", "BLLac", "0.40", "90", "gz", "RAW", "subrun", "run_type"):
        assert text in shown


def test_records_are_immutable() -> None:
    record = parse("20200103_M2_05088072.001_D_BLLac-W0.40+090.raw.gz")
    with pytest.raises(AttributeError):
        record.run = 1  # type: ignore[misc]


# --- property-based: format(parse(x)) == x over generated names ------------------------------------

sources = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9+.\-]{0,11}", fullmatch=True).filter(
    lambda s: not s.endswith(".") and ".raw" not in s and ".root" not in s and ".h5" not in s and ".fits" not in s
)
nights = st.dates(min_value=date(2003, 1, 1), max_value=date(2099, 12, 31))
wobbles = st.one_of(
    st.tuples(st.none(), st.none()),
    st.tuples(st.decimals(min_value=0, max_value=9, places=2), st.integers(0, 359)),
)


@st.composite
def telescope_names(draw: st.DrawFn) -> str:
    run_type = draw(st.sampled_from([*sorted(RAW_RUN_TYPES), "Y", "I"]))
    if run_type in RAW_RUN_TYPES:
        extension, compression = draw(st.sampled_from([("raw", None), ("raw", "gz"), ("root", None), ("h5", None)]))
    else:
        extension, compression = draw(st.sampled_from([("root", None), ("h5", None)]))
    offset, angle = draw(wobbles)
    wobble = f"-W{offset:.2f}+{angle:03d}" if offset is not None else ""
    suffix = f".{extension}" + (f".{compression}" if compression else "")
    return (
        f"{draw(nights):%Y%m%d}_M{draw(st.sampled_from('12'))}_{draw(st.integers(0, 99999999)):08d}."
        f"{draw(st.integers(0, 999)):03d}_{run_type}_{draw(sources)}{wobble}{suffix}"
    )


@st.composite
def stereo_names(draw: st.DrawFn) -> str:
    run_type = draw(st.sampled_from(["S", "Q", "DL3"]))
    suffix = draw(st.sampled_from([".fits", ".fits.gz"] if run_type == "DL3" else [".root", ".h5"]))
    offset, angle = draw(wobbles)
    wobble = f"-W{offset:.2f}+{angle:03d}" if offset is not None else ""
    return f"{draw(nights):%Y%m%d}_{draw(st.integers(0, 99999999)):08d}_{run_type}_{draw(sources)}{wobble}{suffix}"


@st.composite
def other_names(draw: st.DrawFn) -> str:
    run = draw(st.integers(0, 99999999))
    low = draw(st.integers(0, 98))
    high = draw(st.integers(low + 1, 99))
    mc = f"za{low:02d}to{high:02d}_{draw(st.integers(0, 20))}_{draw(st.integers(1, 10**7))}"
    mc_wobble = draw(st.sampled_from(["w0", "w1", "wr"]))
    return draw(
        st.sampled_from(
            [
                f"run_{run:08d}_DL3.fits",
                f"run_{run:08d}_DL3.fits.gz",
                f"ssignal{run:08d}.{draw(st.integers(0, 999)):03d}_M{draw(st.sampled_from('12'))}.root",
                f"scalib{run:08d}_M{draw(st.sampled_from('12'))}.root",
                f"GA_M{draw(st.sampled_from('12'))}_{mc}_{draw(st.sampled_from('YI'))}_{mc_wobble}.root",
                f"GA_{mc}_{draw(st.sampled_from('SQ'))}_{mc_wobble}.root",
            ]
        )
    )


@given(st.one_of(telescope_names(), stereo_names(), other_names()))
def test_format_parse_round_trip(name: str) -> None:
    record = parse(name)
    assert format_name(record) == name
    assert parse(format_name(record)) == record


@given(telescope_names())
def test_parsed_fields_are_what_was_written(name: str) -> None:
    record = parse(name)
    assert name.startswith(f"{record.night:%Y%m%d}_{record.telescope.value}_{record.run:08d}.{record.subrun:03d}_")
    assert f"_{record.run_type}_{record.source}" in name


@given(st.text(max_size=60))
def test_anything_either_parses_and_round_trips_or_raises_the_one_error(text: str) -> None:
    try:
        record = parse(text)
    except MagicNameError:
        return
    assert isinstance(record, MagicName)
    assert format_name(record) == text


# --- one file, one name: ASCII digits only, nothing around the name ----------------------------------

# Zero of scripts whose digits Python's `\d` and `int` accept as 0-9.
FOREIGN_ZEROS = {
    "arabic-indic": 0x0660,
    "extended arabic-indic": 0x06F0,
    "devanagari": 0x0966,
    "bengali": 0x09E6,
    "thai": 0x0E50,
    "full-width": 0xFF10,
    "mathematical bold": 0x1D7CE,
}
AROUND = ["\n", "\r\n", "\r", " ", "\t", "\x0b", "\x0c", "\x00", "\x85", "\u00a0", "\u2028", "\u3000", "\ufeff"]


def foreign(digits: str, zero: int) -> str:
    return "".join(chr(zero + int(digit)) for digit in digits)


def test_python_reads_foreign_digits_as_ascii_ones() -> None:
    """Why the grammar must not use Unicode `\\d`: the foreign name would read as the same run."""
    assert int(foreign("05088072", FOREIGN_ZEROS["arabic-indic"])) == 5088072


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("extra", AROUND, ids=repr)
def test_whitespace_or_control_around_a_name_is_refused(name: str, extra: str) -> None:
    for variant in (name + extra, extra + name, name + extra + extra):
        with pytest.raises(MagicNameError) as caught:
            parse(variant)
        assert f"U+{ord(extra[0]):04X}" in caught.value.reason, caught.value
        assert not is_magic_name(variant)


@pytest.mark.parametrize("name", EXAMPLES)
def test_a_trailing_newline_names_the_extension(name: str) -> None:
    with pytest.raises(MagicNameError) as caught:
        parse(name + "\n")
    assert caught.value.part == "extension"
    assert "at the end" in caught.value.reason and f"position {len(name)}" in caught.value.reason


@pytest.mark.parametrize(
    ("name", "start", "digits", "part"),
    [
        ("20200103_M2_05088072.001_D_BLLac-W0.40+090.raw.gz", 0, 8, "night"),
        ("20200103_M2_05088072.001_D_BLLac-W0.40+090.raw.gz", 12, 8, "run"),
        ("20200103_M2_05088072.001_D_BLLac-W0.40+090.raw.gz", 21, 3, "subrun"),
        ("20210314_M1_05095172.001_Y_CrabNebula-W0.40+035.root", 0, 1, "night"),
        ("20210314_M1_05095172.001_Y_CrabNebula-W0.40+035.root", 19, 1, "run"),
        ("20210314_M1_05095172.001_Y_CrabNebula-W0.40+035.root", 23, 1, "subrun"),
        ("20191127_M1_05086952.001_I_CrabNebula-W0.40+035.root", 7, 1, "night"),
        ("20210314_05095172_S_CrabNebula-W0.40+035.root", 0, 8, "night"),
        ("20210314_05095172_S_CrabNebula-W0.40+035.root", 9, 8, "run"),
        ("20150313_05041823_Q_CrabNebula-W0.40+035.root", 16, 1, "run"),
        ("20131004_05029747_DL3_CrabNebula-W0.40+035.fits", 0, 8, "night"),
        ("20131004_05029747_DL3_CrabNebula-W0.40+035.fits.gz", 9, 8, "run"),
        ("run_05029747_DL3.fits", 4, 8, "run"),
        ("ssignal05086952.001_M1.root", 7, 8, "run"),
        ("ssignal05086952.001_M1.root", 16, 3, "subrun"),
        ("scalib05083180_M2.root", 6, 8, "run"),
        ("GA_M1_za05to35_8_821318_Y_w0.root", 8, 2, "zenith range"),
        ("GA_M1_za05to35_8_821318_Y_w0.root", 15, 1, "production"),
        ("GA_M1_za05to35_8_821318_Y_w0.root", 17, 6, "run"),
        ("GA_M1_za05to35_8_821318_Y_w0.root", 27, 1, "wobble"),
        ("GA_za05to35_8_1743990_S_wr.root", 5, 2, "zenith range"),
        ("GA_za05to35_8_1743990_S_wr.root", 14, 7, "run"),
    ],
)
@pytest.mark.parametrize("script", FOREIGN_ZEROS)
def test_foreign_digits_are_refused_naming_the_part(name: str, start: int, digits: int, part: str, script: str) -> None:
    assert name[start : start + digits].isascii() and name[start : start + digits].isdigit()
    variant = name[:start] + foreign(name[start : start + digits], FOREIGN_ZEROS[script]) + name[start + digits :]
    with pytest.raises(MagicNameError) as caught:
        parse(variant)
    assert caught.value.part == part, caught.value
    assert "0-9" in caught.value.reason and f"position {start}" in caught.value.reason
    assert not is_magic_name(variant)
    assert parse(name).name == name


@pytest.mark.parametrize("name", EXAMPLES)
def test_a_nul_anywhere_is_refused(name: str) -> None:
    for position in range(len(name) + 1):
        variant = name[:position] + "\x00" + name[position:]
        with pytest.raises(MagicNameError) as caught:
            parse(variant)
        assert "U+0000" in caught.value.reason or caught.value.part == "name", caught.value


any_magic_name = st.one_of(telescope_names(), stereo_names(), other_names())


@given(any_magic_name, st.data())
def test_any_ascii_digit_made_foreign_is_refused(name: str, data: st.DataObject) -> None:
    positions = [index for index, character in enumerate(name) if character.isdigit()]
    position = data.draw(st.sampled_from(positions))
    zero = data.draw(st.sampled_from(sorted(FOREIGN_ZEROS.values())))
    variant = name[:position] + chr(zero + int(name[position])) + name[position + 1 :]
    with pytest.raises(MagicNameError) as caught:
        parse(variant)
    assert f"position {position}" in caught.value.reason


@given(any_magic_name, st.sampled_from(AROUND), st.sampled_from(["before", "after", "both"]))
def test_any_name_with_whitespace_around_is_refused(name: str, extra: str, where: str) -> None:
    variant = (extra if where != "after" else "") + name + (extra if where != "before" else "")
    assert not is_magic_name(variant)


@given(any_magic_name, st.data())
def test_a_name_changed_by_one_character_is_refused_or_itself_again(name: str, data: st.DataObject) -> None:
    """Whatever one inserted or replaced character does, an accepted name is printable ASCII and reads back."""
    position = data.draw(st.integers(0, len(name)))
    character = data.draw(st.characters())
    replace = data.draw(st.booleans()) and position < len(name)
    variant = name[:position] + character + name[position + (1 if replace else 0) :]
    try:
        record = parse(variant)
    except MagicNameError:
        return
    assert variant.isascii() and variant.isprintable() and " " not in variant
    assert format_name(record) == variant
    assert format_name(record).encode() == variant.encode()


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_every_accepted_text_is_printable_ascii_and_reads_back(text: str) -> None:
    try:
        record = parse(text)
    except MagicNameError:
        return
    assert text.isascii() and text.isprintable() and " " not in text
    assert format_name(record) == text
