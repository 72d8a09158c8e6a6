"""The link between the two sites of the two-site stack (tools/devstack/link.py): the observatory in a network
namespace of its own, joined to this host by one veth pair shaped by tbf. Bytes are sent across it by a real TCP
server and client; the veth's counters, the rate and an outage are what is checked."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from tools.devstack import link as link_module

pytestmark = pytest.mark.timeout(120)

#: A TCP server inside the observatory's namespace: sends SIZE bytes to each client, then closes.
SENDER = """
import socket, sys
size = int(sys.argv[2])
with socket.create_server((sys.argv[1], 0)) as server:
    print(server.getsockname()[1], flush=True)
    while True:
        client, _ = server.accept()
        with client:
            block = b"m" * 65536
            left = size
            while left > 0:
                left -= client.send(block[: min(left, len(block))])
"""


@pytest.fixture
def link() -> Iterator[link_module.Link]:
    reason = link_module.missing()
    if reason:
        pytest.skip(f"no two-site link here: {reason}")
    made = link_module.Link(f"t{uuid.uuid4().hex[:6]}", rate_mbit=40)
    made.up()
    yield made
    made.down()


def receive(host: str, port: int, timeout: float = 30) -> tuple[int, float]:
    """Bytes read from the sender until it closes, and the seconds it took."""
    started = time.monotonic()
    received = 0
    with socket.create_connection((host, port), timeout=timeout) as conn:
        while chunk := conn.recv(1 << 16):
            received += len(chunk)
    return received, time.monotonic() - started


def test_bytes_cross_at_the_links_rate_and_its_counters_count_them(link: link_module.Link) -> None:
    size = 10_000_000  # 80 Mbit: 2 s at 40 Mbit/s
    sender = subprocess.Popen(link.run([sys.executable, "-c", SENDER, link.there, str(size)]),
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(sender.stdout.readline())
        before = link.crossed()
        received, seconds = receive(link.there, port)
        after = link.crossed()
    finally:
        sender.kill()
        sender.wait()
    assert received == size
    rate = received * 8 / seconds / 1e6
    assert 0.7 * link.rate_mbit < rate < 1.15 * link.rate_mbit, f"{rate:.1f} Mbit/s on a {link.rate_mbit} Mbit/s link"
    crossed = after["from_orm"] - before["from_orm"]
    assert size <= crossed < size * 1.06, crossed  # the payload once, and TCP's own headers


def test_a_cut_link_carries_nothing_until_it_is_mended(link: link_module.Link) -> None:
    sender = subprocess.Popen(link.run([sys.executable, "-c", SENDER, link.there, "1000"]),
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(sender.stdout.readline())
        link.cut()
        with pytest.raises(OSError):
            receive(link.there, port, timeout=2)
        link.mend()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert receive(link.there, port, timeout=2)[0] == 1000
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        sender.kill()
        sender.wait()
