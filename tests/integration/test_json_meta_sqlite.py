"""The project's JSON metadata plugin (``rucio_magic_ext.policy.json_meta``) on a real SQLite Rucio and on the
tests' PostgreSQL one: DL3 header keys stored, read back and selected by ``list_dids`` filters, through Rucio's
core API and through its REST server, as ``rucio-magic dl3 find`` asks. One expectation serves both databases.

The SQLite stack (REST server only) is this module's own. Rucio reads its configuration once per process, so
what runs against it runs in a child process (``observe`` there, printing JSON).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tools.devstack.config import REPO
from tools.devstack.stack import SITE_CFG, Stack, free_port

pytestmark = pytest.mark.integration

SCOPE = "jsonmeta"  # of these tests alone: no MAGIC daemon or census looks at it
RSE = "JSONMETA-TEST"


def _header(source: str, zenith: float, livetime: float, tstart: str, tstop: str, obs_id: int) -> dict[str, Any]:
    return {"source": source, "zen_pnt": zenith, "livetime": livetime, "tstart": tstart, "tstop": tstop,
            "obs_id": obs_id, "night": "2013-10-04"}


FILES = {
    "dl3_a.fits": _header("CrabNebula", 35.5, 900.0, "2013-10-05T04:20:52.435217Z", "2013-10-05T04:40:52.435217Z",
                          5029747),
    "dl3_b.fits": _header("CrabNebula", 45.0, 1200.0, "2013-10-05T02:00:00.000000Z", "2013-10-05T02:20:00.000000Z",
                          5029748),
    "dl3_c.fits": _header("CrabNebula", 20.0, 300.0, "2013-10-05T01:00:00.000000Z", "2013-10-05T01:05:00.000000Z",
                          5029749),
    "dl3_d.fits": _header("Mrk421", 30.0, 900.0, "2013-10-05T03:00:00.000000Z", "2013-10-05T03:15:00.000000Z",
                          5029750),
    # the evening before the bound, and a quarter of a second into the bound's second
    "dl3_e.fits": _header("CrabNebula", 25.0, 1000.0, "2013-10-04T23:40:00.000000Z", "2013-10-04T23:59:59.500000Z",
                          5029751),
    "dl3_f.fits": _header("CrabNebula", 25.0, 1000.0, "2013-10-05T00:00:01.250000Z", "2013-10-05T00:20:00.000000Z",
                          5029752),
}

# label -> (filters, the files they select), the same on every database.
QUERIES: dict[str, tuple[list[dict[str, Any]], set[str]]] = {
    "dl3 find": ([{"source": "CrabNebula", "zen_pnt.lte": 40.0, "livetime.gte": 600.0,
                   "tstart.gte": "2013-10-05T00:00:00Z"}], {"a", "f"}),
    "source": ([{"source": "CrabNebula"}], {"a", "b", "c", "e", "f"}),
    "zenith": ([{"zen_pnt.lte": 40.0}], {"a", "c", "d", "e", "f"}),
    "zenith as the CLI writes it": ([{"zen_pnt.lte": "40"}], {"a", "c", "d", "e", "f"}),
    "livetime": ([{"livetime.gte": 600.0}], {"a", "b", "d", "e", "f"}),
    "obs_id": ([{"obs_id": 5029747}], {"a"}),
    "wildcard": ([{"source": "Mrk*"}], {"d"}),
    "either group": ([{"source": "Mrk421"}, {"zen_pnt.gt": 40.0}], {"b", "d"}),
    # a bound that stays text ("Z" without a fraction) errs inside its own second: ".25Z" sorts before "Z"
    "text bound": ([{"tstart.gte": "2013-10-05T00:00:01Z"}], {"a", "b", "c", "d"}),
    # bounds Rucio parses as datetimes compare as instants
    "instant bound": ([{"tstart.gte": "2013-10-05T00:00:01.000000Z"}], {"a", "b", "c", "d", "f"}),
    "instant bound without Z": ([{"tstart.gte": "2013-10-05T00:00:01"}], {"a", "b", "c", "d", "f"}),
    "instant window": ([{"tstart.gte": "2013-10-05T00:00:00.000000Z", "tstop.lte": "2013-10-05T02:00:00.000000Z"}],
                       {"c", "f"}),
    "text window": ([{"tstart.gte": "2013-10-05T00:00:00Z", "tstop.lte": "2013-10-05T02:00:00Z"}], {"c", "f"}),
}

# A raw file as the scanner registers it at the observatory: its JSON keys must stay on SQLite too.
RAW = "20200103_M1_05086952.001_D_CrabNebula-W0.40+035.raw.gz"
RAW_META = {"project": "MAGIC", "datatype": "RAW", "run_number": 5086952, "telescope": "M1",
            "source": "CrabNebula", "night": "2020-01-03", "wobble": "W0.40+035"}


def _short(name: str) -> str:
    return name.removeprefix("dl3_").removesuffix(".fits")


def _seed() -> None:
    from rucio.common.types import InternalAccount, InternalScope
    from rucio.core.did import set_metadata_bulk
    from rucio.core.replica import add_replicas
    from rucio.core.rse import add_rse
    from rucio.core.scope import add_scope

    from rucio_magic_ext import rucio_db

    root, scope = InternalAccount("root"), InternalScope(SCOPE)
    with rucio_db.writing() as session:
        add_scope(scope, root, session=session)
        rse_id = add_rse(RSE, session=session)
        files = [{"scope": scope, "name": name, "bytes": 1, "adler32": "00000001"} for name in FILES]
        add_replicas(rse_id=rse_id, files=files, account=root, ignore_availability=True, session=session)
        for name, meta in FILES.items():
            set_metadata_bulk(scope, name, {**meta, "run_number": meta["obs_id"]}, session=session)


def _edits() -> dict[str, Any]:
    """Set one key, delete it, delete it again: what Rucio's API gives back at each step."""
    from rucio.common.exception import KeyNotFound
    from rucio.common.types import InternalScope
    from rucio.core.did import delete_metadata, get_metadata, set_metadata

    from rucio_magic_ext import rucio_db

    scope, name = InternalScope(SCOPE), "dl3_a.fits"
    with rucio_db.writing() as session:
        set_metadata(scope, name, "embargo", "2014-10-05", session=session)
        set_metadata(scope, name, "zen_pnt", 35.25, session=session)
        after_set = get_metadata(scope, name, plugin="JSON", session=session)
        delete_metadata(scope, name, "embargo", session=session)
        after_delete = get_metadata(scope, name, plugin="JSON", session=session)
        try:
            delete_metadata(scope, name, "embargo", session=session)
            again = "deleted twice"
        except KeyNotFound:
            again = "KeyNotFound"
        set_metadata(scope, name, "zen_pnt", 35.5, session=session)
    return {"after_set": after_set, "after_delete": after_delete, "again": again}


