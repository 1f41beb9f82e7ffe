"""`billing.yaml` sections for security and the data lifecycle: `lake_encryption:` and `retention:`.

Kept beside `config.py` so the main contract stays readable; validated the same way (unknown keys fail).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_AGE = re.compile(r"^\s*(\d+)\s*(d|day|days|m|month|months)\s*$")

TableFamily = Literal["raw", "quarantine", "state", "reports", "curated"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LakeEncryptionConfig(_Strict):
    """Encryption at rest for an object-store lake (a local lake is protected by file modes 0640 / 0750).

    `kms_key_id`: for an `s3://` lake the KMS key (ARN, id or `alias/...`) every object is written with
    (SSE-KMS); for a `gs://` lake the customer-managed key name
    (`projects/P/locations/L/keyRings/R/cryptoKeys/K`).
    """

    kms_key_id: str | None = Field(default=None, min_length=1)


class RetentionAge(_Strict):
    """How long a partition is kept after the end of the day or billing period it holds."""

    amount: int = Field(ge=1)
    unit: Literal["days", "months"]

    def cutoff(self, today: dt.date) -> dt.date:
        """Partitions whose last day is before this date are past their age."""
        if self.unit == "days":
            return today - dt.timedelta(days=self.amount)
        months = today.year * 12 + today.month - 1 - self.amount
        year, month = divmod(months, 12)
        return dt.date(year, month + 1, 1)

    def in_days(self) -> int:
        """At least the age in days (a month counted as 31 days), for stores that only count days."""
        return self.amount if self.unit == "days" else self.amount * 31

    def __str__(self) -> str:
        return f"{self.amount} {self.unit}"


def _age(value: object) -> object:
    """`"90 days"`, `"84 months"`, `"30d"`, `"13m"` or a mapping `{amount, unit}`."""
    if isinstance(value, str):
        match = _AGE.match(value)
        if match is None:
            raise ValueError(f"retention age {value!r} is not '<number> days' or '<number> months'")
        unit = "days" if match.group(2).startswith("d") else "months"
        return {"amount": int(match.group(1)), "unit": unit}
    return value


class RetentionConfig(_Strict):
    """How long each table family is kept (safe defaults: nothing is lost that an audit or a rebuild needs).

    curated: 7 years (financial audit); state: as long, it says which delivery each kept day came from;
    raw: 3 years (the delivered rows behind the curated tables, clear identifiers included);
    quarantine: 13 months (a year to investigate, never while a record is unresolved);
    reports (anomalies, SLO budgets): 25 months, for year-over-year comparison.
    """

    raw: RetentionAge = RetentionAge(amount=36, unit="months")
    quarantine: RetentionAge = RetentionAge(amount=13, unit="months")
    state: RetentionAge = RetentionAge(amount=84, unit="months")
    reports: RetentionAge = RetentionAge(amount=25, unit="months")
    curated: RetentionAge = RetentionAge(amount=84, unit="months")

    @field_validator("raw", "quarantine", "state", "reports", "curated", mode="before")
    @classmethod
    def _parse_age(cls, value: object) -> object:
        return _age(value)

    def age(self, family: TableFamily) -> RetentionAge:
        return getattr(self, family)


def check_lake_encryption(encryption: LakeEncryptionConfig, lake_url: str) -> None:
    """A key that cannot apply to the lake's store is a configuration error, never silently ignored."""
    key = encryption.kms_key_id
    if key is None:
        return
    if lake_url.startswith(("gs://", "gcs://")):
        if not key.startswith("projects/"):
            raise ValueError(f"lake_encryption.kms_key_id for a gs:// lake must be projects/.../cryptoKeys/K: {key!r}")
    elif lake_url.startswith(("s3://", "s3a://")):
        if key.startswith("projects/"):
            raise ValueError(
                f"lake_encryption.kms_key_id for an s3:// lake must be a KMS key ARN, id or alias: {key!r}"
            )
    else:
        raise ValueError(
            "lake_encryption.kms_key_id applies to s3:// and gs:// lakes only; a local lake relies on the disk's "
            "encryption and on file modes 0640 / 0750"
        )
