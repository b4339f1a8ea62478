"""Picking a few of many, evenly."""

from __future__ import annotations

from bccd_yolo.core.sampling import spread


def test_spread_keeps_the_ends_never_repeats_and_takes_all_of_too_few():
    assert spread(list(range(10)), 4) == [0, 3, 6, 9]
    for total in range(1, 40):  # rounding a step of at least 1 never lands twice on one item
        for n in range(1, total + 1):
            picks = spread(list(range(total)), n)
            assert len(picks) == n == len(set(picks)) and picks == sorted(picks) and picks[0] == 0
            assert n == 1 or picks[-1] == total - 1  # one pick is the first
    assert spread("abc", 12) == ["a", "b", "c"] and spread([], 5) == []
