"""The in-process benchmarks' harness (benchmarks.recommend_turns): the order in which the ways take turns, and
that a way's left-over work (a log's flush) is settled before its timed block and counted inside it."""

from __future__ import annotations

from typing import Any

from benchmarks.recommend_turns import Way, take_turns


class Recording:
    """A servicer that writes down which request each call got, into a log shared by all ways."""

    def __init__(self, name: str, log: list[tuple[str, Any]]) -> None:
        self.name, self.log = name, log

    def Recommend(self, request: Any, context: Any) -> None:
        self.log.append((self.name, request))


def test_ways_take_turns_block_by_block_and_wrap_around_their_requests() -> None:
    log: list[tuple[str, Any]] = []
    ways = [Way("a", Recording("a", log), [0, 1, 2]), Way("b", Recording("b", log), ["x", "y", "z"])]
    spent = take_turns(ways, range(2, 6), 2)
    assert log == [("a", 2), ("a", 0), ("b", "z"), ("b", "x"), ("a", 1), ("a", 2), ("b", "y"), ("b", "z")]
    assert len(spent) == 2 and all(s >= 0 for s in spent)


def test_settle_runs_around_each_timed_block_only() -> None:
    log: list[tuple[str, Any]] = []
    way = Way("a", Recording("a", log), [0, 1], settle=lambda: log.append(("settle", None)))
    assert take_turns([way], range(2), 2, timed=False) == [0.0]
    assert log == [("a", 0), ("a", 1)]
    log.clear()
    take_turns([way], range(3), 2)
    assert log == [("settle", None), ("a", 0), ("a", 1), ("settle", None),
                   ("settle", None), ("a", 0), ("settle", None)]