def _register_raw() -> dict[str, Any]:
    """Register one raw file at ORM-ONSITE as the scanner does, and read its metadata back."""
    from rucio.common.types import InternalScope
    from rucio.core.did import get_metadata

    from rucio_magic_ext import rucio_db
    from rucio_magic_ext.scanner.catalogue import Catalogue, Registration

    catalogue = Catalogue("ORM-ONSITE", "root")
    catalogue.register([Registration(
        scope="magic_raw", name=RAW, path=f"M1/DAQ/RAW/2020_01_03/{RAW}", size=10, adler32="0a0b0c0d", md5=None,
        metadata=RAW_META, dataset="M1_RAW_20200103_05086952", containers=("M1_RAW_20200103", "M1_RAW"),
    )])
    with rucio_db.reading() as session:
        return get_metadata(InternalScope("magic_raw"), RAW, plugin="ALL", session=session)


def observe(register_raw: bool = False) -> dict[str, Any]:
    """Seed FILES into the database of ``$RUCIO_CONFIG`` and report what Rucio answers, through its core API
    and its REST server (``[client]`` of the same configuration), in JSON's terms."""
    from rucio.client import Client
    from rucio.common.types import InternalScope
    from rucio.core.did import get_metadata, list_dids

    from rucio_magic_ext import rucio_db
    from rucio_magic_ext.scanner import did_metadata

    _seed()
    scope, client = InternalScope(SCOPE), Client()
    seen: dict[str, Any] = {"core": {}, "rest": {}}
    with rucio_db.reading() as session:
        for label, (filters, _) in QUERIES.items():
            found = list_dids(scope, json.loads(json.dumps(filters)), did_type="file", session=session)
            seen["core"][label] = sorted(_short(name) for name in found)
        seen["all"] = get_metadata(scope, "dl3_a.fits", plugin="ALL", session=session)
        seen["kept"] = rucio_db.json_metadata_kept(session)
        seen["direct"] = did_metadata.can_write_directly(session)
    for label, (filters, _) in QUERIES.items():
        found = client.list_dids(SCOPE, filters=json.loads(json.dumps(filters)), did_type="file")
        seen["rest"][label] = sorted(_short(name) for name in found)
    seen["rest_json"] = client.get_metadata(SCOPE, "dl3_a.fits", plugin="JSON")
    seen["rest_bulk"] = list(client.get_metadata_bulk([{"scope": SCOPE, "name": "dl3_d.fits"}], plugin="ALL"))
    seen["edits"] = _edits()
    seen["raw"] = _register_raw() if register_raw else None
    return json.loads(json.dumps(seen, default=str))


