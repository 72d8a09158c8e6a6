"""Build the container images of the MAGIC stack with podman, from Debian's packages and PyPI's wheels.

    python3 tools/images build            # every image (the base and the wheels once, the rest from cache)
    python3 tools/images build --fresh    # remove them first, then build (what a fresh machine does)
    python3 tools/images list             # the images and whether they exist
    python3 tools/images remove           # remove them (and the wheel folder)

No image registry is needed: the base is made by mmdebstrap from Debian's packages and imported, the rest is
layered on it (etc/docker/rucio: Rucio's server and daemons images, etc/docker/services: XRootD and
PostgreSQL, Dockerfile.rucio-dev: the package on Rucio's images). See README.md, "Run in containers".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.images import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/images", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="build every missing image (and the wheel folder)")
    build_cmd.add_argument("--fresh", action="store_true", help="remove the images and wheels first")
    sub.add_parser("list", help="the images and whether each exists")
    sub.add_parser("remove", help="remove the images and the wheel folder")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            if args.fresh:
                build.remove()
            build.build_all()
        elif args.command == "list":
            for image in build.IMAGES:
                print(f"{'present' if build.exists(image.tag) else 'missing':8} {image.tag}")
        else:
            build.remove()
    except build.ImageError as error:
        print(f"tools/images: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
