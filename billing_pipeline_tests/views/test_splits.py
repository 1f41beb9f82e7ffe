"""Split rules: the shares of a shared amount add up to it exactly, and the rounding remainder goes to the
owner with the largest weight (the alphabetically first on a tie). Property-tested with hypothesis."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipeline.platform.focus import MONEY
from billing_pipeline.platform.views_config import SplitRule
from billing_pipeline.views.splits import RECIPIENT, WEIGHT, rule_weights, split

Q = Decimal("1e-18")
OWNERS = ["data", "ml", "payments", "search", "web"]

# up to 10^18 (money) and down to 10^-18: any product of two would overflow Decimal(38, 18), a share never does
amounts = st.integers(min_value=-(10**36), max_value=10**36).map(lambda n: Decimal(n) * Q)
weights = st.integers(min_value=0, max_value=10**36).map(lambda n: Decimal(n) * Q)
owner_weights = st.dictionaries(st.sampled_from(OWNERS), weights, min_size=1).filter(lambda w: sum(w.values()) > 0)


def _pools(values: list[Decimal]) -> pl.DataFrame:
    return pl.DataFrame(
        {"currency": ["USD"] * len(values), "service": [f"s{i}" for i in range(len(values))], "amount": values},
        schema={"currency": pl.String, "service": pl.String, "amount": MONEY},
    )


def _weights(table: dict[str, Decimal]) -> pl.DataFrame:
    return pl.DataFrame(
        {"currency": ["USD"] * len(table), RECIPIENT: list(table), WEIGHT: list(table.values())},
        schema={"currency": pl.String, RECIPIENT: pl.String, WEIGHT: MONEY},
    )


def _designated(table: dict[str, Decimal]) -> str:
    return sorted(table, key=lambda owner: (-table[owner], owner))[0]


def _stated_share(amount: Decimal, weight: Decimal, total: Decimal) -> Decimal:
    """The rule in `splits.py`: amount x (weight / total weight), each step rounded half to even to 18 places."""
    with localcontext() as context:
        context.prec = 90
        return (amount * (weight / total).quantize(Q, ROUND_HALF_EVEN)).quantize(Q, ROUND_HALF_EVEN)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(amounts, min_size=1, max_size=4), table=owner_weights)
def test_shares_add_up_exactly_and_the_remainder_goes_to_the_largest_weight(
    values: list[Decimal], table: dict[str, Decimal]
) -> None:
    shares = split(_pools(values), _weights(table), ["currency"], ["amount"])
    total = sum(table.values())
    designated = _designated(table)
    with localcontext() as context:
        context.prec = 90  # Python's default 28 digits would round the checks themselves
        _check_pools(values, table, total, designated, shares)


def _check_pools(
    values: list[Decimal], table: dict[str, Decimal], total: Decimal, designated: str, shares: pl.DataFrame
) -> None:
    for index, amount in enumerate(values):
        mine = dict(zip(*shares.filter(pl.col("service") == f"s{index}").select(RECIPIENT, "amount"), strict=True))
        assert set(mine) == set(table)
        assert sum(mine.values(), Decimal(0)) == amount  # exactly
        others = {owner: _stated_share(amount, table[owner], total) for owner in table if owner != designated}
        assert {o: v for o, v in mine.items() if o != designated} == others
        assert mine[designated] == amount - sum(others.values(), Decimal(0))
        slack = Q * (abs(amount) + 1)  # the fraction's rounding, scaled by the amount, and the share's own
        assert all(abs(v - amount * table[o] / total) <= slack for o, v in others.items())
        assert abs(mine[designated] - amount * table[designated] / total) <= slack * len(table)


@settings(max_examples=60, deadline=None)
@given(amount=amounts, spend=st.dictionaries(st.sampled_from(OWNERS), amounts, min_size=1))
def test_rules_build_weights_that_split_exactly(amount: Decimal, spend: dict[str, Decimal]) -> None:
    direct = pl.DataFrame(
        {"currency": ["USD"] * len(spend), RECIPIENT: list(spend), "spend": list(spend.values())},
        schema={"currency": pl.String, RECIPIENT: pl.String, "spend": MONEY},
    )
    groups = pl.DataFrame({"currency": ["USD"]})
    for rule in (SplitRule(method="even"), SplitRule(), SplitRule(method="weights", weights={"web": Decimal(3)})):
        table = rule_weights(rule, direct, groups)
        shares = split(_pools([amount]), table, ["currency"], ["amount"])
        with localcontext() as context:
            context.prec = 90  # Python's default 28 digits would round the sum itself
            assert sum(shares["amount"].to_list(), Decimal(0)) == amount, rule
        got = dict(zip(table[RECIPIENT], table[WEIGHT], strict=True))
        if rule.method == "even":
            assert got == dict.fromkeys(spend, Decimal(1))
        elif rule.method == "weights":
            assert got == {"web": Decimal(3)}
        elif any(v > 0 for v in spend.values()):  # proportional to positive direct spend
            assert got == {owner: v for owner, v in spend.items() if v > 0}
        else:  # nobody spent: even
            assert got == dict.fromkeys(spend, Decimal(1))


def test_the_remainder_of_an_even_split_goes_to_the_alphabetically_first_owner() -> None:
    shares = split(
        _pools([Decimal(1)]), _weights(dict.fromkeys(["web", "data", "ml"], Decimal(1))), ["currency"], ["amount"]
    )
    got = dict(zip(shares[RECIPIENT], shares["amount"], strict=True))
    third = Decimal("0.333333333333333333")
    assert got == {"data": third + Q, "ml": third, "web": third}


def test_a_pool_nobody_can_take_stays_whole_and_unsplit() -> None:
    pools = pl.DataFrame(
        {"currency": ["GBP"], "service": ["s0"], "amount": [Decimal("2.5")]},
        schema={"currency": pl.String, "service": pl.String, "amount": MONEY},
    )
    shares = split(pools, _weights({"web": Decimal(1)}), ["currency"], ["amount"])
    assert shares[RECIPIENT].to_list() == [None] and shares["amount"].to_list() == [Decimal("2.5")]


def test_the_stated_rounding_of_a_share() -> None:
    """Each share is amount x (weight / total weight), each step rounded half to even to 18 decimals."""
    table = {"ml": Decimal(2), "web": Decimal(7)}
    amount = Decimal("10.000000000000000001")
    shares = split(_pools([amount]), _weights(table), ["currency"], ["amount"])
    got = dict(zip(shares[RECIPIENT], shares["amount"], strict=True))
    with localcontext() as context:
        context.prec = 90
        ml = (amount * (Decimal(2) / 9).quantize(Q, ROUND_HALF_EVEN)).quantize(Q, ROUND_HALF_EVEN)
    assert got["ml"] == ml and got["web"] == amount - ml  # web: the largest weight takes the remainder
