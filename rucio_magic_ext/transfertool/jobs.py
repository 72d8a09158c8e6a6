"""The on-disk job store shared by the submitter, the copier processes and the poller.

A job is a directory `<root>/jobs/<job_id>/` holding:
  job.json     what to copy, written once by the submitter: per file its request, size and checksums,
               `sources` (each `url` with its RSE's `root`) and `dest_url` with `dest_root`; a root is the
               RSE protocol's prefix as a URL, and the copier touches nothing outside it
  status.json  progress and outcome per request, written only by the copier (atomic replace)
  lock         held (flock) by the copier for as long as it runs: a free lock on an
               unfinished job means the copier died
  cancel       present when the transfer was cancelled
  copier.log   the copier's own log
State lives in files, not in a process, so jobs survive the submitter and the poller restarting.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

# Job states
QUEUED = "QUEUED"  # written by the submitter, copier not started yet
STARTED = "STARTED"  # copier running, waiting for a free copy slot
ACTIVE = "ACTIVE"  # copying
FINISHED = "FINISHED"  # every file DONE or FAILED

# File states
DONE = "DONE"
FAILED = "FAILED"

JOB_FILE = "job.json"
STATUS_FILE = "status.json"
LOCK_FILE = "lock"
CANCEL_FILE = "cancel"
LOG_FILE = "copier.log"


def utcnow() -> str:
    """Naive UTC ISO time, as Rucio stores its timestamps."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Readers see either the old or the new document, never a half-written one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on `path`, or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


class JobStore:
    """Jobs under one directory (`[conveyor] magic_transfer_dir`)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.jobs = self.root / "jobs"
        self.slots = self.root / "slots"

    def job_dir(self, job_id: str) -> Path:
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise ValueError(f"invalid job id {job_id!r}")
        return self.jobs / job_id

    def create(self, job: dict[str, Any]) -> str:
        """Store a new job (its files listed in `job['files']`) and return its id."""
        job_id = str(uuid.uuid4())
        directory = self.job_dir(job_id)
        directory.mkdir(parents=True)
        job = dict(job, job_id=job_id, submitted_at=utcnow())
        write_json_atomically(directory / JOB_FILE, job)
        status = {
            "job_id": job_id,
            "state": QUEUED,
            "submitted_at": job["submitted_at"],
            "files": {spec["request_id"]: {"state": QUEUED} for spec in job["files"]},
        }
        write_json_atomically(directory / STATUS_FILE, status)
        return job_id

    def read_job(self, job_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads((self.job_dir(job_id) / JOB_FILE).read_text()))

    def read_status(self, job_id: str) -> dict[str, Any] | None:
        """The job's status, or None when the store has no such job."""
        try:
            return cast(dict[str, Any], json.loads((self.job_dir(job_id) / STATUS_FILE).read_text()))
        except FileNotFoundError:
            return None

    def write_status(self, job_id: str, status: dict[str, Any]) -> None:
        write_json_atomically(self.job_dir(job_id) / STATUS_FILE, status)

    def request_cancel(self, job_id: str) -> None:
        directory = self.job_dir(job_id)
        if directory.is_dir():
            (directory / CANCEL_FILE).write_text(utcnow())

    def cancel_requested(self, job_id: str) -> bool:
        return (self.job_dir(job_id) / CANCEL_FILE).exists()

    @contextlib.contextmanager
    def hold(self, job_id: str) -> Iterator[bool]:
        """Hold the job's lock while running it; yields False if another copier holds it."""
        fd = _try_lock(self.job_dir(job_id) / LOCK_FILE)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                os.close(fd)

    def is_held(self, job_id: str) -> bool:
        """True while a copier runs the job."""
        with self.hold(job_id) as free:
            return not free

    @contextlib.contextmanager
    def slot(self, count: int, should_stop: Callable[[], bool], poll_seconds: float = 0.5) -> Iterator[bool]:
        """Hold one of this host's `count` copy slots, which bound concurrent copies; False if `should_stop` said so."""
        self.slots.mkdir(parents=True, exist_ok=True)
        fd = None
        while fd is None:
            for index in range(max(1, count)):
                fd = _try_lock(self.slots / f"{index}.lock")
                if fd is not None:
                    break
            else:
                if should_stop():
                    yield False
                    return
                time.sleep(poll_seconds)
        try:
            yield True
        finally:
            os.close(fd)

    def purge(self, older_than: datetime.timedelta) -> int:
        """Remove finished jobs whose directory was last touched longer ago than `older_than`."""
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        try:
            iterator = os.scandir(self.jobs)
        except FileNotFoundError:
            return 0
        with iterator:
            for entry in iterator:
                try:
                    if entry.stat().st_mtime >= cutoff:
                        continue
                    status = self.read_status(entry.name) or {}
                except (OSError, ValueError):
                    continue
                if status.get("state") == FINISHED or not self.is_held(entry.name):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed += 1
        return removed
