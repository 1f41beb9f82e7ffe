"""Pseudonymization: identifiers of people replaced by keyed tokens at the curated layers' write boundary.

A token is `pii:` + the first 32 hex digits (128 bits) of HMAC-SHA256(key, value trimmed and lower-cased):
the same person gives the same token in every slice, source and day, so allocation, joins and group-bys
still work, while nobody without the key can compute the token of a guessed e-mail. Case and surrounding
blanks are folded first because `Alice@Example.com` and `alice@example.com ` are one person.

Tokens are computed in Python on the distinct values only (a day has millions of rows but a few
thousand distinct identifiers), then substituted by polars expressions; rows are never looped over.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from billing_pipeline.adapters.tags import tags_json
from billing_pipeline.platform.config import BillingConfig, TagPolicy
from billing_pipeline.platform.privacy_config import PrivacyConfig
from billing_pipeline.spine.allocation import fold_key

TOKEN_PREFIX = "pii:"
TOKEN_HEX_DIGITS = 32
TAG_LIST = "x_TagList"
TAGS_JSON = "Tags"
EMAIL_PATTERN = r"[^@\s\"',;<>()\[\]]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"  # an e-mail anywhere in the text


def token_of(value: str, key: bytes) -> str:
    """The token of one identifier (the reference the polars substitution must agree with)."""
    digest = hmac.new(key, value.strip().lower().encode(), hashlib.sha256).hexdigest()
    return TOKEN_PREFIX + digest[:TOKEN_HEX_DIGITS]


def token_table(values: Iterable[str | None], key: bytes) -> dict[str, str]:
    """Clear value -> token, for every distinct non-null value."""
    return {value: token_of(value, key) for value in set(values) if value is not None}


def _is_personal_tag(policy: PrivacyConfig, strip_prefixes: list[str]) -> pl.Expr:
    """Inside `list.eval` over tags: does this tag's value name a person (its key, or an e-mail in it)?"""
    key = fold_key(pl.element().struct.field("key"), strip_prefixes)
    personal = key.is_in(policy.tag_keys)
    if policy.email_values:
        personal = personal | pl.element().struct.field("value").str.contains(EMAIL_PATTERN)
    return personal.fill_null(False)


def _personal_values(frame: pl.LazyFrame, columns: list[str], policy: PrivacyConfig, strip: list[str]) -> pl.Series:
    """The distinct clear values to tokenize: those of the listed columns and of personal tags (narrow pass)."""
    pieces: list[pl.LazyFrame] = []
    for column in columns:
        values = pl.col(column).cast(pl.String)
        pieces.append(frame.select(values.alias("value")).unique())
    if TAG_LIST in frame.collect_schema():
        tag_values = pl.col(TAG_LIST).list.eval(
            pl.element().filter(_is_personal_tag(policy, strip)).struct.field("value")
        )
        pieces.append(frame.select(tag_values.explode().alias("value")).unique())
    if not pieces:
        return pl.Series("value", [], dtype=pl.String)
    return pl.concat(pieces).unique().drop_nulls().collect(engine="streaming").get_column("value")


def _substitute(expr: pl.Expr, table: dict[str, str]) -> pl.Expr:
    """Every value found in `table` replaced by its token (values not in it cannot occur where it is used)."""
    return expr.replace_strict(list(table), list(table.values()), default=expr, return_dtype=pl.String)


def pseudonymize(
    frame: pl.LazyFrame, policy: PrivacyConfig, key: bytes, strip_prefixes: list[str] | None = None
) -> pl.LazyFrame:
    """`frame` with every listed column's values and every personal tag's value replaced by its token.

    `x_TagList` is rewritten tag by tag; `Tags` (the JSON text) is rebuilt from the rewritten list on the
    rows where a tag changed, and kept as delivered elsewhere. Nulls stay null; other columns are untouched.
    `strip_prefixes`: the tag policy's key prefixes, so `user:Owner` counts as `owner`.
    """
    strip = list(strip_prefixes if strip_prefixes is not None else ["user:", "user_", "tag:"])
    schema = frame.collect_schema()
    columns = [c for c in policy.columns if c in schema]
    table = token_table(_personal_values(frame, columns, policy, strip).to_list(), key)
    if not table:
        return frame
    replaced = [_substitute(pl.col(c).cast(pl.String), table).alias(c) for c in columns]
    if TAG_LIST in schema:
        personal = _is_personal_tag(policy, strip)
        value = pl.element().struct.field("value")
        new_tags = pl.col(TAG_LIST).list.eval(
            pl.struct(
                pl.element().struct.field("key").alias("key"),
                pl.when(personal).then(_substitute(value, table)).otherwise(value).alias("value"),
            )
        )
        replaced.append(new_tags.alias(TAG_LIST))
        if TAGS_JSON in schema:
            changed = pl.col(TAG_LIST).list.eval(personal).list.any().fill_null(False)
            rebuilt = pl.when(changed).then(tags_json(new_tags)).otherwise(pl.col(TAGS_JSON))
            replaced.append(rebuilt.alias(TAGS_JSON))
    return frame.with_columns(replaced)


def policy_names_by_token(policy: TagPolicy, key: bytes) -> dict[str, dict[str, str]]:
    """Per dimension: token -> the name the tag policy gives it (an alias's target, or a name it uses itself:
    an alias target or an `account_owners` value).

    The policy's own names are organisations, not people: a tag `owner: web` is tokenized in the
    normalized layer like any owner, and the enriched layer turns the token back into `web`, exactly as
    the policy would have read the clear value. A value the policy does not name stays a token.
    """
    out: dict[str, dict[str, str]] = {}
    for dimension, rule in policy.dimensions.items():
        names = {owners[dimension] for owners in policy.account_owners.values() if dimension in owners}
        table = {token_of(name, key): name for name in names | set(rule.values.values())}
        table |= {token_of(alias, key): target for alias, target in rule.values.items()}
        out[dimension] = table
    return out


def restore_policy_names(frame: pl.LazyFrame, policy: TagPolicy, key: bytes) -> pl.LazyFrame:
    """Allocated dimension columns with the tokens of names the policy uses turned back into those names."""
    tables = {dimension: table for dimension, table in policy_names_by_token(policy, key).items() if table}
    return frame.with_columns(
        _substitute(pl.col(dimension), table).alias(dimension) for dimension, table in tables.items()
    )


@dataclass(frozen=True)
class Pseudonymizer:
    """What the curated layers' write boundary needs: the `privacy:` policy, its key, the tag prefixes."""

    policy: PrivacyConfig
    key: bytes = field(repr=False)
    strip_prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: BillingConfig) -> Pseudonymizer | None:
        """From billing.yaml (None without a `privacy:` section); the key is read from its variable now."""
        key = config.pseudonym_key()
        if config.privacy is None or key is None:
            return None
        return cls(config.privacy, key, tuple(config.tag_policy.strip_prefixes))

    def apply(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        return pseudonymize(frame, self.policy, self.key, list(self.strip_prefixes))

    def digest(self) -> str:
        """Identifies policy and key (so a slice is rebuilt when either changes) without revealing the key."""
        keyed = hmac.new(self.key, b"billing-pipeline pseudonymizer digest", hashlib.sha256).hexdigest()[:16]
        return hashlib.sha256((self.policy.model_dump_json() + keyed).encode()).hexdigest()[:16]


def privacy_digest(privacy: Pseudonymizer | None) -> str:
    """The suffix a slice's `built_from` gets: empty without pseudonymization (earlier slices stay valid)."""
    return "" if privacy is None else f"|privacy:{privacy.digest()}"
