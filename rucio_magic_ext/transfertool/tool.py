"""A Rucio transfertool that copies files itself, between RSE storages reachable from this host.

For a site (or a test stack) without FTS: the conveyor submitter hands the transfers to `submit`, which stores a
job and starts a detached copier process (`copier`); the poller reads the job's status back through `bulk_query`.
"""

from __future__ import annotations

import configparser
import contextlib
import datetime
import functools
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rucio.common.config import config_get, config_get_int
from rucio.core.request import get_transfer_error
from rucio.db.sqla.constants import RequestState
from rucio.transfertool.transfertool import TransferStatusReport, Transfertool, TransferToolBuilder

import rucio_magic_ext
from rucio_magic_ext.storage import protocol_root, scheme_of, supported_schemes
from rucio_magic_ext.transfertool.jobs import DONE, FAILED, FINISHED, LOG_FILE, QUEUED, JobStore

if TYPE_CHECKING:
    from rucio.common.types import LoggerFunction
    from rucio.core.request import DirectTransfer, RequestSource
    from sqlalchemy.orm import Session

CONFIG_SECTION = "conveyor"
DEFAULT_TRANSFER_DIR = os.path.join(tempfile.gettempdir(), "rucio-magic-transfers")
DEFAULT_GROUP_BULK = 10
DEFAULT_MAX_ACTIVE = 2
DEFAULT_RETENTION_DAYS = 7
#: How long a job may stay QUEUED (copier process not yet running) before it counts as lost.
START_GRACE = datetime.timedelta(minutes=2)
PURGE_INTERVAL_SECONDS = 3600


def configured_transfer_dir() -> str:
    """Where jobs live: `[conveyor] magic_transfer_dir`; submitter and poller must agree on it."""
    return str(config_get(CONFIG_SECTION, "magic_transfer_dir", raise_exception=False, default=DEFAULT_TRANSFER_DIR))


def default_external_host() -> str:
    """Recorded as the requests' external_host: says which machine ran the copies."""
    return f"magic://{socket.gethostname()}"


