"""Pseudonymization (`spine/privacy.py`): tokens checked against a second HMAC computed here with the `hmac`
module, and the properties allocation and joins rely on (same input same token, distinct inputs distinct
tokens, nulls stay null, non-personal values untouched)."""

from __future__ import annotations

import hashlib
import hmac
import json

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_pipeline.adapters.tags import TAG_LIST, tags_json
from billing_pipeline.platform.config import TagPolicy
from billing_pipeline.platform.privacy_config import PrivacyConfig
from billing_pipeline.spine.allocation import allocate_by_distinct_tags
from billing_pipeline.spine.privacy import pseudonymize, restore_policy_names

KEY = b"0123456789abcdef-test-key"
POLICY = PrivacyConfig(columns=["x_AccountOwnerId"])
identifiers = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x24F), min_size=1, max_size=24)


def reference_token(value: str, key: bytes = KEY) -> str:
    """The documented token, computed independently: `pii:` + 32 hex digits of HMAC-SHA256(key, folded value)."""
    mac = hmac.HMAC(key, msg=value.strip().lower().encode("utf-8"), digestmod=hashlib.sha256)
    return "pii:" + mac.hexdigest()[:32]


def _column(values: list[str | None]) -> list[str | None]:
    frame = pl.LazyFrame(
        {"x_AccountOwnerId": values, "Other": values}, schema={"x_AccountOwnerId": pl.String, "Other": pl.String}
    )
    out = pseudonymize(frame, POLICY, KEY).collect()
    assert out["Other"].to_list() == values  # a column not listed is never touched
    return out["x_AccountOwnerId"].to_list()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), identifiers), min_size=1, max_size=30))
def test_a_listed_column_holds_the_reference_token_of_each_value_and_nulls_stay_null(values: list[str | None]) -> None:
    assert _column(values) == [None if v is None else reference_token(v) for v in values]


@settings(max_examples=60, deadline=None)
@given(identifiers, identifiers)
def test_same_person_same_token_distinct_people_distinct_tokens(first: str, second: str) -> None:
    tokens = _column([first, second, first])
    assert tokens[0] == tokens[2]  # deterministic, whatever the row
    assert (tokens[0] == tokens[1]) == (first.strip().lower() == second.strip().lower())
    assert _column([first]) == [tokens[0]]  # and whatever else the frame holds


def test_another_key_gives_other_tokens() -> None:
    frame = pl.LazyFrame({"x_AccountOwnerId": ["alice@acme.example"]})
    other = pseudonymize(frame, POLICY, b"another key of 16+ bytes").collect().item()
    assert (
        other
        == reference_token("alice@acme.example", b"another key of 16+ bytes")
        != reference_token("alice@acme.example")
    )


def _tagged(rows: list[list[dict[str, str]] | None]) -> pl.LazyFrame:
    tags = pl.Series("x_TagList", rows, dtype=TAG_LIST)
    return pl.DataFrame({"x_TagList": tags}).with_columns(tags_json(pl.col("x_TagList")).alias("Tags")).lazy()


def test_personal_tags_are_replaced_in_both_tag_columns_and_the_others_kept() -> None:
    rows = [
        [{"key": "user:Owner", "value": "Alice@Acme.example"}, {"key": "team", "value": "web"}],
        [{"key": "CreatedBy", "value": "IAMUser:AIDAEXAMPLE:dokafor"}, {"key": "env", "value": "prod"}],
        [{"key": "note", "value": "ask bob@acme.example first"}],  # an e-mail under any key
        [],
        None,
    ]
    out = pseudonymize(_tagged(rows), PrivacyConfig(), KEY).collect()
    tags = out["x_TagList"].to_list()
    assert tags[0] == [
        {"key": "user:Owner", "value": reference_token("alice@acme.example")},
        {"key": "team", "value": "web"},
    ]
    assert tags[1] == [
        {"key": "CreatedBy", "value": reference_token("IAMUser:AIDAEXAMPLE:dokafor")},
        {"key": "env", "value": "prod"},
    ]
    assert tags[2] == [{"key": "note", "value": reference_token("ask bob@acme.example first")}]
    assert tags[3] == [] and tags[4] is None
    expected_json = [None if t is None else {p["key"]: p["value"] for p in t} for t in tags]
    assert [None if j is None else json.loads(j) for j in out["Tags"].to_list()] == expected_json


def test_without_email_values_only_the_listed_keys_count() -> None:
    rows = [[{"key": "note", "value": "bob@acme.example"}, {"key": "contact", "value": "bob@acme.example"}]]
    out = pseudonymize(_tagged(rows), PrivacyConfig(email_values=False), KEY).collect()
    assert out["x_TagList"].to_list()[0] == [
        {"key": "note", "value": "bob@acme.example"},
        {"key": "contact", "value": reference_token("bob@acme.example")},
    ]


def test_allocation_on_tokens_matches_allocation_on_clear_values() -> None:
    """Enrichment reads tokenized tags: names the tag policy uses come back, other owners stay tokens."""
    policy = TagPolicy(
        dimensions={
            "team": {"keys": ["team", "owner"]},
            "environment": {"keys": ["env"], "values": {"prd": "prod"}},
        },
        account_owners={"111": {"team": "payments"}},
    )
    rows = [
        [{"key": "owner", "value": "Payments"}, {"key": "env", "value": "PRD"}],
        [{"key": "owner", "value": "dana.okafor@acme.example"}],
        [{"key": "team", "value": "web"}],
        [],
    ]
    frame = _tagged(rows).with_columns(
        pl.lit(None, dtype=pl.String).alias("SubAccountId"), pl.lit("111").alias("BillingAccountId")
    )
    privacy = PrivacyConfig(tag_keys=["owner", "env"])
    clear = allocate_by_distinct_tags(frame, policy).collect()
    tokenized = restore_policy_names(allocate_by_distinct_tags(pseudonymize(frame, privacy, KEY), policy), policy, KEY)
    tokenized = tokenized.collect()
    assert tokenized["environment"].to_list() == clear["environment"].to_list() == ["prod", None, None, None]
    assert tokenized["team"].to_list() == ["payments", reference_token("dana.okafor@acme.example"), "web", "payments"]
    # the clear run keeps the tag's spelling; from a token the policy's own spelling of the name comes back
    assert clear["team"].to_list() == ["Payments", "dana.okafor@acme.example", "web", "payments"]
    assert tokenized["allocation_rule"].to_list() == clear["allocation_rule"].to_list()
