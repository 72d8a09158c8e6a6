"""Command line of the dev stack: ``python3 tools/devstack up|down|status|reset|check``."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Sequence
from pathlib import Path

from . import database
from .config import DEFAULT_STATE, Settings
from .database import DatabaseUnavailable
from .stack import Stack, StackError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 tools/devstack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "reset", "check"],
                        help="check: the venv is ready (made if missing) and PostgreSQL answers")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="state folder (default: %(default)s)")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], help="database (default: sqlite, or as last up)")
    parser.add_argument("--port", type=int, help="REST server port on 127.0.0.1 (default: 18080, or as last up)")
    parser.add_argument("--pg-database", help="PostgreSQL database name (default: rucio_magic_dev)")
    parser.add_argument("--daemons", help="comma-separated daemons to start with up (default: all)")
    parser.add_argument("--storage", choices=["posix", "xrootd"],
                        help="where the RSEs' files live: local folders (default), or an XRootD server each for "
                             "ORM-ONSITE and PIC-DISK (root:// and WebDAV, etc/site-xrootd.cfg)")
    parser.add_argument("--auth", choices=["none", "x509", "token"],
                        help="with --storage xrootd: servers guarded as a site's, TLS and an X.509 proxy with VOMS "
                             "attributes, or WLCG tokens, all made for the stack (tools/devstack/grid.py); with token, "
                             "up stays in the foreground, as the token issuer lives in it (Ctrl-C stops the stack)")
    parser.add_argument("--link", type=float, metavar="MBIT",
                        help="with --storage xrootd: ORM-ONSITE's server in a network namespace of its own, joined "
                             "to this host (PIC's side: Rucio and every daemon) by one link shaped to MBIT Mbit/s "
                             "(needs root and iproute2)")
    parser.add_argument("--cache", action="store_true", default=None,
                        help="run Rucio's cache in a memcached of the stack's own, as sites do (needs memcached)")
    parser.add_argument("--metrics", action="store_true", default=None,
                        help="each daemon serves Rucio's Prometheus metrics on a port of its own, scraped by a "
                             "Prometheus of the stack's (needs Debian's prometheus)")
    return parser


def _serve_until_interrupted(stack: Stack) -> None:
    """The token issuer is a thread of this process: keep it, and the stack, until Ctrl-C."""
    print("token issuer running here; Ctrl-C stops the stack", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stack.down()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = {key: value for key, value in (("db", args.db), ("port", args.port),
                                             ("pg_database", args.pg_database), ("cache", args.cache),
                                             ("storage", args.storage), ("metrics", args.metrics),
                                             ("auth", args.auth), ("link_mbit", args.link))
               if value is not None}
    stack = Stack(args.state, **options)
    try:
        if args.command == "up":
            daemons = None if args.daemons is None else [d for d in args.daemons.split(",") if d]
            stack.up(daemons=daemons)
            print(json.dumps(stack.status(), indent=2))
            if stack.settings.auth == "token":
                _serve_until_interrupted(stack)
        elif args.command == "down":
            stack.down()
        elif args.command == "status":
            status = stack.status()
            print(json.dumps(status, indent=2))
            return 0 if status["rest_answers"] else 3
        elif args.command == "reset":
            stack.reset()
        elif args.command == "check":
            database.check_postgresql(Settings(state=args.state))
            print("ok: .venv ready, PostgreSQL answers")
    except (StackError, DatabaseUnavailable) as error:
        print(f"devstack {args.command}: {error}")
        return 1
    return 0
