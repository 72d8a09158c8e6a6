"""``rucio-magic scope retire`` on the real stack: a commissioning scope with datasets, containers, files on disk,
rules (one locked, one of another account), a file whose only copy is at a non-deterministic RSE, a dataset held
by another scope's container and another scope's file in one of its datasets. Retired, and Rucio's undertaker
and reaper run, nothing of it is left, its bytes are gone, and the other scope's data is untouched.

And the tool keeps the flow's rule: a scope whose replica at the observatory names a MAGIC file's path (a
commissioning scope's own name for the file, another experiment's replica registered there by an admin), with a
"copy" at PIC written into the catalogue alone, is retired without the MAGIC file's bytes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zlib
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from rucio.common.exception import AccessDenied

from rucio_magic_ext import cli, layout, rucio_db
from rucio_magic_ext.common import DID
from rucio_magic_ext.ledger import FileState
from rucio_magic_ext.naming import Level
from rucio_magic_ext.retire import catalogue
from tests.integration.scenery import (
    ORM,
    PIC,
    adler32_of,
    client_for,
    orm_root,
    register_beside_the_api,
    rows_of,
)
from tools.devstack.stack import SITE_CFG
from tools.make_night import PlannedFile, plan_night, write_night

pytestmark = pytest.mark.integration

SCOPE, KEEP, SHARED = "retire_test", "retire_keep", "retire_shared"
DISK, SOURCE = "RETIRE-DISK", "RETIRE-SRC"
OTHER_ACCOUNT = "retire_other"
SITE = """
[rse RETIRE-DISK]
deterministic = true
rse_type = DISK

[rse RETIRE-DISK protocol file]
scheme = file
hostname = localhost
port = 0
prefix = ${vars:storage_root}/retire-disk/
impl = rucio.rse.protocols.posix.Default
lan = read=1, write=1, delete=1
wan = read=1, write=1, delete=1

[rse RETIRE-SRC]
deterministic = false
rse_type = DISK

[rse RETIRE-SRC protocol file]
scheme = file
hostname = localhost
port = 0
prefix = ${vars:storage_root}/retire-src/
impl = rucio.rse.protocols.posix.Default
lan = read=1, write=1, delete=1
wan = read=1, write=1, delete=1

[account retire_other]
type = USER
email = retire-other@localhost

[account retire_other limits]
RETIRE-DISK = -1

[account root limits]
RETIRE-DISK = -1
RETIRE-SRC = -1

