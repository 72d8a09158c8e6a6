"""The worker process that really copies the files of one job, detached from the submitter.

    python -m rucio_magic_ext.transfertool.copier JOB_DIR

Each file is copied to a hidden temporary name next to its destination, checked against the source's bytes
and the catalogue's values, and only then renamed to its final name: whatever fails, nothing is left there.
Every source and the destination are confined to their RSE's root, as recorded in the job: a PFN that leads
out of it, e.g. from a DID name with ``../``, fails the transfer, and a job that records no root is not copied.
When Rucio's database is configured the copier reports the outcome at once (``receiver.py``); otherwise the
poller finds it in the job's status.
"""

from __future__ import annotations

import argparse
import logging
import os
import posixpath
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rucio_magic_ext.checksum import ADLER32, MD5
from rucio_magic_ext.common import LoggerFunction
from rucio_magic_ext.storage import OutsideRoot, Storage, credentials, get_storage
from rucio_magic_ext.storage.credentials import OPEN
from rucio_magic_ext.transfertool.jobs import ACTIVE, DONE, FAILED, FINISHED, LOG_FILE, STARTED, JobStore, utcnow
from rucio_magic_ext.transfertool.receiver import report_if_configured


class Cancelled(Exception):
    """The transfer was cancelled while copying."""


class TransferError(Exception):
    """A copy attempt failed; the message is the reason reported to Rucio."""


def temporary_location(destination: str, token: str) -> str:
    """A hidden name in the destination's directory, so the final rename stays atomic."""
    parts = urlsplit(destination)
    directory, name = posixpath.split(parts.path)
    return urlunsplit(parts._replace(path=posixpath.join(directory, f".{name}.{token}.part")))


def expected_checksums(spec: dict[str, Any]) -> dict[str, str]:
    """The catalogue's checksums for the file; adler32 preferred, md5 only when it is the sole one."""
    if spec.get("adler32"):
        return {ADLER32: str(spec["adler32"]).lower().zfill(8)}
    if spec.get("md5"):
        return {MD5: str(spec["md5"]).lower()}
    return {}


def _mismatches(found: dict[str, str], wanted: dict[str, str]) -> list[str]:
    return [f"{name} {found.get(name)} != {value}" for name, value in wanted.items() if found.get(name) != value]


def verify(storage: Storage, location: str, size: int | None, checksums: dict[str, str], what: str) -> str:
    """Raise TransferError unless the file at `location` has this size and these checksums; say how they were proven."""
    entry = storage.stat(location)
    if size is not None and entry.size != size:
        raise TransferError(f"{what} size mismatch: {entry.size} != {size} bytes")
    if not checksums:
        return "size only"
    proven = storage.checksum_detail(location, tuple(checksums))
    problems = _mismatches(proven.values, checksums)
    if problems:
        raise TransferError(f"{what} checksum mismatch: {'; '.join(problems)}")
    return proven.ways()


def confined_storage(url: str, root: str | None, what: str, rse: str | None) -> Storage:
    """The storage of `url`, confined to its RSE's `root` and presenting the credentials rucio.cfg gives `rse`;
    TransferError if there is no root or `url` leaves it."""
    if not root:
        raise TransferError(f"{what} storage root unknown (not recorded in the job): {url} is not copied unconfined")
    try:
        storage = get_storage(url, root=root, credentials=credentials.for_rse(rse) if rse else OPEN)
        storage.path_of(url)
    except OutsideRoot as error:
        raise TransferError(f"{what} outside its RSE's root: {error}") from None
    except ValueError as error:
        raise TransferError(f"{what} location refused: {error}") from None
    return storage


def copy_one_source(
    spec: dict[str, Any],
    source: dict[str, Any],
    target: Storage,
    token: str,
    check_cancel: Callable[[int], None],
    logger: LoggerFunction,
) -> None:
    """Copy from one source (an entry of `spec['sources']`) to `target`, the destination's confined storage,
    verified; raises TransferError or Cancelled."""
    destination = spec["dest_url"]
    source_url = source["url"]
    origin = confined_storage(source_url, source.get("root"), "SOURCE", source.get("rse"))
    if origin.scheme != target.scheme:
        raise TransferError(f"TRANSFER scheme mismatch: {origin.scheme}:// to {target.scheme}:// is not supported")
    expected_size = spec.get("bytes")
    expected = expected_checksums(spec)
    algorithms = tuple(expected) or (ADLER32,)

    try:
        source_entry = origin.stat(source_url)
    except FileNotFoundError:
        raise TransferError(f"SOURCE file not found: {source_url} (No such file or directory)") from None
    if expected_size is not None and source_entry.size != expected_size:
        raise TransferError(
            f"SOURCE size mismatch: {source_url} has {source_entry.size} bytes, the catalogue {expected_size}"
        )

    temporary = temporary_location(destination, token)
    try:
        logger(logging.INFO, "Copying %s to %s", source_url, temporary)
        try:
            copied = target.copy(source_url, temporary, algorithms, progress=check_cancel, source_storage=origin)
        except FileNotFoundError as error:
            raise TransferError(f"SOURCE file not found: {source_url} ({error.strerror})") from None
        if copied.size != source_entry.size:
            raise TransferError(f"SOURCE changed while read: {copied.size} bytes read, {source_entry.size} expected")
        problems = _mismatches(copied.checksums, expected)
        if problems:
            raise TransferError(f"SOURCE checksum mismatch with the catalogue: {'; '.join(problems)}")
        how = verify(target, temporary, copied.size, copied.checksums, "DESTINATION")
        target.rename(temporary, destination)
        logger(logging.INFO, "Done %s (%d bytes, %s, %s; destination proven: %s)", destination, copied.size,
               copied.checksums, copied.method, how)
    except OutsideRoot as error:  # the destination was checked: only a temporary name could get here
        raise TransferError(f"DESTINATION outside its RSE's root: {error}") from None
    except OSError as error:
        raise TransferError(f"TRANSFER error copying {source_url} to {destination}: {error}") from None
    finally:
        try:
            target.remove(temporary)
        except (OSError, OutsideRoot) as error:
            logger(logging.WARNING, "Could not remove the temporary %s: %s", temporary, error)


