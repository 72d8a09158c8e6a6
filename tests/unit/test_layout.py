from datetime import date

import pytest

from rucio_magic_ext import layout
from rucio_magic_ext.naming import Level, MagicNameError, Telescope, parse


@pytest.mark.parametrize(
    ("name", "scope", "dataset", "containers", "path"),
    [
        (
            "20200103_M2_05088072.001_D_BLLac-W0.40+090.raw.gz",
            "magic_raw",
            "M2_RAW_20200103_05088072",
            ("M2_RAW_20200103", "M2_RAW"),
            "M2/RAW/2020/01/03/20200103_M2_05088072.001_D_BLLac-W0.40+090.raw.gz",
        ),
        (
            "20210314_M1_05095172.001_Y_CrabNebula-W0.40+035.root",
            "magic_cal",
            "M1_Calibrated_20210314_05095172",
            ("M1_Calibrated_20210314", "M1_Calibrated"),
            "M1/Calibrated/2021/03/14/20210314_M1_05095172.001_Y_CrabNebula-W0.40+035.root",
        ),
        (
            "20191127_M1_05086952.001_I_CrabNebula-W0.40+035.root",
            "magic_st",
            "M1_Star_20191127_05086952",
            ("M1_Star_20191127", "M1_Star"),
            "M1/Star/2019/11/27/20191127_M1_05086952.001_I_CrabNebula-W0.40+035.root",
        ),
        (
            "20210314_05095172_S_CrabNebula-W0.40+035.root",
            "magic_st",
            "ST_SuperStar_20210314_05095172",
            ("ST_SuperStar_20210314", "ST_SuperStar"),
            "ST/SuperStar/2021/03/14/20210314_05095172_S_CrabNebula-W0.40+035.root",
        ),
        (
            "20150313_05041823_Q_CrabNebula-W0.40+035.root",
            "magic_st",
            "ST_Melibea_20150313_05041823",
            ("ST_Melibea_20150313", "ST_Melibea"),
            "ST/Melibea/2015/03/13/20150313_05041823_Q_CrabNebula-W0.40+035.root",
        ),
        (
            "20131004_05029747_DL3_CrabNebula-W0.40+035.fits",
            "magic_dl3",
            "ST_DL3_20131004_05029747",
            ("ST_DL3_20131004", "ST_DL3"),
            "ST/DL3/2013/10/04/20131004_05029747_DL3_CrabNebula-W0.40+035.fits",
        ),
        (
            "GA_M1_za05to35_8_821318_Y_w0.root",
            "magic_mc",
            "MC_M1_Calibrated_za05to35_8",
            ("MC_M1_Calibrated",),
            "MC/M1/Calibrated/za05to35/GA_M1_za05to35_8_821318_Y_w0.root",
        ),
    ],
)
def test_placement(name: str, scope: str, dataset: str, containers: tuple[str, ...], path: str) -> None:
    placed = layout.placement(parse(name))
    assert (placed.scope, placed.name, placed.dataset, placed.containers, placed.path) == (
        scope,
        name,
        dataset,
        containers,
        path,
    )
    assert layout.path_of_did(scope, name) == path
    assert layout.scope_of_name(name) == scope
    for collection in (dataset, *containers):
        assert layout.scope_of_name(collection) == scope


def test_side_products_take_their_night_from_the_folder() -> None:
    record = parse("ssignal05086952.001_M1.root")
    with pytest.raises(MagicNameError, match="no night"):
        layout.placement(record)
    placed = layout.placement(record, night=date(2019, 11, 27))
    assert placed.dataset == "M1_Calibrated_20191127_05086952"
    assert placed.path == "M1/Calibrated/runs/05086952/ssignal05086952.001_M1.root"


def test_a_night_given_must_agree_with_the_name() -> None:
    with pytest.raises(MagicNameError, match="folder 2020-01-04"):
        layout.placement(parse("20200103_M2_05088072.001_D_BLLac.raw"), night=date(2020, 1, 4))


def test_eight_main_containers_plus_dl3() -> None:
    main = layout.main_containers()
    assert len(main) == 9
    assert ("magic_raw", "M1_RAW") in main and ("magic_st", "ST_Melibea") in main
    assert {name.split("_", 1)[0] for _, name in main} == {"M1", "M2", "ST"}
    assert layout.top_container(Telescope.M2, Level.STAR) == "M2_Star"


def test_foreign_names_and_foreign_scopes_are_hashed() -> None:
    assert layout.path_of_did("user.jdoe", "notes.txt") == layout.hashed_path("user.jdoe", "notes.txt")
    magic = "20200103_M2_05088072.001_D_BLLac.raw"
    hashed = layout.path_of_did("user.jdoe", magic)
    assert hashed.startswith("user.jdoe/") and hashed.endswith("/" + magic)
    assert hashed != layout.path_of_did("magic_raw", magic)


def test_scope_of_a_foreign_name_is_refused() -> None:
    with pytest.raises(MagicNameError):
        layout.scope_of_name("notes.txt")


FOREIGN_DIGITS = (  # 20200103 in Arabic-Indic, full-width and Devanagari digits
    "\u0662\u0660\u0662\u0660\u0660\u0661\u0660\u0663",
    "\uff12\uff10\uff12\uff10\uff10\uff11\uff10\uff13",
    "\u0968\u0966\u0968\u0966\u0966\u0967\u0966\u0969",
)


@pytest.mark.parametrize("digits", FOREIGN_DIGITS)
def test_collections_and_folders_take_ascii_digits_only(digits: str) -> None:
    with pytest.raises(MagicNameError):
        layout.scope_of_name(f"M1_RAW_{digits}")
    assert layout.observatory_folder(f"/data/M1/DAQ/RAW/{digits[:4]}_01_03/x.raw") is None
