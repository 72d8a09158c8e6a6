"""Child of the chain benchmark: a night registered the way stock Rucio is used, then one rule per run dataset.

    python tools/bench/stock_register.py ORM_ROOT FILES.json

Through Rucio's own client (REST), as the root account: the files' adler32 computed here, replicas added at
ORM-ONSITE with their own paths (PFNs as Rucio builds them), run datasets made and filled, then one rule per
dataset to PIC-DISK, as the replication policy asks. Prints one JSON line: counts, and the time (epoch) of
the first rule, from which stock Rucio's replication is timed.
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path

from rucio.client import Client
from rucio.rse import rsemanager

RSE, DESTINATION = "ORM-ONSITE", "PIC-DISK"
ACTIVITY = "MAGIC Export"
CHUNK = 500
BUFFER = 1 << 20


def adler32(path: Path) -> str:
    value = 1
    with path.open("rb") as handle:
        while chunk := handle.read(BUFFER):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


def main(root: Path, listing: Path) -> dict[str, object]:
    files = json.loads(listing.read_text())  # [{"path", "scope", "name", "dataset"}]
    client = Client()
    info = rsemanager.get_rse_info(RSE)
    began = time.time()
    replicas, contents = [], defaultdict(list)
    for one in files:
        lfn = {"scope": one["scope"], "name": one["name"], "path": one["path"]}
        (pfn,) = rsemanager.lfns2pfns(info, [lfn], operation="write").values()
        local = root / one["path"]
        replicas.append({
            "scope": one["scope"], "name": one["name"], "bytes": local.stat().st_size,
            "adler32": adler32(local), "pfn": pfn,
        })
        contents[one["scope"], one["dataset"]].append({"scope": one["scope"], "name": one["name"]})
    client.add_dids([{"scope": scope, "name": name, "type": "DATASET"} for scope, name in contents])
    for at in range(0, len(replicas), CHUNK):
        client.add_replicas(RSE, replicas[at : at + CHUNK])
    client.attach_dids_to_dids([{"scope": s, "name": n, "dids": dids} for (s, n), dids in contents.items()])
    registered = time.time()
    for scope, name in contents:
        client.add_replication_rule(
            [{"scope": scope, "name": name}], 1, DESTINATION, grouping="DATASET", activity=ACTIVITY
        )
    return {
        "files": len(replicas),
        "rules": len(contents),
        "register_seconds": registered - began,
        "first_rule_at": registered,
        "rules_seconds": time.time() - registered,
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))), flush=True)
