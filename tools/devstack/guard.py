"""What a guarded site gives the stack's daemons: with ``auth="x509"`` or ``"token"`` both XRootD servers require TLS
and the credential, made for the stack by its grid (``grid.py``), and the daemons find theirs as at a site.

- ``[magic-credentials]`` in rucio.cfg for the project's storages (scanner, carrier, transfer tool);
- X509_USER_PROXY and X509_CERT_DIR in every daemon's environment for Rucio's own xrootd protocol (the reaper's
  ``xrdfs rm`` with GSI); with tokens, ORM-ONSITE's davs door deletes instead (Rucio's reaper asks a token only
  for davs, RSE attribute ``oidc_support``), Rucio's client of the grid's issuer in ``[oidc]``, and
  REQUESTS_CA_BUNDLE trusting the issuer.

The token issuer is a thread of the process that brought the stack up (``tools/demo``, a test): a token stack lives
as long as that process.
"""

from __future__ import annotations

from pathlib import Path

from .config import Settings
from .grid import Grid

AUTHS = ("none", "x509", "token")
#: With tokens, ORM-ONSITE's davs door (Rucio's gfal protocol) deletes first, and Rucio's reaper asks a token for it.
TOKEN_SITE = """# Written by tools/devstack/guard.py for a token-guarded stack, read after etc/site-xrootd.cfg.
[rse ORM-ONSITE protocol davs]
lan = read=2, write=2, delete=1
wan = read=2, write=2, delete=1, third_party_copy_read=2, third_party_copy_write=2

[rse ORM-ONSITE protocol root]
lan = read=1, write=1, delete=2
wan = read=1, write=1, delete=2, third_party_copy_read=1, third_party_copy_write=1

[rse ORM-ONSITE attributes]
oidc_support = true
"""


def guard(settings: Settings, grid: Grid) -> list[Path]:
    """Put the credentials and environment of ``settings.auth`` in ``settings``; the site files to add."""
    folder = grid.folder
    credentials = {"mechanism": settings.auth, "ca_dir": str(grid.ca_dir)}
    environment = {"X509_CERT_DIR": str(grid.ca_dir)}
    sites = []
    if settings.auth == "x509":
        credentials["x509_proxy"] = str(grid.proxy)
        # GSI matches the servers' certificate name (localhost) with the host of their URLs (127.0.0.1).
        environment.update(X509_USER_PROXY=str(grid.proxy), XrdSecGSISRVNAMES="localhost")
    else:
        token = grid.write_token(folder / "flow.token", grid.mint_token(lifetime=12 * 3600))
        credentials["token_file"] = str(token)
        environment["REQUESTS_CA_BUNDLE"] = str(grid.ca_bundle())
        settings.extra["oidc"] = grid.oidc_options(folder / "idpsecrets.json")
        site = folder / "site-tokens.cfg"
        site.write_text(TOKEN_SITE)
        sites.append(site)
    settings.extra["magic-credentials"] = credentials
    settings.environment.update(environment)
    return sites
