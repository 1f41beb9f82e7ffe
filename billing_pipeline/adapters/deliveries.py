"""Deliveries of a billing period, their file problems, and which one is current (`choose_current`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class FileProblem:
    """A file of a delivery that cannot be used, and why (named in errors and in quarantine)."""

    file_uri: str
    reason: str
    kind: str  # missing | outside_prefix | unreadable | empty | bad_manifest

    def describe(self, source: str) -> str:
        return f"source {source!r}: file {self.file_uri}: {self.reason}"


@dataclass(frozen=True)
class Delivery:
    """One delivered version of a billing period: the files to read together, and its problems."""

    source: str
    billing_period: str  # YYYY-MM
    version: str
    delivered_at: dt.datetime
    files: tuple[str, ...]
    manifest_uri: str | None = None
    problems: tuple[FileProblem, ...] = ()
    file_format: str = "auto"
    fingerprint: str = ""
    # The provider's own pointer names this delivery as the period's current one (legacy CUR: the
    # period-level manifest's `assemblyId`). It then outranks every delivery time (`choose_current`).
    named_current: bool = False
    # What each file is, in `files` order (`FileInfo.identity`: path, size, ETag or mtime), where the
    # discovery knows it and files are shared between deliveries (GCP appends): per-file caches key on it.
    file_identities: tuple[str, ...] = ()

    @property
    def incomplete(self) -> bool:
        """A delivery with a missing file or unreadable manifest must never be published."""
        return any(p.kind in ("missing", "bad_manifest") for p in self.problems)

    @property
    def empty(self) -> bool:
        return not self.files and not self.incomplete


@dataclass
class DeliveryChoice:
    """The current version of a billing period, and what was passed over on the way.

    `ambiguous` holds the candidates of a tie (`choose_current`): then `current` is None, the choice
    is held back, and each candidate is also in `passed_over` with an `ambiguous` problem naming
    the others, so callers that report passed-over problems report the tie too.
    """

    current: Delivery | None
    passed_over: list[Delivery] = field(default_factory=list)
    ambiguous: list[Delivery] = field(default_factory=list)

    @property
    def held_back(self) -> bool:
        """True when deliveries exist but none can be published: none is complete, or two tie."""
        return self.current is None and (bool(self.ambiguous) or any(d.incomplete for d in self.passed_over))

    @property
    def problem(self) -> str | None:
        """Why nothing is current although deliveries exist (None when a delivery is current)."""
        if self.current is not None:
            return None
        if self.ambiguous:
            return describe_tie(self.ambiguous)
        reasons = [p.reason for d in self.passed_over for p in d.problems if d.incomplete]
        return "; ".join(reasons) or None


def _same_content(a: Delivery, b: Delivery) -> bool:
    return a.files == b.files and a.fingerprint == b.fingerprint


def describe_tie(candidates: list[Delivery]) -> str:
    """`delivery 'a' ties as current with 'b' (manifest ...), ...`: the first candidate against the others."""
    first, others = candidates[0], candidates[1:]
    named = ", ".join(f"{d.version!r} (manifest {d.manifest_uri or 'none'})" for d in others)
    return (
        f"delivery {first.version!r} of billing period {first.billing_period} ties as current with {named}: "
        f"delivered at the same time ({first.delivered_at.isoformat()}) with other files, and no manifest "
        "says which one is current; held back until one does"
    )


def choose_current(deliveries: list[Delivery]) -> DeliveryChoice:
    """The delivery the provider names current, else the latest; incomplete or empty ones are passed over.

    Order: deliveries the provider names current (`named_current`) first, then by `delivered_at`,
    newest first (the export/run time the manifest states; the object's modification time only
    where the provider writes none). The first complete, non-empty delivery is current, and the
    incomplete or empty ones before it are passed over. A tie is never broken by a guess: when
    another complete delivery has the same rank and time but other files, nothing is current and
    the candidates are `ambiguous` (`held_back`); the version only orders identical content.
    """
    ordered = sorted(deliveries, key=lambda d: (d.named_current, d.delivered_at, d.version), reverse=True)
    passed: list[Delivery] = []
    for index, delivery in enumerate(ordered):
        if delivery.incomplete or delivery.empty:
            passed.append(delivery)
            continue
        tied = [delivery]
        for other in ordered[index + 1 :]:
            if (other.named_current, other.delivered_at) != (delivery.named_current, delivery.delivered_at):
                break
            if not (other.incomplete or other.empty) and not any(_same_content(other, t) for t in tied):
                tied.append(other)
        if len(tied) == 1:
            return DeliveryChoice(current=delivery, passed_over=passed)
        marked = [
            replace(
                d,
                problems=(
                    *d.problems,
                    FileProblem(
                        d.manifest_uri or d.version, describe_tie([d, *(t for t in tied if t is not d)]), "ambiguous"
                    ),
                ),
            )
            for d in tied
        ]
        return DeliveryChoice(current=None, passed_over=passed + marked, ambiguous=tied)
    return DeliveryChoice(current=None, passed_over=passed)
