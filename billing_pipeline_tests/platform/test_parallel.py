"""A layer builds a day's sources side by side (`sources_in_parallel`): outcomes in the sources' order,
each source in a folder of its own, one source's error its own outcome, and really at the same time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from billing_pipeline.platform.config import SourceConfig
from billing_pipeline.platform.parallel import build_each_source, compute_clock

SOURCES = [SourceConfig(name=f"s{i}", provider="focus", url=f"/landing/s{i}") for i in range(5)]


@pytest.mark.parametrize("workers", [1, 2, 5, 8])
def test_outcomes_keep_the_sources_order_and_errors_stay_with_their_source(tmp_path: Path, workers: int) -> None:
    def build(source: SourceConfig, folder: Path) -> str:
        assert folder.is_dir() and folder.parent == tmp_path
        (folder / "scratch").write_text(source.name)  # two sources writing the same name never collide
        if source.name == "s2":
            raise ValueError("s2's delivery is broken")
        return source.name.upper()

    outcomes = build_each_source(SOURCES, build, tmp_path, workers)
    assert [o.source.name for o in outcomes] == [s.name for s in SOURCES]
    assert [o.value for o in outcomes] == ["S0", "S1", None, "S3", "S4"]
    assert [str(o.error) if o.error else None for o in outcomes] == [None, None, "s2's delivery is broken", None, None]
    folders = sorted(p.read_text() for p in tmp_path.glob("*/scratch"))
    assert folders == sorted(s.name for s in SOURCES)


def test_two_workers_build_two_sources_at_once(tmp_path: Path) -> None:
    """Each build waits for another to be running: with one worker this would time out."""
    both_running = threading.Barrier(2, timeout=10)

    def build(source: SourceConfig, folder: Path) -> str:
        both_running.wait()
        return threading.current_thread().name

    threads = [o.value for o in build_each_source(SOURCES[:2], build, tmp_path, 2)]
    assert len(set(threads)) == 2


def test_one_worker_builds_in_the_callers_thread_in_order(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    def build(source: SourceConfig, folder: Path) -> None:
        seen.append((source.name, threading.current_thread().name))

    build_each_source(SOURCES, build, tmp_path, 1)
    assert seen == [(s.name, threading.current_thread().name) for s in SOURCES]


def test_compute_seconds_of_builds_side_by_side_sum_to_the_wall_time(tmp_path: Path) -> None:
    """Two builds running together for 0.4 s used 0.4 s of the machine between them (pipeline cost, M5),
    not 0.8 s; a build alone is timed by the wall clock."""
    both_running = threading.Barrier(2, timeout=10)

    def build(source: SourceConfig, folder: Path) -> float:
        both_running.wait()
        started = compute_clock()
        time.sleep(0.4)
        return compute_clock() - started

    wall = time.monotonic()
    seconds = [o.value for o in build_each_source(SOURCES[:2], build, tmp_path, 2)]
    wall = time.monotonic() - wall
    assert sum(seconds) == pytest.approx(0.4, abs=0.05) and sum(seconds) <= wall
    assert seconds[0] == pytest.approx(seconds[1], abs=0.05)

    alone = build_each_source(SOURCES[:1], lambda s, f: _timed_sleep(0.2), tmp_path, 2)[0].value
    assert alone == pytest.approx(0.2, abs=0.05)
    assert _timed_sleep(0.1) == pytest.approx(0.1, abs=0.05)  # outside any build: the wall clock


def _timed_sleep(seconds: float) -> float:
    started = compute_clock()
    time.sleep(seconds)
    return compute_clock() - started
