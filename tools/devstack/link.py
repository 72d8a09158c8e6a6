"""Two sites on one machine: the observatory in a network namespace of its own, joined to this host (the data
centre, where Rucio's server, its database and the daemons run, as at PIC) by one veth link shaped by `tc tbf`.

    link = Link("magic", rate_mbit=50)
    link.up()                        # namespace magic-orm, 10.77.<n>.2 there, 10.77.<n>.1 here
    link.run(["xrootd", ...])        # argv that runs inside the observatory's namespace
    link.crossed()                   # bytes that went each way over the link (the veth's own counters)
    link.cut(); link.mend()          # the link down, and up again
    link.down()

Made with iproute2 as root; addresses live only inside the link. `netem` (delay, loss) is not in every kernel,
`tbf` is: the link has a rate, and a burst and queue of its own.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import zlib

PACKAGES = ("iproute2",)


class LinkError(RuntimeError):
    """The link could not be made; the message says which command failed and what it said."""


def missing() -> str | None:
    """Why a link cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces and veth links need root"
    absent = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    return f"{', '.join(absent)} not found: apt-get install {' '.join(PACKAGES)}" if absent else None


@dataclasses.dataclass
class Link:
    """The observatory's namespace ``<name>-orm`` and the veth pair ``<name>o`` (there) / ``<name>h`` (here), with
    ``rate_mbit`` each way. Names are short (an interface name has at most 15 characters)."""

    name: str
    rate_mbit: float
    burst: str = "64kb"
    latency: str = "100ms"

    @property
    def namespace(self) -> str:
        return f"{self.name}-orm"

    @property
    def _subnet(self) -> str:
        return f"10.77.{zlib.crc32(self.name.encode()) % 250 + 1}"

    @property
    def here(self) -> str:
        """The data centre's address on the link."""
        return f"{self._subnet}.1"

    @property
    def there(self) -> str:
        """The observatory's address on the link."""
        return f"{self._subnet}.2"

    @property
    def _interfaces(self) -> tuple[str, str]:
        return f"{self.name[:12]}o", f"{self.name[:12]}h"

    def up(self) -> None:
        """Make the namespace and the shaped link (a stale one of the same name is removed first)."""
        self.down()
        there, here = self._interfaces
        rate = f"{self.rate_mbit:g}mbit"
        for argv in (
            ["ip", "netns", "add", self.namespace],
            ["ip", "link", "add", here, "type", "veth", "peer", "name", there],
            ["ip", "link", "set", there, "netns", self.namespace],
            ["ip", "addr", "add", f"{self.here}/24", "dev", here],
            ["ip", "-n", self.namespace, "addr", "add", f"{self.there}/24", "dev", there],
            ["ip", "link", "set", here, "up"],
            ["ip", "-n", self.namespace, "link", "set", there, "up"],
            ["ip", "-n", self.namespace, "link", "set", "lo", "up"],
            ["tc", "qdisc", "add", "dev", here, "root", "tbf", "rate", rate, "burst", self.burst,
             "latency", self.latency],
            ["tc", "-n", self.namespace, "qdisc", "add", "dev", there, "root", "tbf", "rate", rate, "burst",
             self.burst, "latency", self.latency],
        ):
            _ip(argv)

    def down(self) -> None:
        """Remove the namespace, and with it both ends of the link."""
        subprocess.run(["ip", "netns", "delete", self.namespace], capture_output=True)
        subprocess.run(["ip", "link", "delete", self._interfaces[1]], capture_output=True)

    def run(self, argv: list[str]) -> list[str]:
        """``argv`` as run inside the observatory's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def cut(self) -> None:
        """The link goes down, as a fibre cut: nothing crosses until ``mend``."""
        _ip(["ip", "link", "set", self._interfaces[1], "down"])

    def mend(self) -> None:
        _ip(["ip", "link", "set", self._interfaces[1], "up"])

    def crossed(self) -> dict[str, int]:
        """Bytes that crossed the link so far, by direction, from the veth's own counters (here's end)."""
        here = self._interfaces[1]
        counters = {}
        for direction, counter in (("to_orm", "tx_bytes"), ("from_orm", "rx_bytes")):
            with open(f"/sys/class/net/{here}/statistics/{counter}") as handle:
                counters[direction] = int(handle.read())
        return counters


def _ip(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise LinkError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
