"""What a guarded dev stack gives its daemons (tools/devstack/guard.py): the credentials the project's storages
read from rucio.cfg, the environment Rucio's own protocols read, and with tokens a davs door that deletes."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from tools.devstack import grid as grid_module
from tools.devstack.config import Settings
from tools.devstack.guard import guard
from tools.devstack.stack import Stack, StackError


@pytest.fixture
def grid(tmp_path: Path):
    if grid_module.missing():
        pytest.skip(f"no test grid here: {grid_module.missing()}")
    made = grid_module.Grid.make(tmp_path / "grid")
    yield made
    made.stop()


def test_an_x509_stack_gives_the_proxy_to_the_projects_storages_and_to_rucios_protocols(grid, tmp_path) -> None:
    settings = Settings(state=tmp_path, storage="xrootd", auth="x509")
    assert guard(settings, grid) == []
    assert settings.extra["magic-credentials"] == {"mechanism": "x509", "ca_dir": str(grid.ca_dir),
                                                   "x509_proxy": str(grid.proxy)}
    assert settings.environment["X509_USER_PROXY"] == str(grid.proxy)
    assert settings.environment["X509_CERT_DIR"] == str(grid.ca_dir)


def test_a_token_stack_gives_a_token_file_rucios_issuer_client_and_a_davs_door_that_deletes(grid, tmp_path) -> None:
    settings = Settings(state=tmp_path, storage="xrootd", auth="token")
    (site,) = guard(settings, grid)
    given = settings.extra["magic-credentials"]
    assert given["mechanism"] == "token" and Path(given["token_file"]).read_text().count(".") == 2
    assert Path(given["token_file"]).stat().st_mode & 0o077 == 0  # the token file is its owner's alone
    assert set(settings.extra["oidc"]) == {"idpsecrets", "admin_issuer"}
    assert Path(settings.environment["REQUESTS_CA_BUNDLE"]).read_bytes().endswith(grid.ca_cert.read_bytes())
    parsed = configparser.ConfigParser()
    parsed.read(site)
    assert parsed["rse ORM-ONSITE attributes"]["oidc_support"] == "true"
    assert "delete=1" in parsed["rse ORM-ONSITE protocol davs"]["wan"]
    assert "delete=2" in parsed["rse ORM-ONSITE protocol root"]["wan"]


def test_a_guarded_stack_needs_xrootd_storage(tmp_path) -> None:
    with pytest.raises(StackError, match="give storage xrootd"):
        Stack(tmp_path, storage="posix", auth="x509")._guard()
    with pytest.raises(StackError, match="unknown auth"):
        Stack(tmp_path, storage="xrootd", auth="kerberos")._guard()