@pytest.fixture(scope="module")
def sqlite_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of this module's own on SQLite, the embedded default: the site bootstrapped, the REST server up."""
    state = tmp_path_factory.mktemp("json-meta-sqlite")
    token = {"client": {"auth_token_file_path": str(state / "token")}}  # not the PostgreSQL stack's token
    stack = Stack(state, db="sqlite", port=free_port(), extra=token)
    try:
        stack.up(daemons=[], site=SITE_CFG)
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def observed(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "postgresql":
        request.getfixturevalue("rucio_stack")
        return observe()
    stack = request.getfixturevalue("sqlite_stack")
    code = "import json; from tests.integration.test_json_meta_sqlite import observe; print(json.dumps(observe(True)))"
    result = subprocess.run([sys.executable, "-c", code], env=stack.env, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("label", QUERIES)
def test_list_dids_selects_by_json_keys(observed: dict[str, Any], label: str) -> None:
    expected = sorted(QUERIES[label][1])
    assert observed["core"][label] == expected
    assert observed["rest"][label] == expected


def test_metadata_of_every_plugin_is_read_back(observed: dict[str, Any]) -> None:
    header = FILES["dl3_a.fits"]
    assert header.items() <= observed["all"].items()
    assert observed["all"]["run_number"] == header["obs_id"]  # Rucio's DID column, beside the JSON keys
    assert observed["rest_json"] == header
    (bulk,) = observed["rest_bulk"]
    assert FILES["dl3_d.fits"].items() <= bulk.items()


def test_keys_are_merged_and_deleted_one_by_one(observed: dict[str, Any]) -> None:
    edits = observed["edits"]
    assert edits["after_set"] == {**FILES["dl3_a.fits"], "embargo": "2014-10-05", "zen_pnt": 35.25}
    assert edits["after_delete"] == {**FILES["dl3_a.fits"], "zen_pnt": 35.25}
    assert edits["again"] == "KeyNotFound"


def test_the_scanner_keeps_json_keys(observed: dict[str, Any], request: pytest.FixtureRequest) -> None:
    assert observed["kept"] is True
    # PostgreSQL: the scanner still writes new files' rows itself, as with Rucio's own plugin.
    assert observed["direct"] is (request.node.callspec.params["observed"] == "postgresql")
    if observed["raw"] is not None:
        assert RAW_META.items() <= observed["raw"].items()

