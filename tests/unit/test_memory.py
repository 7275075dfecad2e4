"""Free memory goes back to the OS (glibc's malloc_trim)."""

from __future__ import annotations

import sys

import pytest

from xborder.memory import release_free_memory

MiB = 2**20


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and uses glibc")
def test_freed_objects_of_a_burst_leave_the_resident_set() -> None:
    release_free_memory()
    kept, burst = [], []
    for i in range(200_000):  # a burst of small buffers, a few of which outlive it
        burst.append(bytearray(600))
        if i % 20 == 0:
            kept.append(bytearray(600))
    del burst
    before = _rss()
    assert release_free_memory()
    assert _rss() < before - 40 * MiB
    assert len(kept) == 10_000
