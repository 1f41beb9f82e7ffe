"""Building a day's sources side by side: a layer's per-source builds are independent (each reads and writes
its own (day, source) slices and state), and a demo-size slice spends most of its time in polars calls that
release the GIL, so a few threads overlap them on the machine's cores."""

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from billing_pipeline.platform.config import SourceConfig
from billing_pipeline.platform.encryption import make_private_dirs

T = TypeVar("T")


class MachineShareClock:
    """Seconds of the machine a build used: inside a build this clock runs at 1/n of real time while n builds
    run side by side, so the compute seconds the state records (pipeline cost, M5) sum to the wall time of
    the layer, not n times it; outside one (a build called directly) it is `time.monotonic`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._last = time.monotonic()
        self._share = 0.0
        self._inside = threading.local()

    def _advance(self) -> None:  # under the lock
        now = time.monotonic()
        if self._running:
            self._share += (now - self._last) / self._running
        self._last = now

    @contextmanager
    def build(self) -> Iterator[None]:
        """The calling thread runs one build until the block ends."""
        with self._lock:
            self._advance()
            self._running += 1
        self._inside.active = True
        try:
            yield
        finally:
            self._inside.active = False
            with self._lock:
                self._advance()
                self._running -= 1

    def now(self) -> float:
        if not getattr(self._inside, "active", False):
            return time.monotonic()
        with self._lock:
            self._advance()
            return self._share


MACHINE_SHARE = MachineShareClock()
compute_clock = MACHINE_SHARE.now  # what a layer's build times its compute seconds with


@dataclass(frozen=True)
class SourceOutcome(Generic[T]):
    """What one source's build returned, or the error it raised (never both)."""

    source: SourceConfig
    value: T | None = None
    error: Exception | None = None


def build_each_source(
    sources: Sequence[SourceConfig],
    build: Callable[[SourceConfig, Path], T],
    workdir: Path,
    workers: int,
) -> list[SourceOutcome[T]]:
    """`build(source, folder)` for every source, `workers` at a time, each in its own subfolder of `workdir`
    (two sources may read the same landing file). Outcomes come in the sources' order; one source's error
    is its outcome and never stops the others, so the caller decides what each error means."""

    def attempt(numbered: tuple[int, SourceConfig]) -> SourceOutcome[T]:
        index, source = numbered
        folder = workdir / f"source-{index}"
        make_private_dirs(folder)
        try:
            with MACHINE_SHARE.build():
                return SourceOutcome(source, value=build(source, folder))
        except Exception as error:  # noqa: BLE001 - handed to the caller with its source
            return SourceOutcome(source, error=error)

    numbered = list(enumerate(sources))
    if workers <= 1 or len(numbered) <= 1:
        return [attempt(item) for item in numbered]
    with ThreadPoolExecutor(max_workers=min(workers, len(numbered)), thread_name_prefix="source") as pool:
        return list(pool.map(attempt, numbered))