[scopes]
retire_test = root
retire_keep = root
retire_shared = root
"""


def retire(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["scope", "retire", *args])
    out, err = capsys.readouterr()
    return code, out, err


def disk_path(stack: Any, pfn: str) -> Path:
    """The local file behind a posix PFN (file://localhost:0/<absolute path>)."""
    path = Path("/" + pfn.split("://", 1)[1].split("/", 1)[1].lstrip("/"))
    assert stack.settings.storage_dir in path.parents, pfn
    return path


@pytest.fixture(scope="module")
def scenery(rucio_stack: Any, rucio_client: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The commissioning scope and its neighbours, built through Rucio's client as users would."""
    from rucio.client.uploadclient import UploadClient

    site = tmp_path_factory.mktemp("retire-site") / "site.cfg"
    site.write_text(SITE)
    rucio_stack.bootstrap_site([SITE_CFG, Path(__file__).with_name("site-extra.cfg"), site])
    folder = tmp_path_factory.mktemp("retire-files")

    def upload(scope: str, name: str, size: int) -> None:
        (folder / name).write_bytes(os.urandom(size))
        UploadClient(rucio_client).upload([{"path": str(folder / name), "rse": DISK, "did_scope": scope}])

    for index, size in enumerate((1000, 2000, 3000, 4000), start=1):
        upload(SCOPE, f"commissioning-{index}.dat", size)
    upload(KEEP, "keep-1.dat", 5000)
    upload(SHARED, "shared-1.dat", 600)

    # A file written at the non-deterministic RSE and registered where it lies: its only copy.
    data = os.urandom(700)
    source_path = "commissioning/source-1.dat"
    on_source = rucio_stack.settings.storage_dir / "retire-src" / source_path
    on_source.parent.mkdir(parents=True, exist_ok=True)
    on_source.write_bytes(data)
    source_pfn = rucio_db.pfn(SOURCE, (SCOPE, "source-1.dat"), source_path)
    rucio_client.add_replicas(SOURCE, [{"scope": SCOPE, "name": "source-1.dat", "bytes": len(data),
                                        "adler32": f"{zlib.adler32(data):08x}", "pfn": source_pfn}])  # fmt: skip

    c = rucio_client
    c.add_container(SCOPE, "commissioning")
    c.add_dataset(SCOPE, "night-1")
    c.add_dataset(SCOPE, "night-2")
    c.attach_dids(SCOPE, "commissioning", [{"scope": SCOPE, "name": "night-1"}, {"scope": SCOPE, "name": "night-2"}])
    c.attach_dids(SCOPE, "night-1", [{"scope": SCOPE, "name": f"commissioning-{i}.dat"} for i in (1, 2)])
    c.attach_dids(SCOPE, "night-2", [{"scope": SCOPE, "name": "commissioning-3.dat"},
                                     {"scope": SCOPE, "name": "source-1.dat"},
                                     {"scope": KEEP, "name": "keep-1.dat"}])  # fmt: skip
    c.close(SCOPE, "night-1")
    (locked,) = c.add_replication_rule([{"scope": SCOPE, "name": "night-1"}], 1, DISK, locked=True)
    (others,) = c.add_replication_rule([{"scope": SCOPE, "name": "commissioning"}], 1, DISK, account=OTHER_ACCOUNT)
    # Another scope's container holds one of the datasets, under a rule of its own.
    c.add_container(KEEP, "analysis")
    c.attach_dids(KEEP, "analysis", [{"scope": SCOPE, "name": "night-1"}])
    (analysis,) = c.add_replication_rule([{"scope": KEEP, "name": "analysis"}], 1, DISK)
    # A file of another scope inside another scope's dataset: that scope may not be retired.
    c.add_dataset(KEEP, "selection")
    c.attach_dids(KEEP, "selection", [{"scope": SHARED, "name": "shared-1.dat"}])

    replicas = list(c.list_replicas([{"scope": SCOPE, "name": "commissioning"}, {"scope": KEEP, "name": "keep-1.dat"},
                                     {"scope": SCOPE, "name": "commissioning-4.dat"}]))  # fmt: skip
    paths = {(r["scope"], r["name"]): [disk_path(rucio_stack, pfn) for pfn in r["pfns"]] for r in replicas}
    assert all(path.is_file() for found in paths.values() for path in found)
    return {"paths": paths, "locked": locked, "others": others, "analysis": analysis, "source": on_source}


def test_magic_scopes_and_the_carriers_are_refused_with_nothing_changed(
    scenery: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for scope in ("magic_raw", "magic_carrier"):
        before = catalogue.read_inventory(scope)
        code, _, err = retire(scope, "--force-only-copies", capsys=capsys)
        assert code == 2 and "refused, nothing changed" in err and scope in err, err
        assert catalogue.read_inventory(scope) == before


def test_a_scope_with_a_file_in_another_scopes_dataset_is_refused_naming_it(
    scenery: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    before = catalogue.read_inventory(SHARED)
    code, _, err = retire(SHARED, capsys=capsys)
    assert code == 2 and "retire_shared:shared-1.dat (in retire_keep:selection)" in err, err
    assert catalogue.read_inventory(SHARED) == before


def test_a_dry_run_lists_everything_and_changes_nothing(
    scenery: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    before = catalogue.read_inventory(SCOPE)
    code, out, err = retire(SCOPE, "--dry-run", capsys=capsys)
    assert code == 2 and "retire_test:source-1.dat (at RETIRE-SRC)" in err and "--force-only-copies" in err, err
    code, out, err = retire(SCOPE, "--dry-run", "--force-only-copies", capsys=capsys)
    assert code == 0, err
    assert f"{scenery['locked']}  retire_test:night-1  RETIRE-DISK  account root  OK  locked" in out
    assert f"{scenery['others']}  retire_test:commissioning  RETIRE-DISK  account retire_other" in out
    assert "retire_test:night-1  from retire_keep:analysis" in out
    assert "retire_keep:keep-1.dat  out of retire_test:night-2 (kept)" in out
    assert "RETIRE-DISK  1000 bytes  retire_test:commissioning-1.dat" in out
    assert "RETIRE-SRC  700 bytes  retire_test:source-1.dat" in out
    assert "RETIRE-DISK  700 bytes  retire_test:source-1.dat  (not yet written)" in out  # the other account's rule
    assert "RETIRE-DISK  5 replicas  10700 bytes" in out and "dry run: nothing changed" in out
    assert catalogue.read_inventory(SCOPE) == before


def test_retiring_leaves_nothing_of_the_scope_and_the_other_scopes_data_untouched(
    rucio_stack: Any, rucio_client: Any, scenery: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    paths = scenery["paths"]
    (keep,) = paths[(KEEP, "keep-1.dat")]
    kept = adler32_of(keep), keep.read_bytes()
    gone = {path for did, found in paths.items() if did[0] == SCOPE for path in found} | {scenery["source"]}
    assert len(gone) == 5

    code, out, err = retire(SCOPE, "--force-only-copies", capsys=capsys)
    assert code == 0, err
    assert f"removed rule {scenery['locked']} on retire_test:night-1 (unlocked first)" in out
    assert "detached retire_test:night-1 from retire_keep:analysis" in out
    assert "Rucio 41 has no scope deletion" in out
    assert not catalogue.read_inventory(SCOPE).rules

    for _ in range(6):
        rucio_stack.run_once("reaper", "--rses", f"{DISK},{SOURCE}")
        undertaker(rucio_stack)
        if not any(catalogue.left(SCOPE).values()):
            break
        time.sleep(1)
    assert catalogue.left(SCOPE) == {"dids": 0, "rules": 0, "replicas": 0}
    assert retire(SCOPE, "--wait", "--timeout", "0", capsys=capsys)[0] == 0
    assert [path for path in gone if path.exists()] == []

    assert (adler32_of(keep), keep.read_bytes()) == kept
    (replica,) = rucio_client.list_replicas([{"scope": KEEP, "name": "keep-1.dat"}])
    assert replica["states"] == {DISK: "AVAILABLE"}
    assert rucio_client.get_replication_rule(scenery["analysis"])["state"] == "OK"
    assert list(rucio_client.list_content(KEEP, "analysis")) == []
    assert SCOPE in rucio_client.list_scopes()  # Rucio 41 cannot delete a scope: it stays, empty


def observed(stack: Any, night: date, seed: int) -> PlannedFile:
    """One RAW file written at the observatory, registered by the scanner and held by its carrier, copied nowhere
    yet: the only copy of its bytes."""
    (planned, *_) = [p for p in plan_night(night, runs=3, seed=seed, scale=1e-5) if p.record.level is Level.RAW]
    write_night([planned], orm_root(stack), stamp_times=True)
    for _ in range(15):
        stack.run_once("magic-scanner")
        row = rows_of([planned]).get(planned.path)
        if row is not None and row.state in (FileState.REGISTERED, FileState.PROTECTED):
            return planned
        time.sleep(1)
    pytest.fail(f"the scanner did not register {planned.path}", pytrace=False)


def source_pfn(rucio_client: Any, did: DID) -> str:
    (replica,) = rucio_client.list_replicas([{"scope": did[0], "name": did[1]}], rse_expression=ORM)
    (pfn,) = replica["pfns"]
    return pfn


def tombstone(rse: str, did: DID) -> Any:
    from rucio.common.types import InternalScope
    from rucio.core.replica import get_replica

    with rucio_db.reading() as session:
        return get_replica(rucio_db.rse_id(rse), InternalScope(did[0]), did[1], session=session)["tombstone"]


def daemons_done(stack: Any, rses: str) -> None:
    """Rucio's reaper at ``rses`` and its undertaker, a few passes each."""
    for _ in range(3):
        stack.run_once("reaper", "--rses", rses)
        undertaker(stack)


def test_a_commissioning_scope_naming_an_observatory_file_is_retired_without_the_files_bytes(
    rucio_stack: Any, rucio_client: Any, scenery: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The observatory's file registered under a commissioning scope's own name at its path, with a "copy" at PIC
    that only the catalogue holds: retiring the scope would have made the path OBSOLETE, and the reaper would have
    deleted the MAGIC file's only copy."""
    scope, name = "orm_commissioning", "orm-commissioning-1.raw.gz"
    planned = observed(rucio_stack, date(2019, 11, 5), seed=1105)
    magic = (layout.scope(planned.record), planned.name)
    source = orm_root(rucio_stack) / planned.path
    registered = rows_of([planned])[planned.path].adler32
    size = source.stat().st_size
    rucio_client.add_scope("root", scope)
    pfn = source_pfn(rucio_client, magic)
    on_path = {"scope": scope, "name": name, "bytes": size, "adler32": registered, "pfn": pfn}
    with pytest.raises(AccessDenied, match=re.escape(f"already the replica of {magic[0]}:{magic[1]}")):
        rucio_client.add_replicas(ORM, [on_path])  # the REST API refuses a second DID on the path, even to root
    register_beside_the_api(ORM, scope, name, size, registered, on_path["pfn"])
    rucio_client.add_replicas(PIC, [{"scope": scope, "name": name, "bytes": size, "adler32": registered}])
    rucio_client.add_dataset(scope, "orm-tests")
    rucio_client.attach_dids(scope, "orm-tests", [{"scope": scope, "name": name}])
    rucio_client.add_replication_rule([{"scope": scope, "name": "orm-tests"}], 1, ORM, locked=True)

    code, out, err = retire(scope, capsys=capsys)
    assert code == 0, err
    why = f"path {planned.path} at {ORM} is also the replica of {magic[0]}:{magic[1]}"
    assert f"{ORM}  {size} bytes  {scope}:{name}: {why}" in out, out
    assert f"replica kept, no tombstone: {ORM} {scope}:{name}: {why}" in out
    assert f"{PIC}  {size} bytes  {scope}:{name}" in out.split("replicas made OBSOLETE")[1]
    assert tombstone(ORM, (scope, name)) is None  # the ORM rule's lock went, and the tombstone Rucio gave with it

    daemons_done(rucio_stack, f"{ORM},{PIC}")
    assert source.is_file() and adler32_of(source) == registered
    assert catalogue.left(scope) == {"dids": 1, "rules": 0, "replicas": 1}  # the kept replica and its file
    (replica,) = rucio_client.list_replicas([{"scope": magic[0], "name": magic[1]}])
    assert replica["states"] == {ORM: "AVAILABLE"}
    assert retire(scope, "--wait", "--timeout", "0", capsys=capsys)[0] == 0


def test_another_experiments_scope_on_a_magic_files_path_is_retired_without_the_files_bytes(
    rucio_stack: Any, rucio_client: Any, scenery: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Another experiment's scope with a replica at the observatory under a MAGIC file's path (registered there by
    an admin) and a catalogue-only "copy" at PIC, retired by an admin: the MAGIC file's only copy stays. Its own
    file, whose "copy" elsewhere is in the catalogue only, is an only copy: refused until forced."""
    scope, shared, own = "lst_commissioning", "lst-run-1.raw.gz", "lst-run-2.dat"
    planned = observed(rucio_stack, date(2019, 11, 6), seed=1106)
    magic = (layout.scope(planned.record), planned.name)
    source = orm_root(rucio_stack) / planned.path
    registered = rows_of([planned])[planned.path].adler32
    size = source.stat().st_size
    other = client_for(rucio_client, "lst_operator")
    rucio_client.add_scope("lst_operator", scope)
    for rse in (PIC, DISK):
        rucio_client.set_local_account_limit("lst_operator", rse, -1)
    register_beside_the_api(ORM, scope, shared, size, registered, source_pfn(rucio_client, magic))
    rucio_client.add_replicas(PIC, [{"scope": scope, "name": shared, "bytes": size, "adler32": registered}])
    data = os.urandom(900)
    own_path = rucio_stack.settings.storage_dir / "retire-src" / "lst" / own
    own_path.parent.mkdir(parents=True, exist_ok=True)
    own_path.write_bytes(data)
    checksum = f"{zlib.adler32(data):08x}"
    rucio_client.add_replicas(SOURCE, [{"scope": scope, "name": own, "bytes": len(data), "adler32": checksum,
                                        "pfn": rucio_db.pfn(SOURCE, (scope, own), f"lst/{own}")}])  # fmt: skip
    rucio_client.add_replicas(DISK, [{"scope": scope, "name": own, "bytes": len(data), "adler32": checksum}])
    rucio_client.add_dataset(scope, "lst-night")
    rucio_client.attach_dids(scope, "lst-night", [{"scope": scope, "name": shared}, {"scope": scope, "name": own}])
    other.add_replication_rule([{"scope": scope, "name": shared}], 1, PIC)  # the "copy" under its rule, lock OK

    before = catalogue.read_inventory(scope)
    code, out, err = retire(scope, capsys=capsys)
    assert code == 2, out
    fake = rucio_db.pfn(DISK, (scope, own), None)
    assert f"{scope}:{own} (at {SOURCE}; {DISK} not counted: missing at the storage ({fake}))" in err, err
    why = f"path {planned.path} at {ORM} is also the replica of {magic[0]}:{magic[1]}"
    assert f"{ORM}  {size} bytes  {scope}:{shared}: {why}" in out, out
    assert catalogue.read_inventory(scope) == before

    code, out, err = retire(scope, "--force-only-copies", capsys=capsys)
    assert code == 0, err
    assert f"replica kept, no tombstone: {ORM} {scope}:{shared}: {why}" in out
    daemons_done(rucio_stack, f"{ORM},{PIC},{SOURCE},{DISK}")
    assert source.is_file() and adler32_of(source) == registered
    assert not own_path.exists()  # its own only copy, forced through
    assert catalogue.left(scope) == {"dids": 1, "rules": 0, "replicas": 1}
    (replica,) = rucio_client.list_replicas([{"scope": magic[0], "name": magic[1]}])
    assert replica["states"] == {ORM: "AVAILABLE"}


def undertaker(stack: Any) -> None:
    """One pass of Rucio's undertaker (the test stack has no one-pass entry for it)."""
    run = [str(Path(sys.executable).parent / "rucio-undertaker"), "--run-once"]
    log = stack.settings.log_dir / "undertaker.once.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        subprocess.run(run, env=stack.env, stdout=out, stderr=subprocess.STDOUT, timeout=300, check=True)
