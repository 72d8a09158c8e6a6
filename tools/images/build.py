"""The images and how each is made: one Debian base from mmdebstrap, every other image a few layers on it."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".state" / "images"
WHEELS = STATE / "wheels"
RUCIO_VERSION = os.environ.get("RUCIO_VERSION", "41.5.1")
TAG = os.environ.get("RUCIO_MAGIC_TAG", "dev")
SUITE = "bookworm"

#: Every Debian package of every image, in the one base: a layer shared by all of them and pulled by none.
BASE_PACKAGES = (
    "ca-certificates", "curl", "procps", "python3", "python3-pip",  # Python and pip for Rucio's wheels
    "apache2", "libapache2-mod-wsgi-py3",  # the REST server, as Rucio's server image runs it
    "memcached",  # Rucio's cache, started by the server and daemons entrypoints as upstream's are
    "xrootd-server", "xrootd-client", "xrootd-server-plugins",  # the storages, and xrdfs/xrdcp for the daemons
    "postgresql",  # Rucio's database
)
#: Left out of the base: documentation, manual pages and translations.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")


class ImageError(RuntimeError):
    """A step could not run or failed; the message names the step and the command."""


@dataclass(frozen=True)
class Image:
    tag: str
    dockerfile: Path | None  # None: the base, made by mmdebstrap
    context: Path = REPO
    target: str | None = None
    args: dict[str, str] = field(default_factory=dict)


BASE = Image(f"localhost/rucio-magic/debian:{SUITE}", None)
RUCIO_SERVER = Image(f"localhost/rucio/rucio-server:release-{RUCIO_VERSION}", REPO / "etc/docker/rucio/Dockerfile",
                     REPO / "etc/docker/rucio", "server", {"BASE_IMAGE": BASE.tag, "RUCIO_VERSION": RUCIO_VERSION})
RUCIO_DAEMONS = Image(f"localhost/rucio/rucio-daemons:release-{RUCIO_VERSION}",
                      REPO / "etc/docker/rucio/Dockerfile", REPO / "etc/docker/rucio", "daemons",
                      {"BASE_IMAGE": BASE.tag, "RUCIO_VERSION": RUCIO_VERSION})
MAGIC_SERVER = Image(f"localhost/rucio-magic-server:{TAG}", REPO / "Dockerfile.rucio-dev", REPO, None,
                     {"RUCIO_IMAGE": "localhost/rucio/rucio-server", "RUCIO_VERSION": RUCIO_VERSION})
MAGIC_DAEMONS = Image(f"localhost/rucio-magic-daemons:{TAG}", REPO / "Dockerfile.rucio-dev", REPO, None,
                      {"RUCIO_IMAGE": "localhost/rucio/rucio-daemons", "RUCIO_VERSION": RUCIO_VERSION,
                       "RUCIO_MAGIC_EXTRAS": "xrootd"})
XROOTD = Image(f"localhost/rucio-magic-xrootd:{TAG}", REPO / "etc/docker/services/Dockerfile",
               REPO / "etc/docker/services", "xrootd", {"BASE_IMAGE": BASE.tag})
POSTGRES = Image(f"localhost/rucio-magic-postgres:{TAG}", REPO / "etc/docker/services/Dockerfile",
                 REPO / "etc/docker/services", "postgres", {"BASE_IMAGE": BASE.tag})
#: In build order: each after the one it is layered on.
IMAGES = (BASE, RUCIO_SERVER, RUCIO_DAEMONS, MAGIC_SERVER, MAGIC_DAEMONS, XROOTD, POSTGRES)


def _run(step: str, command: list[str], **kwargs: object) -> None:
    print(f"tools/images: {step}: {' '.join(command)}", flush=True)
    try:
        subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError as error:
        raise ImageError(f"{step}: {command[0]} not found (apt-get install podman runc mmdebstrap)") from error
    except subprocess.CalledProcessError as error:
        raise ImageError(f"{step}: `{' '.join(command)}` exited {error.returncode}") from error


def exists(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag], check=False).returncode == 0


def build_base() -> None:
    """Debian from its own packages (mmdebstrap), imported as an image: no registry is needed.

    The host's apt cache is lent to mmdebstrap and gets what it downloads, so a second build downloads nothing.
    """
    STATE.mkdir(parents=True, exist_ok=True)
    tarball = STATE / f"debian-{SUITE}.tar"
    archives = "/var/cache/apt/archives/"
    command = ["mmdebstrap", "--variant=minbase", "--aptopt=APT::Install-Recommends \"false\"",
               f"--include={','.join(BASE_PACKAGES)}",
               *(f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES),
               # Pip installs into the image's own Python, as in Rucio's images: the image is its environment.
               "--customize-hook=rm -f \"$1\"/usr/lib/python3*/EXTERNALLY-MANAGED"]
    if Path(archives).is_dir() and os.access(archives, os.W_OK):
        command += [f"--setup-hook=mkdir -p \"$1\"{archives}", f"--setup-hook=sync-in {archives} {archives}",
                    f"--customize-hook=sync-out {archives} {archives}"]
    _run("base", [*command, SUITE, str(tarball)])
    try:
        _run("base", ["podman", "import", "--change", "CMD=[\"/bin/bash\"]",
                      "--change", "ENV=LANG=C.UTF-8", str(tarball), BASE.tag], stdout=subprocess.DEVNULL)
    finally:
        tarball.unlink(missing_ok=True)


def _requirements() -> list[str]:
    """What the images install from PyPI: Rucio, this package's requirements and its xrootd extra, and what
    building this package from its source needs (it is built inside the image, by Dockerfile.rucio-dev)."""
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    lines = setup["options"]["install_requires"].splitlines() + setup["options.extras_require"]["xrootd"].splitlines()
    own = [line.strip() for line in lines if line.strip() and not line.strip().startswith("rucio")]
    return [f"rucio[postgresql]=={RUCIO_VERSION}", *own, "setuptools>=68", "wheel"]


def build_wheels() -> None:
    """Every wheel the images install, fetched once and lent to the builds as /wheels.

    Fetched by the base image's own Python (its exact version decides markers such as python_full_version),
    with the host's pip cache and CA bundle lent to it: the host reaches PyPI, the build then needs no network.
    """
    WHEELS.mkdir(parents=True, exist_ok=True)
    cache = Path.home() / ".cache" / "pip"
    cache.mkdir(parents=True, exist_ok=True)
    command = ["podman", "run", "--rm", "--network", "host", "-v", f"{WHEELS}:/wheels",
               "-v", f"{cache}:/root/.cache/pip"]
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        command += ["-v", f"{bundle}:/etc/ssl/host-ca.crt:ro", "-e", "PIP_CERT=/etc/ssl/host-ca.crt"]
    _run("wheels", [*command, BASE.tag, "python3", "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                    "--wheel-dir", "/wheels", *_requirements()])


def build_image(image: Image) -> None:
    assert image.dockerfile is not None
    command = ["podman", "build", "--layers", "--volume", f"{WHEELS}:/wheels:ro", "--build-arg",
               "RUCIO_MAGIC_WHEELS=/wheels", "-f", str(image.dockerfile), "-t", image.tag]
    if image.target:
        command += ["--target", image.target]
    for key, value in image.args.items():
        command += ["--build-arg", f"{key}={value}"]
    _run(image.tag, [*command, str(image.context)])


def build_all() -> None:
    """The base and the wheels once; every other image each time, which podman's layer cache makes quick when
    nothing under it changed and right when something did."""
    timings: list[tuple[str, float]] = []
    for image in IMAGES:
        started = time.monotonic()
        if image is BASE:
            if exists(BASE.tag):
                print(f"tools/images: {BASE.tag} exists", flush=True)
                continue
            build_base()
        else:
            if not any(WHEELS.glob("rucio-*.whl")):
                build_wheels()
                timings.append(("wheels", time.monotonic() - started))
                started = time.monotonic()
            build_image(image)
        timings.append((image.tag, time.monotonic() - started))
    for name, seconds in timings:
        print(f"tools/images: {seconds:6.1f} s  {name}")


def remove() -> None:
    """Remove every image of the stack (newest first) and the wheel folder."""
    for image in reversed(IMAGES):
        if exists(image.tag):
            _run("remove", ["podman", "rmi", "--force", image.tag], stdout=subprocess.DEVNULL)
    subprocess.run(["podman", "image", "prune", "--force"], check=False, stdout=subprocess.DEVNULL)
    shutil.rmtree(WHEELS, ignore_errors=True)
