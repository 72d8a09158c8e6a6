"""``status`` says what each file not yet deleted waits on and until when; configuration errors name their key."""

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from rucio_magic_ext import census, status
from rucio_magic_ext.ledger import FileState, Ledger, Seen

RSE = "ORM-TEST-WAITING"
NIGHT = date(2020, 1, 3)
MTIME = datetime(2020, 1, 3, 5, 0, 0).timestamp()
TIMING = status.Timing(timedelta(minutes=5), timedelta(hours=1), 1000, timedelta(hours=1))


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    built = Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
    built.upgrade()
    return built


def _seen(name: str, night: date | None = NIGHT) -> Seen:
    return Seen(f"M1/DAQ/RAW/2020_01_03/{name}", 10, MTIME, "magic_raw", name, night, "RAW")


def test_settling_files_say_until_when_and_the_unnamed_night_is_labelled(ledger: Ledger) -> None:
    long = "x" * 252
    ledger.add_seen(RSE, [_seen("a.raw.gz"), _seen("b.raw.gz")], "test")
    ledger.add_seen(RSE, [_seen(long, night=None)], "test")
    rejected = list(ledger.known(RSE, [f"M1/DAQ/RAW/2020_01_03/{long}"]).values())
    ledger.set_aside(rejected, FileState.REJECTED, "scanner.discover", f"name of {len(long)} characters")
    taken = census.take(ledger, RSE, rucio=False)
    screen = status.render(taken, TIMING)
    settled = census._from_mtime(MTIME) + TIMING.settle  # type: ignore[operator]
    assert f"settling: size and mtime unchanged until {settled:%m-%d %H:%M:%S}" in screen
    assert status.NO_NIGHT in screen and "  total " in screen
    assert max(len(line) for line in screen.splitlines()) < 200, "a long name widens the screen"
    assert long in str(status.as_json(taken)), "--json keeps the whole name"
    (source,) = status.as_json(taken)["sources"]
    assert None in [night["night"] for night in source["nights"]]
    assert {wait["kind"] for wait in source["waiting"]} == {"settling"}


def test_an_open_carrier_says_when_it_closes(ledger: Ledger) -> None:
    waits = [census.Waiting(RSE, "carrier", 3, datetime(2020, 1, 3, 6, 0), "carrier-1")]
    taken = census.Census(taken_at=datetime(2020, 1, 3, 6, 30), waiting=waits)
    lines = "\n".join(status._waiting(taken.waiting, TIMING))
    assert "its carrier to close, at 01-03 07:00:00 or at 1000 files" in lines
    dwell = [census.Waiting(RSE, "dwell", 3, datetime(2020, 1, 3, 6, 0), "carrier-1")]
    assert "the dwell time until 01-03 07:00:00" in "\n".join(status._waiting(dwell, TIMING))
    held = [census.Waiting(RSE, "copies", 3, None, "carrier-1", "rule 1234 STUCK")]
    assert "held: rule 1234 STUCK" in "\n".join(status._waiting(held, TIMING))


def test_a_wrong_setting_names_the_file_the_section_and_the_key(tmp_path: Path, monkeypatch) -> None:
    from rucio.common import config as rucio_config

    from rucio_magic_ext.release.config import load_config as carrier_config
    from rucio_magic_ext.scanner.config import load_config as scanner_config
    from rucio_magic_ext.settings import ConfigError

    cfg = tmp_path / "rucio.cfg"
    cfg.write_text(
        "[client]\nrucio_host = x\n[magic-scanner]\nrse = ORM\nreplication_policy = /nowhere.toml\n"
        "[magic-carrier]\ndwell_seconds = soon\n"
    )
    monkeypatch.setenv("RUCIO_CONFIG", str(cfg))
    rucio_config.clean_cached_config()
    try:
        for load in (scanner_config, carrier_config):  # the carrier names the section the value came from
            with pytest.raises(ConfigError, match=r"rucio.cfg: \[magic-scanner\] replication_policy: /nowhere.toml"):
                load()
        policy = Path(__file__).resolve().parents[2] / "etc" / "replication-policy.toml"
        cfg.write_text(cfg.read_text().replace("/nowhere.toml", str(policy)))
        rucio_config.clean_cached_config()
        with pytest.raises(ConfigError, match=r"\[magic-carrier\] dwell_seconds: could not convert"):
            carrier_config()
    finally:
        rucio_config.clean_cached_config()
