"""What a process derived from files, kept by the files' identities (`FileInfo.identity`: path, size, ETag or
mtime), so a long run (a backfill of many days in one step) does not read the same bytes again; a rewritten
file has another identity and is read anew."""

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class KeptByIdentity(Generic[K, V]):
    """A dict with a size cap: once `limit` values are kept it starts again empty (the next reads refill it),
    so a process that lives for months keeps bounded memory."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._values: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    def keep(self, key: K, value: V) -> V:
        """Keep `value` under `key` and return it."""
        if len(self._values) >= self._limit:
            self._values.clear()
        self._values[key] = value
        return value
