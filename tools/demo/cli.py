"""The demo's command line: one synthetic night through a stack it starts, and stops, itself."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from tools.demo.flow import run_flow
from tools.devstack import prometheus
from tools.devstack.config import REPO

DEFAULT_STATE = REPO / ".state" / "demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/demo",
        description="Start a Rucio stack on SQLite with every daemon, write one synthetic MAGIC night at the "
        "observatory (ORM-ONSITE), and watch rucio-magic-scanner register it, the conveyor copy it to the data "
        "centre (PIC-DISK), rucio-magic-carrier verify the copies and the reaper free the observatory disk; then "
        "print what happened, from the ledger, write its report (report.png, report.md) in the state folder, and "
        "stop the stack.",
    )
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="state folder (default: %(default)s)")
    parser.add_argument("--night", type=date.fromisoformat, default=date(2020, 1, 4), help="night (sunrise date)")
    parser.add_argument("--runs", type=int, default=3, help="runs in the night (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=1e-4, help="file size factor; 1 is real size (1 GB raw)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--trickle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="write the night file by file, this many seconds apart, like a running DAQ",
    )
    parser.add_argument(
        "--storage",
        choices=["posix", "xrootd"],
        default="posix",
        help="where the RSEs' files live: local folders (default), or two real XRootD servers, one for ORM-ONSITE "
        "and one for PIC-DISK, reached only over root:// (needs Debian's xrootd-server, xrootd-client and "
        "xrootd-server-plugins)",
    )
    parser.add_argument(
        "--auth",
        choices=["none", "x509", "token"],
        default="none",
        help="with --storage xrootd: both servers require TLS and an X.509 proxy with VOMS attributes, or WLCG tokens, "
        "made for the night (tools/devstack/grid.py); the daemons get theirs as a site gives them",
    )
    parser.add_argument(
        "--link",
        type=float,
        default=0,
        metavar="MBIT",
        help="with --storage xrootd: ORM-ONSITE's server in a network namespace of its own, joined to this host "
        "(Rucio and every daemon, as at PIC) by one link shaped to MBIT Mbit/s; the bytes it carried are reported "
        "(needs root and iproute2)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="every daemon serves Rucio's Prometheus metrics on a port of its own, a Prometheus of the stack's "
        "scrapes them every 2 s, and every query of etc/grafana/magic-flow.json is asked of it during the night "
        "and at its end: the demo fails when a panel shows nothing, or other figures than the ledger's (needs "
        "Debian's prometheus)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the flow")
    args = parser.parse_args(argv)
    if args.metrics and prometheus.missing():
        parser.error(f"--metrics: {prometheus.missing()}")
    if args.link and args.storage != "xrootd":
        parser.error("--link joins two XRootD servers: add --storage xrootd")
    if args.auth != "none" and args.storage != "xrootd":
        parser.error(f"--auth {args.auth} guards XRootD servers: add --storage xrootd")
    return run_flow(
        args.state,
        args.night,
        args.runs,
        args.scale,
        args.seed,
        keep=args.keep,
        timeout=args.timeout,
        trickle=args.trickle,
        storage=args.storage,
        metrics=args.metrics,
        auth=args.auth,
        link_mbit=args.link,
    )
