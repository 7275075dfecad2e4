"""The watchdog's judgement: lag with a committed offset that stands still for the stall
timeout is a stall; progress, no lag, a known wait or a new assignment are not."""

from __future__ import annotations

from xborder.liveness import Ownership, StallClock

A, B = ("t", 0), ("t", 1)


def test_lag_with_committed_offsets_standing_still_is_a_stall_after_the_timeout() -> None:
    clock = StallClock(stall_s=10)
    owned = Ownership(frozenset({A, B}))
    assert clock.observe(0, owned, {A: 5, B: 7}, {A: 9, B: 7}) == {}
    assert clock.observe(9, owned, {A: 5, B: 7}, {A: 12, B: 7}) == {}
    assert clock.observe(10, owned, {A: 5, B: 7}, {A: 12, B: 7}) == {A: 10}


def test_a_moving_commit_or_no_lag_restarts_the_clock() -> None:
    clock = StallClock(stall_s=10)
    owned = Ownership(frozenset({A}))
    clock.observe(0, owned, {A: 5}, {A: 9})
    assert clock.observe(8, owned, {A: 6}, {A: 9}) == {}  # progress
    assert clock.observe(17, owned, {A: 6}, {A: 9}) == {}
    assert clock.observe(18, owned, {A: 6}, {A: 9}) == {A: 10}
    assert clock.observe(19, owned, {A: 9}, {A: 9}) == {}  # caught up
    assert clock.observe(40, owned, {A: 9}, {A: 9}) == {}


def test_a_known_wait_and_a_new_assignment_are_no_stall() -> None:
    clock = StallClock(stall_s=10)
    clock.observe(0, Ownership(frozenset({A})), {A: None}, {A: 4})
    waiting = Ownership(frozenset({A}), "ClickHouse")
    assert clock.observe(30, waiting, {A: None}, {A: 4}) == {}
    assert clock.observe(39, Ownership(frozenset({A})), {A: None}, {A: 4}) == {}
    assert clock.observe(49, Ownership(frozenset({A})), {A: None}, {A: 4}) == {A: 10}
    # a partition handed over and back starts a new clock
    clock.observe(50, Ownership(frozenset({B})), {B: 1}, {B: 1})
    assert clock.observe(55, Ownership(frozenset({A})), {A: None}, {A: 4}) == {}
