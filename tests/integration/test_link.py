"""The link between the two sites of the two-site stack (tools/devstack/link.py): the observatory in a network
namespace of its own, joined to this host by one veth pair shaped by tbf. Bytes are sent across it by a real TCP
server and client; the veth's counters, the rate and an outage are what is checked."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

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


def test_a_third_party_copy_across_the_link_carries_each_byte_once(link: link_module.Link) -> None:
    """ORM's XRootD server in the observatory's namespace, PIC's on this host at its end of the link (the address
    ORM's server sees PIC's pull come from): PIC's server pulls the file across the link; listing and the server's
    checksum cost a few hundred bytes, not the file."""
    pytest.importorskip("XRootD.client", reason="root:// needs XRootD's Python client", exc_type=ImportError)
    from rucio_magic_ext.storage.xroot import XRootDStorage
    from tools.devstack import xrootd

    reason = xrootd.missing()
    if reason:
        pytest.skip(f"no XRootD server here: {reason}")
    state = Path(tempfile.mkdtemp(prefix="rml-"))  # short, and open to the servers, which run as nobody
    state.chmod(0o755)
    orm = xrootd.XrootdServer("orm-l", state / "o", xrootd.free_port(), xrootd.free_port(), host=link.there,
                              netns=link.namespace)
    pic = xrootd.XrootdServer("pic-l", state / "p", xrootd.free_port(), xrootd.free_port(), host=link.here)
    try:
        orm.start()
        pic.start()
        data = bytes(range(256)) * 20_000  # 5.1 MB
        (orm.data / "night").mkdir()
        (orm.data / "night" / "run.raw").write_bytes(data)
        orm.adopt_tree(orm.data / "night")
        source, target = XRootDStorage(orm.root_url), XRootDStorage(pic.root_url)

        before = link.crossed()
        assert [entry.size for entry in source.files("/night")] == [len(data)]
        assert source.checksum_detail("/night/run.raw", ("adler32",)).values == {"adler32": adler32(data)}
        asked = link.crossed()
        assert asked["from_orm"] - before["from_orm"] < 20_000  # the server's answers, not the file

        copied = target.copy(source.url_of("/night/run.raw"), "/copy/run.raw", ("adler32",), source_storage=source)
        after = link.crossed()
        assert copied.method == "third-party copy"
        assert (pic.data / "copy" / "run.raw").read_bytes() == data
        carried = after["from_orm"] - asked["from_orm"]
        assert len(data) <= carried < len(data) * 1.06, carried  # once, with TCP's headers
    finally:
        orm.stop()
        pic.stop()
        shutil.rmtree(state, ignore_errors=True)


def adler32(data: bytes) -> str:
    import zlib

    return f"{zlib.adler32(data):08x}"
