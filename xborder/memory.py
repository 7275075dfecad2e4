"""Giving freed memory back to the operating system.

CPython frees the objects of a batch into glibc's allocator, which keeps the pages for
later. After a burst (a backlog after a pause, a rebalance, a large batch) the process
then holds its peak size for good, and its RSS reads as growth although the memory is
free. ``malloc_trim`` returns such pages; it walks the allocator's free lists, a few
milliseconds for a heap of some hundred MB, so it is called after full garbage
collections and on a timer, not per batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache

logger = logging.getLogger(__name__)


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the allocator's free pages to the OS; False where glibc is not in use."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
