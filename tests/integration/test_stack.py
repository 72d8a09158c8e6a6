"""The native stack itself: REST server, root client, site bootstrap, one daemon pass."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from typing import Any

import pytest

from tools.devstack.stack import StackError

pytestmark = pytest.mark.integration


def test_rest_server_answers(rucio_stack: Any) -> None:
    with urllib.request.urlopen(f"{rucio_stack.url}/ping", timeout=5) as response:
        assert response.status == 200
        assert b"version" in response.read()


def test_root_client(rucio_stack: Any, rucio_client: Any) -> None:
    assert rucio_client.whoami()["account"] == "root"
    cli = subprocess.run([f"{sys.prefix}/bin/rucio", "whoami"], env=rucio_stack.env, capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "root" in cli.stdout


def test_site_bootstrap(rucio_stack: Any, rucio_client: Any) -> None:
    rses = {rse["rse"]: rse for rse in rucio_client.list_rses()}
    assert rses["ORM-ONSITE"]["deterministic"] is False
    assert rses["PIC-DISK"]["deterministic"] is True
    assert rucio_client.list_rse_attributes("PIC-DISK")["lfn2pfn_algorithm"] == "magic"
    assert rucio_client.list_rse_attributes("ORM-ONSITE")["greedyDeletion"] is True
    protocol = rucio_client.get_protocols("ORM-ONSITE")[0]
    assert (protocol["scheme"], protocol["prefix"]) == ("file", f"{rucio_stack.settings.storage_dir}/orm-onsite/")
    assert {d["dest_rse"] for d in rucio_client.get_distance("ORM-ONSITE", "PIC-DISK")} == {"PIC-DISK"}
    assert rucio_client.get_distance("PIC-DISK", "ORM-ONSITE")
    assert {"magic_raw", "magic_cal", "magic_st", "magic_dl3", "magic_mc", "magic_carrier"} <= set(
        rucio_client.list_scopes()
    )
    attributes = {a["key"]: a["value"] for page in rucio_client.list_account_attributes("magic_scanner") for a in page}
    assert attributes["magic"] == "writer"

    assert rucio_stack.bootstrap_site() == []  # idempotent: a second run changes nothing


def test_daemon_runs_once(rucio_stack: Any, run_daemon_once: Any) -> None:
    run_daemon_once("judge-evaluator")
    run_daemon_once("conveyor-submitter")
    assert "Got 0 transfers" in (rucio_stack.settings.log_dir / "conveyor-submitter.once.log").read_text()


def test_a_forked_pass_that_fails_or_overruns_says_so_and_the_next_pass_runs(rucio_stack: Any) -> None:
    log = rucio_stack.settings.log_dir / "round.once.log"
    with pytest.raises(StackError, match="exited with 1"):
        rucio_stack.run_round(("judge-evaluator", "--no-such-option", "1"))
    assert "no_such_option" in log.read_text()
    with pytest.raises(subprocess.TimeoutExpired):
        rucio_stack.run_round("judge-evaluator", ("reaper", "--rses", "ORM-ONSITE"), timeout=0.05)
    before = log.read_text().count("Reaper started")
    rucio_stack.run_round("judge-evaluator", ("reaper", "--rses", "ORM-ONSITE"))
    assert log.read_text().count("Reaper started") == before + 1