def transfer_file(
    spec: dict[str, Any],
    token: str,
    check_cancel: Callable[[int], None],
    logger: LoggerFunction,
) -> dict[str, Any]:
    """Copy one file, trying its sources in order; returns its final state, reason and source used."""
    destination = spec["dest_url"]
    try:
        target = confined_storage(destination, spec.get("dest_root"), "DESTINATION", spec.get("dest_rse"))
    except TransferError as refused:
        logger(logging.WARNING, "%s: %s", spec["request_id"], refused)
        return {"state": FAILED, "reason": str(refused)}
    try:
        existing = target.stat(destination)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        try:
            verify(target, destination, spec.get("bytes"), expected_checksums(spec), "DESTINATION")
        except TransferError as mismatch:
            if not spec.get("overwrite"):
                reason = f"DESTINATION file exists and differs ({mismatch}); overwrite is not allowed"
                return {"state": FAILED, "reason": reason}
        else:
            return {"state": DONE, "reason": "DESTINATION already holds the expected file"}

    reasons = []
    for source in spec["sources"]:
        try:
            copy_one_source(spec, source, target, token, check_cancel, logger)
        except TransferError as error:
            logger(logging.WARNING, "%s: %s", spec["request_id"], error)
            reasons.append(str(error))
            continue
        return {"state": DONE, "reason": None, "source_url": source["url"], "source_rse_id": source.get("rse_id")}
    return {"state": FAILED, "reason": " | ".join(reasons) or "SOURCE none given"}


def run_job(store: JobStore, job_id: str, logger: LoggerFunction = logging.log) -> None:
    """Run one job to the end, recording every file's outcome in the job's status."""
    with store.hold(job_id) as held:
        if not held:
            logger(logging.INFO, "Job %s is already being run by another copier", job_id)
            return
        job = store.read_job(job_id)
        status = store.read_status(job_id) or {"job_id": job_id, "files": {}}
        if status.get("state") == FINISHED:
            return
        status.update(state=STARTED, pid=os.getpid(), started_at=utcnow())
        store.write_status(job_id, status)

        def check_cancel(_copied: int = 0) -> None:
            if store.cancel_requested(job_id):
                raise Cancelled()

        with store.slot(job.get("max_active", 1), lambda: store.cancel_requested(job_id)) as got_slot:
            status["state"] = ACTIVE
            store.write_status(job_id, status)
            for spec in job["files"]:
                request_id = spec["request_id"]
                started = utcnow()
                status["files"][request_id] = {"state": ACTIVE, "started_at": started}
                store.write_status(job_id, status)
                try:
                    if not got_slot:
                        raise Cancelled()
                    check_cancel()
                    outcome = transfer_file(spec, job_id, check_cancel, logger)
                except Cancelled:
                    outcome = {"state": FAILED, "reason": "TRANSFER cancelled"}
                except Exception as error:
                    logger(logging.ERROR, "%s: unexpected error", request_id, exc_info=True)
                    outcome = {"state": FAILED, "reason": f"TRANSFER unexpected error: {error!r}"}
                status["files"][request_id] = dict(outcome, started_at=started, finished_at=utcnow())
                store.write_status(job_id, status)
        status.update(state=FINISHED, finished_at=utcnow())
        store.write_status(job_id, status)
    if job.get("report", True):
        report_if_configured(job_id, status["files"], logger)


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanup of the temporary file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Copy the files of one magic transfer job.")
    parser.add_argument("job_dir", help="the job's directory in the transfer store")
    args = parser.parse_args(argv)
    job_dir = Path(args.job_dir).resolve()
    store = JobStore(job_dir.parent.parent)
    logging.basicConfig(
        filename=job_dir / LOG_FILE, level=logging.INFO, format="%(asctime)s\t%(process)d\t%(levelname)s\t%(message)s"
    )
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    run_job(store, job_dir.name, logging.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
