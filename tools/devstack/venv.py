"""Make sure the repository's virtualenv exists with the project installed, then continue inside it.

Standard library only: this runs with the system python before any dependency is there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
VENV_PYTHON = VENV / "bin" / "python"


def _installed() -> bool:
    probe = (
        "import importlib.metadata as m; m.version('rucio-magic-ext'); "
        "import rucio, gunicorn, pytest, pytest_timeout, xdist, podman_compose, matplotlib, XRootD, astropy, gammapy, "
        "mypy"
    )
    return subprocess.run([str(VENV_PYTHON), "-c", probe], capture_output=True).returncode == 0


def link_debian_gfal2() -> None:
    """Rucio's gfal protocol (a site's davs doors) needs gfal2's Python module, which PyPI gives only as a build
    against gfal2's C library: Debian's python3-gfal2 is linked into the venv, when it is built for its Python."""
    for module in Path("/usr/lib/python3/dist-packages").glob("gfal2.cpython-*.so"):
        for site_packages in VENV.glob("lib/python3.*/site-packages"):
            tag = site_packages.parent.name.replace("python", "").replace(".", "")  # python3.11 -> 311
            link = site_packages / module.name
            if f"cpython-{tag}-" in module.name and not link.exists():
                link.symlink_to(module)


def ensure() -> None:
    """Create ``.venv`` and ``pip install -e '.[test,server,report]'`` if needed, then re-exec with its python."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not VENV_PYTHON.exists():
        print(f"creating {VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not _installed():
        print("installing the project into .venv (pip install -e '.[test,server,report]')", file=sys.stderr)
        subprocess.run([str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run([str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "-e", ".[test,server,report]"],
                       check=True, cwd=REPO)
    link_debian_gfal2()
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
