"""`billing.yaml` `privacy:`: which identifiers of people are pseudonymized in the curated layers, and with
which key.

The section is optional; when present the key must be in the environment variable it names, or loading
fails naming that variable (a pipeline that would publish clear identifiers must not start). The key
itself never enters the configuration, the logs or the lake.
"""

from __future__ import annotations

import os
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_KEY_ENV_VAR = "BILLING_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16  # an HMAC key shorter than this is guessable

# Tag keys whose values name people, compared after the tag policy's folding (lower case, `user:`/`user_`/`tag:`
# stripped, punctuation runs -> `_`): owners and creators as users tag them, AWS's generated `aws:createdBy`
# (the IAM principal that created the resource), and contact / e-mail keys.
DEFAULT_TAG_KEYS = (
    "owner",
    "creator",
    "created_by",
    "createdby",
    "aws_createdby",
    "contact",
    "email",
    "e_mail",
    "user",
    "username",
)
# Normalized columns that name a person where a provider delivers one: Azure EA's `AccountOwnerId` (the
# account owner's e-mail) when a FOCUS export passes it through as an `x_` extra. The Azure cost-details
# adapter keeps it in the raw layer only, so no other normalized column names a person.
DEFAULT_COLUMNS = ("x_AccountOwnerId",)


class PrivacyConfig(BaseModel):
    """Pseudonymization of people's identifiers in the curated layers (normalized, tag-enriched).

    - `columns`: normalized columns whose every value is replaced by its token (absent columns are skipped);
    - `tag_keys`: tag keys whose values are replaced, in `Tags` and `x_TagList`; compared with the delivered
      keys once both are folded (the delivered ones also lose the tag policy's `strip_prefixes`, so list
      keys without `user:`);
    - `email_values`: any tag value that contains an e-mail address is replaced, whatever its key (people
      put e-mails under any key);
    - `key_env_var`: the environment variable holding the HMAC key (at least 16 bytes).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_env_var: str = Field(default=DEFAULT_KEY_ENV_VAR, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    columns: list[str] = Field(default_factory=lambda: list(DEFAULT_COLUMNS))
    tag_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_TAG_KEYS))
    email_values: bool = True

    @field_validator("tag_keys")
    @classmethod
    def _folded(cls, keys: list[str]) -> list[str]:
        """Keys are stored folded (lower case, punctuation runs -> `_`), the form tags are compared in."""
        return sorted({re.sub(r"[^a-z0-9]+", "_", key.strip().lower()).strip("_") for key in keys} - {""})

    def key(self) -> bytes:
        """The HMAC key from the environment; a missing, empty or short key is an error naming the variable."""
        value = os.environ.get(self.key_env_var, "")
        if not value.strip():
            raise ValueError(
                f"privacy: the pseudonymization key is missing: set the environment variable {self.key_env_var} "
                f"(at least {MIN_KEY_BYTES} bytes), or remove the privacy section"
            )
        key = value.encode()
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(
                f"privacy: the pseudonymization key in {self.key_env_var} is {len(key)} bytes; "
                f"at least {MIN_KEY_BYTES} are needed"
            )
        return key