def _parse_time(value: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(value) if value else None


class MagicTransferStatusReport(TransferStatusReport):
    """The final state of one request, as recorded by the copier."""

    supported_db_fields = ["state", "external_id", "started_at", "transferred_at", "source_rse_id", "err_msg"]

    def __init__(
        self, request_id: str, external_id: str, file_status: Mapping[str, Any], request: dict[str, Any] | None = None
    ) -> None:
        super().__init__(request_id, request=request)
        self.external_id = external_id
        self.reason = file_status.get("reason")
        self.state = RequestState.DONE if file_status["state"] == DONE else RequestState.FAILED
        self.started_at = _parse_time(file_status.get("started_at"))
        self.transferred_at = _parse_time(file_status.get("finished_at"))
        self.source_rse_id = file_status.get("source_rse_id")
        self.err_msg = get_transfer_error(self.state, self.reason) if self.state == RequestState.FAILED else None
        self.source_url = file_status.get("source_url")

    def __str__(self) -> str:
        return f"magic transfer {self.external_id} of request {self.request_id}: {self.state.name}"

    def initialize(self, session: Session, logger: LoggerFunction = logging.log) -> None:
        pass  # everything is known from the status file already

    def get_monitor_msg_fields(self, session: Session, logger: LoggerFunction = logging.log) -> dict[str, Any]:
        return {
            "protocol": "magic",
            "reason": self.reason,
            "src-url": self.source_url,
            "started_at": self.started_at,
            "transferred_at": self.transferred_at,
        }


_children: list[subprocess.Popen[bytes]] = []
COPIER_CONFIG = "rucio.cfg"


def copier_config(job_dir: Path) -> Path | None:
    """The submitter's ``rucio.cfg`` without Rucio's metrics server, for a copier; None when it serves none.
    Rucio binds ``[monitor] metrics_port`` when a process imports its monitor: a copier reading the submitter's
    file would find the port taken and die before it reports its copies."""
    from rucio.common.config import Config

    parser = configparser.ConfigParser(interpolation=None)
    source = Config().configfile
    if not source or not parser.read(source) or not parser.getboolean("monitor", "enable_metrics", fallback=False):
        return None
    parser.set("monitor", "enable_metrics", "False")
    target = job_dir / COPIER_CONFIG
    with target.open("w") as written:
        parser.write(written)
    return target


def spawn_copier(job_dir: Path) -> int:
    """Start the copier for a job in its own session, so it outlives the submitter; returns its pid. A thread
    waits on it, so a finished copier is reaped at once rather than left a zombie until the next copy."""
    package_root = str(Path(rucio_magic_ext.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    quiet = copier_config(job_dir)
    if quiet is not None:
        env["RUCIO_CONFIG"] = str(quiet)
    with open(job_dir / LOG_FILE, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "rucio_magic_ext.transfertool.copier", str(job_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=job_dir,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
    _children.append(child)
    threading.Thread(target=_reap, args=(child,), name=f"reap-copier-{child.pid}", daemon=True).start()
    return child.pid


def _reap(child: subprocess.Popen[bytes]) -> None:
    child.wait()
    with contextlib.suppress(ValueError):
        _children.remove(child)


class MagicCopyTransfertool(Transfertool):
    """Copies with the project's storage layer: posix, root:// (server to server where the destination takes
    third-party copies, else streamed through the copier), davs:// and https:// (streamed)."""

    external_name = "magic"
    required_rse_attrs = ()
    supported_schemes = set(supported_schemes())

    _last_purge = 0.0

    def __init__(
        self,
        external_host: str | None = None,
        logger: LoggerFunction = logging.log,
        transfer_dir: str | os.PathLike[str] | None = None,
        group_bulk: int | None = None,
        max_active: int | None = None,
    ) -> None:
        super().__init__(external_host or default_external_host(), logger)
        self.store = JobStore(transfer_dir or configured_transfer_dir())
        setting = functools.partial(config_get_int, CONFIG_SECTION, raise_exception=False)
        self.group_bulk = group_bulk or setting("magic_group_bulk", default=DEFAULT_GROUP_BULK)
        self.max_active = max_active or setting("magic_max_active", default=DEFAULT_MAX_ACTIVE)
        self.retention = datetime.timedelta(days=setting("magic_job_retention_days", default=DEFAULT_RETENTION_DAYS))

    @classmethod
    def copyable_sources(cls, hop: DirectTransfer) -> list[RequestSource]:
        """Sources this tool can copy from to the hop's destination: same scheme, one it serves."""
        scheme = hop.dst.scheme
        if scheme not in cls.supported_schemes:
            return []
        return [s for s in hop.sources if (s.scheme or scheme_of(hop.source_url(s))) == scheme]

    @classmethod
    def submission_builder_for_path(
        cls, transfer_path: list[DirectTransfer], logger: LoggerFunction = logging.log
    ) -> tuple[list[DirectTransfer], TransferToolBuilder | None]:
        """Take the first hop only: later hops wait until their source copy exists."""
        hop = transfer_path[0]
        if not cls.can_perform_transfer(hop.src.rse, hop.dst.rse) or not cls.copyable_sources(hop):
            logger(logging.INFO, "%s: no source reachable by %s for %s", hop.rws.request_id, cls.__name__, hop)
            return [], None
        return [hop], TransferToolBuilder(cls, external_host=default_external_host())

    def group_into_submit_jobs(self, transfer_paths: Iterable[list[DirectTransfer]]) -> list[dict[str, Any]]:
        hops = [path[0] for path in transfer_paths]
        size = max(1, self.group_bulk)
        return [{"transfers": hops[i : i + size], "job_params": {}} for i in range(0, len(hops), size)]

    @staticmethod
    def _overwrite_allowed(hop: DirectTransfer) -> bool:
        """As FTS3 is configured by Rucio: disks may be overwritten, tapes only when asked to."""
        if hop.rws.attributes.get("overwrite") or not hop.dst.rse.is_tape():
            return True
        return bool(hop.dst.rse.attributes.get("overwrite", False))

    def file_spec(self, hop: DirectTransfer) -> dict[str, Any]:
        """What the copier needs to know about one transfer, and nothing from the database. With each URL goes
        the root of its RSE's protocol (`root`, `dest_root`): the copier reads and writes nothing outside it."""
        rws = hop.rws
        return {
            "request_id": rws.request_id,
            "scope": rws.scope.external,
            "name": rws.name,
            "activity": rws.activity,
            "bytes": rws.byte_count,
            "adler32": rws.adler32,
            "md5": rws.md5,
            "sources": [
                {
                    "url": hop.source_url(s),
                    "root": protocol_root(hop.source_protocol(s).attributes),
                    "rse": s.rse.name,
                    "rse_id": s.rse.id,
                }
                for s in self.copyable_sources(hop)
            ],
            "dest_url": hop.dest_url,
            "dest_root": protocol_root(hop.dest_protocol().attributes),
            "dest_rse": hop.dst.rse.name,
            "dest_rse_id": hop.dst.rse.id,
            "overwrite": self._overwrite_allowed(hop),
        }

    def submit(
        self, transfers: Iterable[DirectTransfer], job_params: dict[str, str], timeout: int | None = None
    ) -> str:
        """Store the job and start its copier; returns the job id without waiting for any byte."""
        files = [self.file_spec(hop) for hop in transfers]
        job_id = self.store.create({"files": files, "max_active": self.max_active, "external_host": self.external_host})
        pid = spawn_copier(self.store.job_dir(job_id))
        self.logger(logging.INFO, "Started copier %d for job %s (%d files)", pid, job_id, len(files))
        self._purge_now_and_then()
        return job_id

    def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if now - MagicCopyTransfertool._last_purge < PURGE_INTERVAL_SECONDS:
            return
        MagicCopyTransfertool._last_purge = now
        removed = self.store.purge(self.retention)
        if removed:
            self.logger(logging.INFO, "Removed %d old jobs from %s", removed, self.store.root)

    def _job_status(self, job_id: str) -> dict[str, Any] | None:
        """The job's status; files of a job whose copier is gone are FAILED with that reason."""
        status = self.store.read_status(job_id)
        if status is None or status["state"] == FINISHED or self.store.is_held(job_id):
            return status
        status = self.store.read_status(job_id) or status  # it may have finished in between
        if status["state"] == FINISHED:
            return status
        if status["state"] == QUEUED:
            submitted = _parse_time(status.get("submitted_at")) or datetime.datetime.min
            if datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - submitted < START_GRACE:
                return status
        reason = f"TRANSFER copier process ended before the copy finished (see {self.store.job_dir(job_id) / LOG_FILE})"
        for file_status in status["files"].values():
            if file_status.get("state") not in (DONE, FAILED):
                file_status.update(state=FAILED, reason=reason)
        return status

    def bulk_query(
        self, requests_by_eid: Mapping[str, Mapping[str, Any]], timeout: int | None = None
    ) -> dict[str, Any]:
        """Per job: None if unknown (lost), else {request_id: report} for its finished requests."""
        responses: dict[str, Any] = {}
        for job_id, requests in requests_by_eid.items():
            try:
                status = self._job_status(job_id)
            except Exception as error:
                responses[job_id] = error
                continue
            if status is None:
                responses[job_id] = None
                continue
            reports = {}
            for request_id, request in requests.items():
                file_status = status["files"].get(request_id)
                if file_status and file_status.get("state") in (DONE, FAILED):
                    reports[request_id] = MagicTransferStatusReport(request_id, job_id, file_status, request=request)
            responses[job_id] = reports
        return responses

    def query(
        self, transfer_ids: Sequence[str], details: bool = False, timeout: int | None = None
    ) -> list[dict[str, Any] | None]:
        """The stored status of each job (None for unknown ones)."""
        return [self._job_status(job_id) for job_id in transfer_ids]

    def cancel(self, transfer_ids: Sequence[str], timeout: int | None = None) -> bool:
        for job_id in transfer_ids:
            self.store.request_cancel(job_id)
        return True

    def update_priority(self, transfer_id: str, priority: int, timeout: int | None = None) -> bool:
        """Jobs run in submission order within the host's copy slots; priorities do not apply."""
        return True
