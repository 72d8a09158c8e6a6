"""Which DL3 runs a user asks for, as Rucio ``list_dids`` filters that the server evaluates on the JSON metadata.

One query may use one metadata plugin only, so the DID columns stay out: the scope ``magic_dl3`` and
``did_type='file'`` say "DL3 files". Times go as strings in the stored form minus the zone letter: the server
would cast a string it reads as a date into a datetime the JSON path cannot compare, while this form stays a
string and orders against the stored "YYYY-MM-DDTHH:MM:SS.ffffffZ" to the microsecond (the ``Z`` sorts after).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from rucio_magic_ext.common import chunks

SCOPE = "magic_dl3"
BOUND_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


@dataclass(frozen=True)
class Selection:
    """Runs to find: each field left ``None`` does not restrict; a run must lie wholly between start and end."""

    source: str | None = None  # as in the file name; Rucio's ``*`` wildcard allowed
    night: date | None = None
    start: datetime | None = None  # UTC: naive, or aware in any zone
    end: datetime | None = None
    zenith_min: float | None = None  # degrees, of the pointing (ZEN_PNT)
    zenith_max: float | None = None
    min_livetime: float | None = None  # seconds
    telescope: str | None = None  # the header's TELESCOP, e.g. "MAGIC"


def filters(selection: Selection) -> list[dict[str, Any]]:
    """The ``filters`` argument of ``list_dids`` (one AND group) for a selection."""
    group: dict[str, Any] = {}
    if selection.source is not None:
        group["source"] = selection.source
    if selection.night is not None:
        group["night"] = selection.night.isoformat()
    if selection.telescope is not None:
        group["telescop"] = selection.telescope
    if selection.start is not None:
        group["tstart.gte"] = time_bound(selection.start)
    if selection.end is not None:
        group["tstop.lt"] = time_bound(selection.end + timedelta(microseconds=1))  # tstop <= end
    if selection.zenith_min is not None:
        group["zen_pnt.gte"] = float(selection.zenith_min)
    if selection.zenith_max is not None:
        group["zen_pnt.lte"] = float(selection.zenith_max)
    if selection.min_livetime is not None:
        group["livetime.gte"] = float(selection.min_livetime)
    return [group]


def time_bound(moment: datetime) -> str:
    """A UTC time as a filter value that Rucio keeps a string (see the module's docstring)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.strftime(BOUND_FORMAT)


def find(client: Any, selection: Selection) -> list[dict[str, Any]]:
    """The metadata of every DL3 file the selection matches (with ``scope`` and ``name``), in time order, as a
    Rucio ``DIDClient`` gets it in bulk from every plugin (so the DID columns ``did_type``, ``bytes`` come along)."""
    names = sorted(set(client.list_dids(SCOPE, filters=filters(selection), did_type="file")))
    rows = [row for row in _metadata(client, names) if str(row.get("did_type", "FILE")).upper() == "FILE"]
    return sorted(rows, key=lambda row: (str(row.get("tstart", "")), row["name"]))


def _metadata(client: Any, names: Iterable[str]) -> Iterator[dict[str, Any]]:
    for batch in chunks(list(names)):
        yield from client.get_metadata_bulk([{"scope": SCOPE, "name": name} for name in batch], plugin="ALL")
