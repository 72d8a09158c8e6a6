"""The link benchmark's figures from its samples: utilisation, bytes per byte, what the observatory held."""

from __future__ import annotations

import dataclasses
import math

from tools.bench.link_figures import LinkRun, Sample, figures

MB = 1_000_000


def _run(flow: str, written: str, samples: list[Sample], due: tuple[float, float] = (0.0, 80.0)) -> LinkRun:
    # 10 Mbit/s carries 1.25 MB a second: a night of 100 MB needs 80 s
    return LinkRun(flow, written, 10, 100 * MB, 10, 10, 0.0, 100.0, due, samples)


def _steady(seconds: int, per_second: int, written_at_once: bool = True) -> list[Sample]:
    """A link carrying ``per_second`` from the start; the night written at once, or at 2 MB a second."""
    samples = []
    for t in range(seconds + 1):
        written = 100 * MB if written_at_once else min(100 * MB, t * 2 * MB)
        samples.append(Sample(float(t), t * per_second, t * 1000, written, max(0, written - t * per_second)))
    return samples


def test_a_link_carrying_at_its_rate_while_copies_are_due_is_fully_used() -> None:
    run = _run("magic", "at once", _steady(80, 1_250_000))
    assert run.limit == 80.0
    assert math.isclose(run.utilisation(), 1.0)
    assert run.crossed() == (100 * MB, 80_000)


def test_the_backlog_is_what_a_link_busy_from_the_first_write_could_not_yet_carry() -> None:
    trickled = _run("magic", "trickled", _steady(80, 1_250_000, written_at_once=False))
    held, ideal = trickled.backlog()
    assert held == ideal == 37_500_000  # 2 MB/s written, 1.25 MB/s carried: the gap peaks as the writing ends


def test_figures_stand_beside_the_links_limit_and_stock_rucio() -> None:
    stock = _run("stock", "registered beforehand", _steady(80, 1_250_000))
    mine = _run("magic", "at once", _steady(80, 1_300_000))
    trickled = _run("magic", "trickled", _steady(80, 1_250_000, written_at_once=False))
    found = {figure.name: figure for figure in figures([stock, mine, trickled])}
    safety = found["link.time_to_safety[at_once]"]
    assert (safety.value, safety.baseline) == (100.0, 80.0) and safety.met  # 100 s <= 1.1 x 80 s + 120 s
    assert found["link.bytes_per_byte[at_once]"].value == 1.04 and not found["link.bytes_per_byte[at_once]"].met
    assert found["link.bytes_per_byte[trickled]"].met
    assert found["link.utilisation[trickled]"].baseline == stock.utilisation()
    assert "link.peak_held[trickled]" in found and "link.peak_held[at_once]" not in found
    assert found["link.stock_copy_time"].value == 100.0


def test_bytes_per_file_beyond_the_framing_weigh_on_a_real_nights_sizes_as_they_do_on_the_scaled_ones() -> None:
    # 10 files, 100 MB, 104 MB carried: framing 1.02 gives 2 MB, 200 kB per file, the rest; at 1,000 times the size
    # those 2 MB are on 100 GB
    scaled = dataclasses.replace(_run("magic", "at once", _steady(80, 1_300_000)), real_bytes=100_000 * MB)
    projected, per_file = scaled.at_real_sizes(1.02)
    assert math.isclose(per_file, 200_000) and math.isclose(projected, 1.02002)
    stock = dataclasses.replace(_run("stock", "registered beforehand", _steady(80, 1_250_000)),
                                real_bytes=100_000 * MB, framing=1.0)
    found = {figure.name: figure for figure in figures([stock, scaled])}
    real = found["link.bytes_per_byte_at_real_sizes[at_once]"]
    assert math.isclose(real.value, 1.0 + 0.04 / 1000) and real.met and math.isclose(real.baseline or 0, 1.0)
    assert "400.0 kB per file" in real.detail
    assert "link.bytes_per_byte_at_real_sizes[at_once]" not in {f.name for f in figures([scaled])}  # no framing
