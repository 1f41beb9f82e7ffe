"""The tag policy: folding, aliases, precedence, account fallback, and the rule recorded per row."""

from __future__ import annotations

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from billing_pipeline.adapters.tags import TAG_LIST
from billing_pipeline.platform.config import TagPolicy
from billing_pipeline.spine.allocation import allocate, fold_key, fold_key_text

from ..conftest import DEFAULT_POLICY

POLICY = TagPolicy.model_validate(DEFAULT_POLICY)


def _rows(*rows: tuple[str, str | None, list[tuple[str, str]]]) -> pl.LazyFrame:
    return pl.DataFrame(
        {
            "BillingAccountId": [r[0] for r in rows],
            "SubAccountId": [r[1] for r in rows],
            "x_TagList": [[{"key": k, "value": v} for k, v in r[2]] for r in rows],
            "BilledCost": [1.0] * len(rows),
        },
        schema_overrides={"x_TagList": TAG_LIST},
    ).lazy()


def test_case_and_punctuation_folding_and_aliases() -> None:
    frame = allocate(
        _rows(
            ("p", "a1", [("user:Team", "payments"), ("user:Cost-Center", "CC-1"), ("user:Environment", "Production")]),
            ("p", "a1", [("user_owner", "search"), ("user_costcenter", "CC-2"), ("user_env", "prd")]),
            ("p", "a1", [("TEAM", "ml")]),
        ),
        POLICY,
    ).collect()
    assert frame["team"].to_list() == ["payments", "search", "ml"]
    assert frame["cost_center"].to_list() == ["CC-1", "CC-2", None]
    assert frame["environment"].to_list() == ["prod", "prod", None]
    assert frame["team_rule"].to_list() == ["tag:user:Team", "tag:user_owner", "tag:TEAM"]
    assert frame["unallocated"].to_list() == [False, False, False]


def test_precedence_follows_the_policy_order_not_the_tag_order() -> None:
    frame = allocate(_rows(("p", "a1", [("owner", "second"), ("team", "first")])), POLICY).collect()
    assert frame["team"].item() == "first"
    assert frame["allocation_rule"].item() == "tag:team"


def test_account_fallback_then_unallocated() -> None:
    frame = allocate(
        _rows(("p", "222222222201", []), ("p", "999", [("env", "dev")]), ("p", "999", [("team", "  ")])), POLICY
    ).collect()
    assert frame["team"].to_list() == ["platform", None, None]
    assert frame["cost_center"].to_list() == ["CC-100", None, None]
    assert frame["allocation_rule"].to_list() == ["account:222222222201", "unallocated", "unallocated"]
    assert frame["unallocated"].to_list() == [False, True, True]


def test_a_tag_beats_the_account_fallback() -> None:
    frame = allocate(_rows(("p", "222222222201", [("Team", "web")])), POLICY).collect()
    assert frame["team"].item() == "web"
    assert frame["cost_center"].item() == "CC-100"  # no cost-center tag: the account decides that dimension


@given(st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=30))
def test_polars_folding_matches_the_reference(key: str) -> None:
    prefixes = POLICY.strip_prefixes
    folded = pl.DataFrame({"k": [key]}).select(fold_key(pl.col("k"), prefixes)).item()
    assert folded == fold_key_text(key, prefixes)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Team", "team", "TEAM", "user:team", "owner", "squad", "x"]),
            st.sampled_from(["a", "b", "c"]),
        ),
        max_size=6,
    )
)
def test_every_row_is_allocated_by_its_first_matching_alias_or_flagged(tags: list[tuple[str, str]]) -> None:
    frame = allocate(_rows(("p", "999", tags)), POLICY).collect()
    expected = None
    for alias in POLICY.dimensions["team"].keys:
        values = [v for k, v in tags if fold_key_text(k, POLICY.strip_prefixes) == alias]
        if values:
            expected = values[0]
            break
    assert frame["team"].item() == expected
    assert frame["unallocated"].item() is (expected is None)


def test_allocating_distinct_tag_sets_equals_allocating_every_row() -> None:
    from billing_pipeline.adapters.tags import tags_json
    from billing_pipeline.spine.allocation import allocate_by_distinct_tags

    rows = _rows(
        ("p", "a1", [("Team", "web")]),
        ("p", "222222222201", []),
        ("p", "a1", [("Team", "web")]),
        ("p", None, [("env", "prd"), ("owner", "ml")]),
        ("q", None, []),
        ("p", "a1", [("Team", "web")]),
    ).with_columns(tags_json(pl.col("x_TagList")).alias("Tags"))
    rows = rows.with_row_index("i")
    assert allocate_by_distinct_tags(rows, POLICY).collect().sort("i").equals(allocate(rows, POLICY).collect())


_TAG_PAIRS = st.tuples(
    st.sampled_from(["Team", "user:team", "env", "owner", "x"]), st.sampled_from(["web", "ml", " ", "prd"])
)
_ROW = st.tuples(
    st.sampled_from(["p", "q"]),
    st.sampled_from(["a1", "222222222201", None]),
    st.lists(_TAG_PAIRS, max_size=3),
)


@given(st.lists(_ROW, min_size=1, max_size=40))
def test_allocating_distinct_tag_sets_equals_allocating_every_row_for_any_rows(rows: list) -> None:
    """The keys-first distinct pass (one row per tags and account) decides every row as `allocate` does."""
    from billing_pipeline.adapters.tags import tags_json
    from billing_pipeline.spine.allocation import allocate_by_distinct_tags

    frame = _rows(*rows).with_columns(tags_json(pl.col("x_TagList")).alias("Tags")).with_row_index("i")
    assert allocate_by_distinct_tags(frame, POLICY).collect().sort("i").equals(allocate(frame, POLICY).collect())
