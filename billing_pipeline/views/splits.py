"""Splitting a shared amount among owners so that the shares add up to the amount exactly.

Rounding rule: each owner's fraction `weight / total weight` is rounded half to even to 18 decimals,
and its share `amount x fraction` too (polars' Decimal(38, 18) arithmetic; a fraction is at most 1, so
no product can overflow whatever the amounts and weights); what rounding leaves over, `amount -
sum(shares)` (at most about `amount x owners x 10^-18`), goes to the owner with the largest weight, the
alphabetically first on a tie. A pool with no owner to take it keeps its whole amount on a share whose
owner is null (shown as unsplit).
"""

from __future__ import annotations

import polars as pl

from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.views_config import SplitRule

RECIPIENT = "recipient"
WEIGHT = "weight"
_POOL = "_pool"


def rule_weights(rule: SplitRule, direct_spend: pl.DataFrame, groups: pl.DataFrame) -> pl.DataFrame:
    """`(*groups' columns, recipient, weight)`: who shares each group's pools (a group being a billing
    currency), by `rule`. `direct_spend` has `(*groups' columns, recipient, spend)`: the owners with direct
    spend in each group, and how much. Only weights above 0 are kept."""
    on = groups.columns
    if rule.method == "weights":
        fixed = pl.DataFrame(
            {RECIPIENT: list(rule.weights), WEIGHT: list(rule.weights.values())},
            schema={RECIPIENT: pl.String, WEIGHT: MONEY},
        )
        weights = groups.unique().join(fixed, how="cross")
    else:
        positive = pl.when(pl.col("spend") > 0).then(pl.col("spend")).otherwise(pl.lit(0, dtype=MONEY))
        spend = positive.cast(MONEY) if rule.method == "proportional" else pl.lit(0, dtype=MONEY)
        weights = direct_spend.select(*on, RECIPIENT, spend.alias(WEIGHT)).with_columns(
            pl.when((pl.col(WEIGHT) > 0).any().over(on))  # even, or proportional where no owner spent
            .then(pl.col(WEIGHT))
            .otherwise(pl.lit(1, dtype=MONEY))
            .alias(WEIGHT)
        )
    return weights.filter(pl.col(WEIGHT) > 0)


def split(pools: pl.DataFrame, weights: pl.DataFrame, on: list[str], amounts: list[str]) -> pl.DataFrame:
    """One row per (pool row, recipient of its `on` group) with each amount column split exactly.

    `pools` is any frame of amounts; `weights` has `(*on, recipient, weight)` with weight >= 0 and more
    than 0 in total per group. The output has the pool's columns, `recipient` and `weight`.
    """
    joined = (
        pools.with_row_index(_POOL)
        .with_columns(pl.col(a).cast(MONEY).alias(f"_{a}_whole") for a in amounts)
        .join(weights, on=on, how="left", nulls_equal=True)
        .sort(_POOL, pl.col(WEIGHT), RECIPIENT, descending=[False, True, False], nulls_last=True)
    )
    total = pl.col(WEIGHT).sum().over(_POOL)
    first = pl.int_range(pl.len()).over(_POOL) == 0
    rounded = joined.with_columns(
        pl.when(pl.col(WEIGHT).is_null())
        .then(pl.col(f"_{a}_whole"))
        .otherwise((pl.col(f"_{a}_whole") * (pl.col(WEIGHT) / total).cast(MONEY)).cast(MONEY))
        .alias(a)
        for a in amounts
    )
    return rounded.with_columns(
        pl.when(first)
        .then(pl.col(a) + (pl.col(f"_{a}_whole") - pl.col(a).sum().over(_POOL)))
        .otherwise(pl.col(a))
        .cast(MONEY)
        .alias(a)
        for a in amounts
    ).drop(_POOL, *[f"_{a}_whole" for a in amounts])
