"""AWS line items, shared by the CUR 2.0, legacy CSV and Athena/Parquet writers.

The model produces one day of one payer's line items as a *canonical* polars frame: CUR 2.0 /
Athena snake_case column names, numbers as integers in units of 10**-scale (see ``columns``),
timestamps as epoch milliseconds, product-map attributes as ``product_<key>`` columns and tags as
``_tag_<original key>`` columns. Writers turn that frame into each flavour's exact format, so the
three AWS outputs can never disagree on a value.

Determinism: a day's rows depend only on (seed, org, day, piece) for their structure and on the
day's restatement revision for their amounts, so an unchanged day is identical in every delivery.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import polars as pl

from billing_pipeline.tools.generator._util import (
    HEX,
    Month,
    Piece,
    epoch_ms,
    iso_z,
    random_tokens,
    rng_for,
    stable_code,
    stable_int,
    stable_uuid,
    take_strings,
)
from billing_pipeline.tools.generator.catalog import (
    AWS_REGIONS,
    AWS_TEMPLATES,
    COST_CENTERS,
    ENVS,
    PRODUCTS,
    TAG_SPELLINGS,
    TEAM_CONTACTS,
    TEAM_CREATORS,
    TEAMS,
    AwsOrg,
    Reservation,
)
from billing_pipeline.tools.generator.columns import AMOUNT_SCALE, MONEY_SCALE, RATE_SCALE, RESOURCE_TAG_KEYS

KIND_USAGE, KIND_DISCOUNTED, KIND_SP_COVERED, KIND_SP_NEGATION = 0, 1, 2, 3
KIND_NAMES = ["Usage", "DiscountedUsage", "SavingsPlanCoveredUsage", "SavingsPlanNegation"]
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MONEY = 10**MONEY_SCALE
RATE = 10**RATE_SCALE
AMOUNT = 10**AMOUNT_SCALE
LEGAL_ENTITY = "Amazon Web Services, Inc."
WEEKEND_FACTOR = 0.6  # non-storage usage; storage does not dip, so whole days end ~30% lower
SPIKE_FACTOR = 6.0
RESTATED_SHARE = 0.35
# No synthesized charge reaches $1e6: every value stays an exact short decimal in float64, and a
# rate written at 10 decimals stays below 2**53 units.
MAX_CHARGE = 500_000 * MONEY


def _fmt_rate(rate_i: int) -> str:
    text = f"{rate_i / RATE:.10f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _tag_frame(
    rng: np.random.Generator,
    n: int,
    style_rows: dict[str, np.ndarray],
    team: np.ndarray,
    env: np.ndarray,
    tagged: np.ndarray,
) -> pl.DataFrame:
    """Per-resource tag columns ``_tag_<key>``, one per spelling in ``RESOURCE_TAG_KEYS``.

    Each concept is spelled the owning account's way most of the time and another way otherwise;
    untagged resources get no tag at all.
    """
    presence = {"team": 0.95, "cost_center": 0.7, "env": 0.85, "product": 0.6}
    team_names = take_strings(TEAMS, team)
    values = {
        "team": team_names,
        "cost_center": take_strings([COST_CENTERS[t] for t in TEAMS], team),
        "env": take_strings(ENVS, env),
        "product": take_strings([PRODUCTS[t] for t in TEAMS], team),
    }
    cols: dict[str, pl.Series] = {}
    for concept, spellings in TAG_SPELLINGS.items():
        own = style_rows[concept]
        other = rng.integers(0, len(spellings), n)
        spelling = np.where(rng.random(n) < 0.8, own, other)
        present = tagged & (rng.random(n) < presence[concept])
        for i, key in enumerate(spellings):
            mask = pl.Series(present & (spelling == i))
            cols[f"_tag_{key}"] = pl.select(pl.when(mask).then(values[concept]).otherwise(None).alias("v")).to_series()
    # people's identifiers ride along the team tag, drawing nothing from `rng` (every other value stays as it was)
    team_tagged = pl.select(pl.coalesce(cols[f"_tag_{k}"] for k in TAG_SPELLINGS["team"]).is_not_null()).to_series()
    for key, people in (("contact", TEAM_CONTACTS), ("CreatedBy", TEAM_CREATORS)):
        named = take_strings([people[t] for t in TEAMS], team)
        cols[f"_tag_{key}"] = pl.select(pl.when(team_tagged).then(named).otherwise(None).alias("v")).to_series()
    return pl.DataFrame({f"_tag_{k}": cols[f"_tag_{k}"] for k in RESOURCE_TAG_KEYS})


class AwsModel:
    """All line items of one AWS payer for one month, generated day by day in pieces."""

    def __init__(self, org: AwsOrg, month: Month, seed: int, rows_per_day: int, piece_rows: int) -> None:
        self.org = org
        self.month = month
        self.seed = seed
        self.code = stable_int(org.payer_id) % (2**31)
        self.rows_per_day = rows_per_day
        self.piece_rows = max(1, piece_rows)
        self.org_prefix = org.payer_name.split("-")[0]
        self.accounts = pl.DataFrame(
            {
                "line_item_usage_account_id": [a.account_id for a in org.accounts],
                "line_item_usage_account_name": [a.name for a in org.accounts],
                "_cost_category": [a.business_unit for a in org.accounts],
            }
        )
        self._build_variants()
        self._build_resources()
        self._build_commitments()
        month_rng = rng_for(seed, self.code, 77)
        lo = max(1, month.days // 3)
        hi = max(lo, (2 * month.days) // 3)
        self.spike_day = int(month_rng.integers(lo, hi + 1))
        self.credit_day = min(10, month.days)
        self.refund_day = min(20, month.days)
        self._estimate_spend()

    # --- static tables -------------------------------------------------------------------------

    def _build_variants(self) -> None:
        """Every (SKU template, region) pair with its string attributes and on-demand rate."""
        rows: list[dict[str, object]] = []
        for t_idx, t in enumerate(AWS_TEMPLATES):
            for region, (location, prefix, mult) in AWS_REGIONS.items():
                rate_i = round(t.rate * mult * RATE)
                usage_type = prefix + t.usage_type
                sku = stable_code(f"{t.key}|{region}", 14)
                rate_txt = _fmt_rate(rate_i)
                if t.instance_type and t.product_code == "AmazonEC2":
                    od_desc = f"${rate_txt} per On Demand Linux {t.instance_type} Instance Hour"
                    ri_desc = f"USD 0.0 hourly fee per Linux/UNIX (Amazon VPC), {t.instance_type} instance"
                elif t.instance_type:
                    od_desc = (
                        f"${rate_txt} per RDS {t.instance_type} instance hour (or partial hour) running PostgreSQL"
                    )
                    ri_desc = f"USD 0.0 hourly fee per PostgreSQL, {t.instance_type} instance"
                else:
                    od_desc = f"${rate_txt} per {t.unit} - {t.product_name} {t.usage_type} in {location}"
                    ri_desc = None
                is_transfer = t.product_code == "AWSDataTransfer"
                row: dict[str, object] = {
                    "_template": t_idx,
                    "_vkind": {"hours": 0, "storage": 1, "quantity": 2}[t.kind],
                    "_resource_kind": t.resource,
                    "_mean_qty": t.mean_qty,
                    "_sp_eligible": t.sp_eligible,
                    "_spike": t.product_code == self.org.spike_product_code,
                    "_integral": t.unit in ("Requests", "ReadRequestUnits"),
                    "_rate_i": rate_i,
                    "_od_description": od_desc,
                    "_ri_description": ri_desc,
                    "_region": region,
                    "line_item_product_code": t.product_code,
                    "line_item_usage_type": usage_type,
                    "line_item_operation": t.operation,
                    "product_servicecode": t.product_code,
                    "product_product_family": t.product_family,
                    "product_region_code": region,
                    "product_location": location,
                    "product_location_type": "AWS Region",
                    "product_usagetype": usage_type,
                    "product_operation": t.operation,
                    "product_instance_type": t.instance_type,
                    "product_instance_family": t.instance_family,
                    "product_sku": sku,
                    "product_pricing_unit": t.unit,
                    "product_from_location": location if is_transfer else None,
                    "product_from_location_type": "AWS Region" if is_transfer else None,
                    "product_from_region_code": region if is_transfer else None,
                    "product_to_location": ("External" if t.key == "dt_out" else location) if is_transfer else None,
                    "product_to_location_type": ("Other" if t.key == "dt_out" else "AWS Region")
                    if is_transfer
                    else None,
                    "product_to_region_code": (None if t.key == "dt_out" else region) if is_transfer else None,
                    "product_product_name": t.product_name,
                    "product_servicename": t.product_name,
                    "product_region": region,
                    "pricing_unit": t.unit,
                    "pricing_rate_code": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                    "pricing_rate_id": str(10_000_000_000 + stable_int(sku) % 90_000_000_000),
                    "line_item_normalization_factor": round(t.normalization_factor * AMOUNT)
                    if t.normalization_factor
                    else None,
                }
                for key, value in t.attrs.items():
                    row[f"product_{key}"] = value
                rows.append(row)
        self.variants = pl.DataFrame(rows, infer_schema_length=None)
        self.n_regions = len(AWS_REGIONS)
        self.region_codes = list(AWS_REGIONS)
        self.variant_kind = self.variants["_vkind"].to_numpy()
        self.variant_rate = self.variants["_rate_i"].to_numpy().astype(np.float64)
        self.variant_mean = self.variants["_mean_qty"].to_numpy()
        self.variant_spike = self.variants["_spike"].to_numpy()
        self.variant_integral = self.variants["_integral"].to_numpy()

    def _build_resources(self) -> None:
        """The payer's resources for the month: account, SKU, id, AZ, team and tags."""
        rng = rng_for(self.seed, self.code, 0xA11)
        org = self.org
        n_acc = len(org.accounts)
        n_res = int(np.clip(self.rows_per_day // 5, 60, 400_000))
        acc_w = np.array([a.weight for a in org.accounts])
        acct = rng.choice(n_acc, n_res, p=acc_w / acc_w.sum())
        t_w = np.array([t.weight for t in AWS_TEMPLATES])
        template = rng.choice(len(AWS_TEMPLATES), n_res, p=t_w / t_w.sum())
        max_r = max(len(a.regions) for a in org.accounts)
        reg_matrix = np.zeros((n_acc, max_r), dtype=np.int64)
        reg_count = np.zeros(n_acc, dtype=np.int64)
        for i, a in enumerate(org.accounts):
            codes = [self.region_codes.index(r) for r in a.regions]
            reg_matrix[i, : len(codes)] = codes
            reg_count[i] = len(codes)
        region = reg_matrix[acct, (rng.random(n_res) * reg_count[acct]).astype(np.int64)]
        # Reserved instances need matching instances: put a few at the front of the table.
        forced_acct, forced_template, forced_region = [], [], []
        for ri in org.reservations:
            t_idx = next(i for i, t in enumerate(AWS_TEMPLATES) if t.key == ri.template)
            k = ri.count + 3
            forced_acct += [ri.owner] * k
            forced_template += [t_idx] * k
            forced_region += [self.region_codes.index(ri.region)] * k
        acct = np.concatenate([np.array(forced_acct, dtype=np.int64), acct])
        template = np.concatenate([np.array(forced_template, dtype=np.int64), template])
        region = np.concatenate([np.array(forced_region, dtype=np.int64), region])
        n = len(acct)
        var = template * self.n_regions + region

        own_team = np.array([TEAMS.index(a.team) for a in org.accounts])[acct]
        team = np.where(rng.random(n) < 0.7, own_team, rng.integers(0, len(TEAMS), n))
        env_cdf = np.cumsum(np.array([a.env_weights for a in org.accounts]), axis=1)
        env = (rng.random(n)[:, None] > env_cdf[acct]).sum(axis=1).clip(0, 2)
        kinds = self.variants["_resource_kind"].to_numpy()[var]
        tagged = (rng.random(n) < 0.8) & (kinds != "none")
        style_rows = {c: np.array([a.style[c] for a in org.accounts])[acct] for c in TAG_SPELLINGS}
        tags = _tag_frame(rng, n, style_rows, team, env, tagged)

        hex16 = pl.Series(random_tokens(rng, n, 16, HEX))
        region_s = take_strings(self.region_codes, region)
        acct_s = take_strings([a.account_id for a in org.accounts], acct)
        team_s = take_strings(TEAMS, team)
        env_s = take_strings(ENVS, env)
        base = pl.DataFrame({"k": kinds, "h": hex16, "r": region_s, "a": acct_s, "t": team_s, "e": env_s})
        k, h, r, a, t, e = (pl.col(c) for c in ("k", "h", "r", "a", "t", "e"))
        org_p = pl.lit(self.org_prefix)
        rid = (
            pl.when(k == "instance")
            .then(pl.concat_str([pl.lit("i-0"), h]))
            .when(k == "volume")
            .then(pl.concat_str([pl.lit("vol-0"), h]))
            .when(k == "natgw")
            .then(pl.concat_str([pl.lit("arn:aws:ec2:"), r, pl.lit(":"), a, pl.lit(":natgateway/nat-0"), h]))
            .when(k == "bucket")
            .then(pl.concat_str([org_p, pl.lit("-"), t, pl.lit("-"), e, pl.lit("-"), h.str.slice(0, 8)]))
            .when(k == "db")
            .then(
                pl.concat_str(
                    [pl.lit("arn:aws:rds:"), r, pl.lit(":"), a, pl.lit(":db:"), t, pl.lit("-pg-"), h.str.slice(0, 6)]
                )
            )
            .when(k == "function")
            .then(
                pl.concat_str(
                    [
                        pl.lit("arn:aws:lambda:"),
                        r,
                        pl.lit(":"),
                        a,
                        pl.lit(":function:"),
                        t,
                        pl.lit("-"),
                        h.str.slice(0, 8),
                    ]
                )
            )
            .when(k == "loggroup")
            .then(
                pl.concat_str(
                    [
                        pl.lit("arn:aws:logs:"),
                        r,
                        pl.lit(":"),
                        a,
                        pl.lit(":log-group:/aws/lambda/"),
                        t,
                        pl.lit("-"),
                        h.str.slice(0, 8),
                    ]
                )
            )
            .when(k == "table")
            .then(
                pl.concat_str(
                    [
                        pl.lit("arn:aws:dynamodb:"),
                        r,
                        pl.lit(":"),
                        a,
                        pl.lit(":table/"),
                        t,
                        pl.lit("-"),
                        h.str.slice(0, 8),
                    ]
                )
            )
            .when(k == "cluster")
            .then(
                pl.concat_str(
                    [
                        pl.lit("arn:aws:eks:"),
                        r,
                        pl.lit(":"),
                        a,
                        pl.lit(":cluster/"),
                        t,
                        pl.lit("-"),
                        e,
                        pl.lit("-"),
                        h.str.slice(0, 4),
                    ]
                )
            )
            .otherwise(None)
        )
        az_letter = take_strings(["a", "b", "c"], rng.integers(0, 3, n))
        zonal = pl.Series(np.isin(kinds, ["instance", "volume", "db"]))
        ids = base.select(
            rid.alias("line_item_resource_id"),
            pl.when(zonal).then(pl.concat_str([r, az_letter])).otherwise(None).alias("line_item_availability_zone"),
        )
        self.resources = pl.concat([ids, tags], how="horizontal").with_columns(
            pl.Series("_acct", acct, dtype=pl.Int32),
            pl.Series("_var", var, dtype=pl.Int32),
        )
        self.res_acct = acct
        self.res_var = var
        self.res_size = rng.lognormal(0.0, 0.7, n)
        popularity = rng.lognormal(0.0, 1.0, n)
        per_template = np.bincount(template, minlength=len(AWS_TEMPLATES)).astype(np.float64)
        weight = t_w[template] * popularity / np.maximum(per_template[template], 1)
        weight = weight * acc_w[acct]
        self.res_cdf = np.cumsum(weight) / weight.sum()
        sp_ok = np.array([t.sp_eligible for t in AWS_TEMPLATES])[template]
        self.sp_pool = np.flatnonzero(sp_ok)
        self.ri_pools = [
            np.flatnonzero(
                var
                == (
                    next(i for i, t in enumerate(AWS_TEMPLATES) if t.key == ri.template) * self.n_regions
                    + self.region_codes.index(ri.region)
                )
            )
            for ri in self.org.reservations
        ]

    def _build_commitments(self) -> None:
        """ARNs and ids of the payer's RIs and Savings Plan (stable for the month)."""
        org = self.org
        self.ri_arns: list[str] = []
        for ri in org.reservations:
            owner = org.accounts[ri.owner].account_id
            if ri.arn_kind == "ec2":
                arn = f"arn:aws:ec2:{ri.region}:{owner}:reserved-instances/" + _uuid(self.seed, org.payer_id, ri.key)
            else:
                arn = f"arn:aws:rds:{ri.region}:{owner}:ri:{self.org_prefix}-{ri.key.replace('_', '-')}-1"
            self.ri_arns.append(arn)
        starts = [self.month.start - timedelta(days=0 if ri.purchased_this_month else 120) for ri in org.reservations]
        self.ri_start = [iso_z(t, millis=True) for t in starts]
        self.ri_end = [iso_z(t + timedelta(days=365), millis=True) for t in starts]
        self.sp_arn = f"arn:aws:savingsplans::{org.accounts[org.savings_plan.owner].account_id}:savingsplan/" + _uuid(
            self.seed, org.payer_id, "sp"
        )
        sp_start = self.month.start - timedelta(days=95)
        self.sp_start = iso_z(sp_start, millis=True)
        self.sp_end = iso_z(sp_start + timedelta(days=365), millis=True)

    # --- day plan ------------------------------------------------------------------------------

    def fixed_row_count(self, day: int) -> int:
        org = self.org
        n = 1  # Savings Plan recurring fee
        if day == 1:
            n += len(org.reservations) + sum(ri.purchased_this_month for ri in org.reservations) + 1
            n += len(org.accounts) * len(self.product_codes)
        if day == self.credit_day:
            n += len(org.accounts)
        if day == self.refund_day:
            n += 1
        return n

    @property
    def product_codes(self) -> list[str]:
        return sorted({t.product_code for t in AWS_TEMPLATES})

    def day_counts(self, day: int) -> tuple[int, int, int]:
        """(usage, discounted, sp covered) rows of a day; negations equal sp covered."""
        total = max(self.rows_per_day, self.fixed_row_count(day))
        v = total - self.fixed_row_count(day)
        n_sp = int(v * self.org.savings_plan.coverage)
        n_ri = int(v * self.org.ri_share)
        n_u = v - 2 * n_sp - n_ri
        if n_u < 0:
            n_sp, n_ri, n_u = 0, 0, v
        return n_u, n_ri, n_sp

    def pieces(self, day: int) -> list[tuple[int, int, int]]:
        """Split a day into pieces of at most ``piece_rows`` rows (fixed rows go in the last)."""
        n_u, n_ri, n_sp = self.day_counts(day)
        total = n_u + n_ri + 2 * n_sp + self.fixed_row_count(day)
        k = max(1, -(-total // self.piece_rows))

        def split(x: int) -> list[int]:
            return [len(a) for a in np.array_split(np.empty(x), k)]

        return list(zip(split(n_u), split(n_ri), split(n_sp), strict=True))

    # --- amounts -------------------------------------------------------------------------------

    def _day_factor(self, day: int, var: np.ndarray) -> np.ndarray:
        weekday = self.month.day(day).weekday()
        factor = np.ones(len(var))
        if weekday >= 5:
            factor = np.where(self.variant_kind[var] == 1, 1.0, WEEKEND_FACTOR)
        if day == self.spike_day:
            factor = factor * np.where(self.variant_spike[var], SPIKE_FACTOR, 1.0)
        return factor

    def _draw(
        self, rng: np.random.Generator, n: int, pool: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Resources, start hours and durations of ``n`` rows (structure only, no amounts)."""
        if pool is None:
            res = np.searchsorted(self.res_cdf, rng.random(n), side="right").clip(0, len(self.res_cdf) - 1)
        elif len(pool):
            res = pool[rng.integers(0, len(pool), n)]
        else:
            res = np.searchsorted(self.res_cdf, rng.random(n), side="right").clip(0, len(self.res_cdf) - 1)
        var = self.res_var[res]
        storage = self.variant_kind[var] == 1
        full = storage | (rng.random(n) < 0.65)
        start = np.where(full, 0, rng.integers(0, 24, n))
        dur = np.where(full, 24, rng.integers(1, 25 - start))
        return res, start, dur

    def _amounts(self, rng: np.random.Generator, res: np.ndarray, dur: np.ndarray, factor: np.ndarray) -> np.ndarray:
        """Usage amounts in micro-units: hours for instances, GB-months for storage, counts otherwise."""
        var = self.res_var[res]
        kind = self.variant_kind[var]
        noise = rng.lognormal(0.0, 0.4, len(res))
        size = self.res_size[res]
        hours = dur.astype(np.float64)
        qty = np.where(
            kind == 0,
            hours,
            np.where(
                kind == 1,
                size * self.variant_mean[var] / self.month.days_in_month,
                size * self.variant_mean[var] * hours / 24.0 * noise,
            ),
        )
        qty = qty * factor
        qty = np.where(self.variant_integral[var], np.maximum(1.0, np.rint(qty)), qty)
        return np.maximum(1, np.rint(qty * AMOUNT)).astype(np.int64)

    def _estimate_spend(self) -> None:
        """A pilot draw that sizes taxes, credits, fees and the Savings Plan commitment."""
        rng = rng_for(self.seed, self.code, 0xB0B)
        n = 4000
        res, _, dur = self._draw(rng, n, None)
        amt = self._amounts(rng, res, dur, np.ones(n))
        cost = np.rint(amt * self.variant_rate[self.res_var[res]] / (RATE * AMOUNT / MONEY))
        n_u, n_ri, n_sp = self.day_counts(2 if self.month.days > 1 else 1)
        per_row = cost.mean()
        self.daily_spend = per_row * (n_u + n_ri + n_sp)
        acct = self.res_acct[res]
        self.account_share = np.bincount(acct, weights=cost, minlength=len(self.org.accounts)) / cost.sum()
        codes = self.variants["line_item_product_code"].to_numpy()[self.res_var[res]]
        self.code_share = {pc: float(cost[codes == pc].sum() / cost.sum()) for pc in self.product_codes}
        sp_res, _, sp_dur = self._draw(rng, n, self.sp_pool)
        sp_amt = self._amounts(rng, sp_res, sp_dur, np.ones(n))
        sp_rate = np.rint(self.variant_rate[self.res_var[sp_res]] * (1 - self.org.savings_plan.discount))
        sp_eff = np.rint(sp_amt * sp_rate / (RATE * AMOUNT / MONEY))
        n_sp_day = max(1, self.day_counts(2 if self.month.days > 1 else 1)[2])
        # Commitment in whole cents per hour; each covered row is capped so a day never exceeds it.
        hourly = max(1, int(1.3 * sp_eff.mean() * n_sp_day / 24 / 10**6)) * 10**6
        hourly = min(hourly, MAX_CHARGE // 24 // 10**6 * 10**6)
        self.sp_hourly = hourly
        self.sp_daily = hourly * 24

    # --- rows ----------------------------------------------------------------------------------

    def day_pieces(self, day: int, rev: int, invoice_id: str | None, duplicates: int = 0) -> Iterator[Piece]:
        """Yield the pieces of one usage day; ``rev`` > 0 restates its amounts."""
        plan = self.pieces(day)
        n_sp_day = sum(p[2] for p in plan)
        sp_cap = self.sp_daily // max(1, n_sp_day)
        used = 0
        for i, (n_u, n_ri, n_sp) in enumerate(plan):
            frame, sp_used = self._variable_rows(day, rev, i, n_u, n_ri, n_sp, sp_cap)
            used += sp_used
            if i == len(plan) - 1:
                fixed = self._fixed_rows(day, used)
                frame = pl.concat([frame, fixed], how="diagonal_relaxed")
            frame = self._day_constants(frame, day, invoice_id)
            dup = 0
            if duplicates and i == 0:
                frame, dup = _duplicate_rows(frame, duplicates, rng_for(self.seed, self.code, day, 0xD0))
            yield self._piece(day, frame, dup)

    def _piece(self, day: int, frame: pl.DataFrame, dup: int) -> Piece:
        key = (self.org.payer_id, "USD")
        body = frame.filter(~pl.col("_dup"))
        sums = body.select(
            pl.col("_billed").cast(pl.Int128).sum().alias("b"), pl.col("_effective").cast(pl.Int128).sum().alias("e")
        ).row(0)
        return Piece(
            day=day,
            frame=frame,
            billed={key: int(sums[0] or 0)},
            effective={key: int(sums[1] or 0)},
            rows={key: body.height},
            duplicates={key: dup},
        )

    def _variable_rows(
        self, day: int, rev: int, piece: int, n_u: int, n_ri: int, n_sp: int, sp_cap: int
    ) -> tuple[pl.DataFrame, int]:
        rng = rng_for(self.seed, self.code, day, piece, 1)
        org = self.org
        res_u, start_u, dur_u = self._draw(rng, n_u, None)
        ri_w = np.array([ri.count for ri in org.reservations], dtype=np.float64)
        ri_pick = rng.choice(len(org.reservations), n_ri, p=ri_w / ri_w.sum()) if n_ri else np.zeros(0, np.int64)
        res_ri = np.zeros(n_ri, dtype=np.int64)
        for j, pool in enumerate(self.ri_pools):
            mask = ri_pick == j
            res_ri[mask] = pool[rng.integers(0, len(pool), int(mask.sum()))]
        full_ri = rng.random(n_ri) < 0.8
        start_ri = np.where(full_ri, 0, rng.integers(0, 12, n_ri))
        dur_ri = np.where(full_ri, 24, rng.integers(1, 13, n_ri))
        res_sp, start_sp, dur_sp = self._draw(rng, n_sp, self.sp_pool)

        res = np.concatenate([res_u, res_ri, res_sp])
        start = np.concatenate([start_u, start_ri, start_sp])
        dur = np.concatenate([dur_u, dur_ri, dur_sp])
        kind = np.concatenate(
            [np.full(n_u, KIND_USAGE), np.full(n_ri, KIND_DISCOUNTED), np.full(n_sp, KIND_SP_COVERED)]
        ).astype(np.int8)
        ri_idx = np.concatenate([np.full(n_u, -1), ri_pick, np.full(n_sp, -1)])
        var = self.res_var[res]
        factor = self._day_factor(day, var)
        if rev:
            adj = rng_for(self.seed, self.code, day, piece, rev, 2)
            bump = adj.random(len(res)) < RESTATED_SHARE
            factor = factor * np.where(bump, adj.uniform(1.02, 1.25, len(res)), 1.0)
        amount = self._amounts(rng, res, dur, factor)
        rate = self.variant_rate[var]
        sp_rate = np.rint(rate * (1 - org.savings_plan.discount))
        is_sp = kind == KIND_SP_COVERED
        # Cap covered usage so that the day's covered cost never exceeds the commitment.
        max_amt = np.floor(sp_cap * (RATE * AMOUNT / MONEY) / np.maximum(sp_rate, 1)).astype(np.int64)
        amount = np.where(is_sp, np.minimum(amount, np.maximum(max_amt, 1)), amount)
        od_cost = np.rint(amount * rate / (RATE * AMOUNT / MONEY)).astype(np.int64)
        sp_eff = np.where(is_sp, np.rint(amount * sp_rate / (RATE * AMOUNT / MONEY)), 0).astype(np.int64)
        ri_up = np.array([ri.upfront_rate for ri in org.reservations] + [0.0])[ri_idx]
        ri_rec = np.array([ri.recurring_rate for ri in org.reservations] + [0.0])[ri_idx]
        amort = np.rint(amount * ri_up * MONEY / AMOUNT).astype(np.int64)
        recur = np.rint(amount * ri_rec * MONEY / AMOUNT).astype(np.int64)
        is_ri = kind == KIND_DISCOUNTED

        # SavingsPlanNegation rows mirror the covered rows with the opposite cost.
        sp_rows = np.flatnonzero(is_sp)
        n_neg = len(sp_rows)
        zeros = np.zeros(n_neg, np.int64)
        base = {
            "res": res,
            "kind": kind,
            "start": start,
            "dur": dur,
            "amount": amount,
            "unblended": np.where(is_ri, 0, od_cost),
            "unblended_rate": np.where(is_ri, 0, rate),
            "public_cost": od_cost,
            "public_rate": rate,
            "effective": np.where(is_ri, amort + recur, np.where(is_sp, sp_eff, od_cost)),
            "sp_eff": sp_eff,
            "sp_rate": sp_rate,
            "ri": ri_idx,
            "amort": amort,
            "recur": recur,
        }
        negation = {
            "res": res[sp_rows],
            "kind": np.full(n_neg, KIND_SP_NEGATION, np.int8),
            "start": start[sp_rows],
            "dur": dur[sp_rows],
            "amount": amount[sp_rows],
            "unblended": -od_cost[sp_rows],
            "unblended_rate": -rate[sp_rows],
            "public_cost": zeros,
            "public_rate": np.zeros(n_neg),
            "effective": zeros,
            "sp_eff": zeros,
            "sp_rate": np.zeros(n_neg),
            "ri": np.full(n_neg, -1),
            "amort": zeros,
            "recur": zeros,
        }
        perm = rng.permutation(len(res) + n_neg)  # interleave the line item types like a real file
        r = {k: np.concatenate([base[k], negation[k]])[perm] for k in base}
        n = len(perm)

        day_ms = self.month.day_ms(day)
        frame = pl.DataFrame(
            {
                "identity_line_item_id": pl.Series(random_tokens(rng, n, 52)),
                "_kind": r["kind"].astype(np.int8),
                "line_item_usage_start_date": day_ms + r["start"].astype(np.int64) * HOUR_MS,
                "line_item_usage_end_date": day_ms + (r["start"] + r["dur"]).astype(np.int64) * HOUR_MS,
                "line_item_usage_amount": r["amount"],
                "line_item_unblended_rate": np.rint(r["unblended_rate"]).astype(np.int64),
                "line_item_unblended_cost": r["unblended"].astype(np.int64),
                "pricing_public_on_demand_cost": r["public_cost"],
                "pricing_public_on_demand_rate": np.rint(r["public_rate"]).astype(np.int64),
                "_sp_eff": r["sp_eff"],
                "_sp_rate": np.rint(r["sp_rate"]).astype(np.int64),
                "_ri": r["ri"].astype(np.int32),
                "_amort": r["amort"],
                "_recur": r["recur"],
                "_effective": r["effective"].astype(np.int64),
            }
        )
        res_all = r["res"]
        var_all = self.res_var[res_all]
        res_cols = self.resources[pl.Series(res_all, dtype=pl.UInt32)]
        var_cols = self.variants[pl.Series(var_all, dtype=pl.UInt32)]
        acct_cols = self.accounts[pl.Series(self.res_acct[res_all], dtype=pl.UInt32)]
        frame = pl.concat([frame, res_cols.drop("_acct", "_var"), var_cols, acct_cols], how="horizontal")
        frame = self._kind_columns(frame)
        return frame, int(sp_eff.sum())

    def _kind_columns(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Columns whose content depends on the line item type (RI, Savings Plan, descriptions)."""
        kind = pl.col("_kind")
        is_ri, is_sp, is_neg = kind == KIND_DISCOUNTED, kind == KIND_SP_COVERED, kind == KIND_SP_NEGATION
        sp_any = is_sp | is_neg
        ri_keys = list(range(len(self.ri_arns)))

        def by_ri(values: list[str]) -> pl.Expr:
            return pl.col("_ri").replace_strict(ri_keys, values, default=None, return_dtype=pl.String)

        nf = pl.col("line_item_normalization_factor")
        return frame.with_columns(
            kind.replace_strict(list(range(4)), KIND_NAMES, return_dtype=pl.String).alias("line_item_line_item_type"),
            pl.col("line_item_unblended_rate").alias("line_item_blended_rate"),
            pl.col("line_item_unblended_cost").alias("line_item_blended_cost"),
            pl.when(nf.is_not_null())
            .then((pl.col("line_item_usage_amount").cast(pl.Int128) * nf // AMOUNT).cast(pl.Int64))
            .alias("line_item_normalized_usage_amount"),
            pl.when(is_ri)
            .then(pl.col("_ri_description"))
            .when(is_neg)
            .then(
                pl.concat_str(
                    [
                        pl.lit("SavingsPlanNegation used by AccountId : "),
                        pl.col("line_item_usage_account_id"),
                        pl.lit(" and UsageSku : "),
                        pl.col("product_sku"),
                    ]
                )
            )
            .otherwise(pl.col("_od_description"))
            .alias("line_item_line_item_description"),
            pl.when(is_ri)
            .then(pl.lit("Reserved"))
            .when(is_neg)
            .then(None)
            .otherwise(pl.lit("OnDemand"))
            .alias("pricing_term"),
            pl.when(is_ri).then(pl.lit("1yr")).alias("pricing_lease_contract_length"),
            pl.when(is_ri).then(pl.lit("standard")).alias("pricing_offering_class"),
            pl.when(is_ri).then(pl.lit("Partial Upfront")).alias("pricing_purchase_option"),
            pl.when(is_ri).then(by_ri(self.ri_arns)).alias("reservation_reservation_a_r_n"),
            pl.when(is_ri).then(pl.col("_effective")).alias("reservation_effective_cost"),
            pl.when(is_ri).then(pl.col("_amort")).alias("reservation_amortized_upfront_cost_for_usage"),
            pl.when(is_ri).then(pl.col("_recur")).alias("reservation_recurring_fee_for_usage"),
            pl.when(is_ri).then(by_ri(self.ri_start)).alias("reservation_start_time"),
            pl.when(is_ri).then(by_ri(self.ri_end)).alias("reservation_end_time"),
            pl.when(sp_any).then(pl.lit(self.sp_arn)).alias("savings_plan_savings_plan_a_r_n"),
            pl.when(is_sp).then(pl.col("_sp_eff")).alias("savings_plan_savings_plan_effective_cost"),
            pl.when(is_sp).then(pl.col("_sp_rate")).alias("savings_plan_savings_plan_rate"),
            pl.when(sp_any).then(pl.lit(self.sp_start)).alias("savings_plan_start_time"),
            pl.when(sp_any).then(pl.lit(self.sp_end)).alias("savings_plan_end_time"),
            pl.when(sp_any).then(pl.lit("ComputeSavingsPlans")).alias("savings_plan_offering_type"),
            pl.when(sp_any).then(pl.lit("No Upfront")).alias("savings_plan_payment_option"),
            pl.when(sp_any).then(pl.lit("1yr")).alias("savings_plan_purchase_term"),
            pl.col("line_item_unblended_cost").alias("_billed"),
        )

    def _fixed_rows(self, day: int, sp_used: int) -> pl.DataFrame:
        """The day's non-usage rows: Savings Plan fee, monthly RI fees, fees, taxes, credits, refunds.

        Their amounts come from a day-keyed stream (not the revision), so a restatement changes
        usage and the commitment's utilisation but leaves the month's fees alone.
        """
        rng = rng_for(self.seed, self.code, day, 99)
        org, month = self.org, self.month
        day_ms = month.day_ms(day)
        month_ms, month_end_ms = epoch_ms(month.start), epoch_ms(month.end)
        hours_in_month = month.days_in_month * 24
        rows: list[dict[str, object]] = []

        def acct(i: int) -> dict[str, object]:
            a = org.accounts[i]
            return {
                "line_item_usage_account_id": a.account_id,
                "line_item_usage_account_name": a.name,
                "_cost_category": a.business_unit,
            }

        def money(x: float) -> int:
            return min(max(1, round(x)), MAX_CHARGE)

        used = min(sp_used, self.sp_daily)
        rows.append(
            acct(org.savings_plan.owner)
            | {
                "line_item_line_item_type": "SavingsPlanRecurringFee",
                "line_item_product_code": "ComputeSavingsPlans",
                "product_servicecode": "ComputeSavingsPlans",
                "product_product_name": "Savings Plans for AWS Compute usage",
                "product_servicename": "Savings Plans for AWS Compute usage",
                "line_item_usage_type": "ComputeSP:1yrNoUpfront",
                "line_item_operation": "",
                "line_item_line_item_description": "1 year No Upfront Compute Savings Plan",
                "line_item_usage_start_date": day_ms,
                "line_item_usage_end_date": day_ms + DAY_MS,
                "line_item_usage_amount": 24 * AMOUNT,
                "line_item_unblended_rate": self.sp_hourly * (RATE // MONEY),
                "line_item_unblended_cost": self.sp_daily,
                "savings_plan_savings_plan_a_r_n": self.sp_arn,
                "savings_plan_total_commitment_to_date": self.sp_daily,
                "savings_plan_used_commitment": used,
                "savings_plan_recurring_commitment_for_billing_period": self.sp_hourly * hours_in_month,
                "savings_plan_amortized_upfront_commitment_for_billing_period": 0,
                "savings_plan_start_time": self.sp_start,
                "savings_plan_end_time": self.sp_end,
                "savings_plan_offering_type": "ComputeSavingsPlans",
                "savings_plan_payment_option": "No Upfront",
                "savings_plan_purchase_term": "1yr",
                "pricing_term": "Savings Plan",
                "_billed": self.sp_daily,
                "_effective": self.sp_daily - used,
            }
        )
        if day == 1:
            for j, ri in enumerate(org.reservations):
                rows += self._reservation_rows(j, ri, month_ms, month_end_ms, hours_in_month)
            rows.append(
                acct(0)
                | {
                    "line_item_line_item_type": "Fee",
                    "line_item_product_code": "AWSSupportBusiness",
                    "product_servicecode": "AWSSupportBusiness",
                    "product_product_name": "AWS Support (Business)",
                    "product_servicename": "AWS Support (Business)",
                    "line_item_usage_type": "Dollar",
                    "line_item_operation": "",
                    "line_item_line_item_description": "AWS Support (Business)",
                    "line_item_usage_start_date": month_ms,
                    "line_item_usage_end_date": month_end_ms,
                    "line_item_usage_amount": AMOUNT,
                    "line_item_unblended_cost": (fee := money(0.03 * self.daily_spend * month.days_in_month)),
                    "line_item_unblended_rate": fee * (RATE // MONEY),
                    "_billed": fee,
                    "_effective": fee,
                }
            )
            for i in range(len(org.accounts)):
                for pc in self.product_codes:
                    base = self.daily_spend * month.days_in_month * self.account_share[i] * self.code_share[pc]
                    tax = money(0.07 * base * rng.uniform(0.9, 1.1))
                    rows.append(
                        acct(i)
                        | {
                            "line_item_line_item_type": "Tax",
                            "line_item_product_code": pc,
                            "product_product_name": _service_name(pc),
                            "line_item_line_item_description": f"Tax for product code {pc}",
                            "line_item_tax_type": "US Sales Tax",
                            "line_item_usage_start_date": month_ms,
                            "line_item_usage_end_date": month_end_ms,
                            "line_item_usage_amount": AMOUNT,
                            "line_item_unblended_cost": tax,
                            "_billed": tax,
                            "_effective": tax,
                        }
                    )
        if day == self.credit_day:
            for i in range(len(org.accounts)):
                credit = -money(0.04 * self.daily_spend * self.account_share[i] * rng.uniform(0.8, 1.2))
                rows.append(
                    acct(i)
                    | {
                        "line_item_line_item_type": "Credit",
                        "line_item_product_code": "AmazonEC2",
                        "product_product_name": _service_name("AmazonEC2"),
                        "line_item_line_item_description": "AWS Promotional Credit",
                        "line_item_usage_start_date": day_ms,
                        "line_item_usage_end_date": day_ms + DAY_MS,
                        "line_item_usage_amount": 0,
                        "line_item_unblended_cost": credit,
                        "_billed": credit,
                        "_effective": credit,
                    }
                )
        if day == self.refund_day:
            refund = -money(0.02 * self.daily_spend * rng.uniform(0.8, 1.2))
            rows.append(
                acct(len(org.accounts) - 1)
                | {
                    "line_item_line_item_type": "Refund",
                    "line_item_product_code": "AmazonRDS",
                    "product_product_name": _service_name("AmazonRDS"),
                    "line_item_line_item_description": "Refund for SLA credit: AmazonRDS",
                    "line_item_usage_start_date": day_ms,
                    "line_item_usage_end_date": day_ms + DAY_MS,
                    "line_item_usage_amount": 0,
                    "line_item_unblended_cost": refund,
                    "_billed": refund,
                    "_effective": refund,
                }
            )
        for r in rows:
            r.setdefault("line_item_blended_cost", r["line_item_unblended_cost"])
            r.setdefault("line_item_blended_rate", r.get("line_item_unblended_rate"))
        frame = pl.DataFrame(rows, infer_schema_length=None)
        ids = pl.Series("identity_line_item_id", random_tokens(rng, frame.height, 52))
        return frame.with_columns(ids, pl.lit(-1, pl.Int8).alias("_kind"))

    def _reservation_rows(
        self, j: int, ri: Reservation, month_ms: int, month_end_ms: int, hours_in_month: int
    ) -> list[dict[str, object]]:
        """The monthly RIFee of a reservation, plus its upfront Fee if bought this month."""
        a = self.org.accounts[ri.owner]
        t = next(t for t in AWS_TEMPLATES if t.key == ri.template)
        prefix = AWS_REGIONS[ri.region][1]
        hours = ri.count * hours_in_month
        recurring = round(hours * ri.recurring_rate * MONEY)
        amortized = round(hours * ri.upfront_rate * MONEY)
        unused_hours = hours * 8 // 100
        unused_recurring = round(unused_hours * ri.recurring_rate * MONEY)
        unused_amortized = round(unused_hours * ri.upfront_rate * MONEY)
        upfront = round(ri.count * 8760 * ri.upfront_rate * MONEY)
        common: dict[str, object] = {
            "line_item_usage_account_id": a.account_id,
            "line_item_usage_account_name": a.name,
            "_cost_category": a.business_unit,
            "line_item_product_code": t.product_code,
            "product_servicecode": t.product_code,
            "product_product_name": t.product_name,
            "product_servicename": t.product_name,
            "product_region_code": ri.region,
            "product_location": AWS_REGIONS[ri.region][0],
            "product_instance_type": t.instance_type,
            "reservation_reservation_a_r_n": self.ri_arns[j],
            "reservation_start_time": self.ri_start[j],
            "reservation_end_time": self.ri_end[j],
            "reservation_number_of_reservations": str(ri.count),
            "reservation_modification_status": "Original",
            "reservation_subscription_id": str(100_000_000 + stable_int(self.ri_arns[j]) % 900_000_000),
            "pricing_term": "Reserved",
            "pricing_lease_contract_length": "1yr",
            "pricing_offering_class": "standard",
            "pricing_purchase_option": "Partial Upfront",
        }
        engine = "Linux/UNIX (Amazon VPC)" if t.product_code == "AmazonEC2" else "PostgreSQL"
        rows = [
            common
            | {
                "line_item_line_item_type": "RIFee",
                "line_item_usage_type": f"{prefix}HeavyUsage:{t.instance_type}",
                "line_item_operation": t.operation,
                "line_item_line_item_description": f"USD {ri.recurring_rate} hourly fee per {engine}, "
                f"{t.instance_type} instance",
                "line_item_usage_start_date": month_ms,
                "line_item_usage_end_date": month_end_ms,
                "line_item_usage_amount": hours * AMOUNT,
                "line_item_unblended_rate": round(ri.recurring_rate * RATE),
                "line_item_unblended_cost": recurring,
                "reservation_amortized_upfront_fee_for_billing_period": amortized,
                "reservation_unused_amortized_upfront_fee_for_billing_period": unused_amortized,
                "reservation_unused_recurring_fee": unused_recurring,
                "reservation_unused_quantity": unused_hours * AMOUNT,
                "reservation_upfront_value": upfront,
                "reservation_units_per_reservation": str(hours_in_month),
                "reservation_total_reserved_units": str(hours),
                "_billed": recurring,
                "_effective": unused_amortized + unused_recurring,
            }
        ]
        if ri.purchased_this_month:
            rows.append(
                common
                | {
                    "line_item_line_item_type": "Fee",
                    "line_item_usage_type": f"{prefix}HeavyUsage:{t.instance_type}",
                    "line_item_operation": t.operation,
                    "line_item_line_item_description": "Sign up charge for subscription: "
                    f"{common['reservation_subscription_id']}, planId: 2191",
                    "line_item_usage_start_date": month_ms,
                    "line_item_usage_end_date": month_end_ms,
                    "line_item_usage_amount": ri.count * AMOUNT,
                    "line_item_unblended_rate": round(8760 * ri.upfront_rate * RATE),
                    "line_item_unblended_cost": upfront,
                    "reservation_upfront_value": upfront,
                    "_billed": upfront,
                    "_effective": 0,
                }
            )
        return rows

    def _day_constants(self, frame: pl.DataFrame, day: int, invoice_id: str | None) -> pl.DataFrame:
        """Columns that are the same for every row of the day (bill, interval, currency)."""
        month = self.month
        start = month.day_start(day)
        interval = f"{iso_z(start)}/{iso_z(month.day_start(day + 1) if day < month.days_in_month else month.end)}"
        return frame.with_columns(
            pl.lit(interval).alias("identity_time_interval"),
            pl.lit("Anniversary").alias("bill_bill_type"),
            pl.lit("AWS").alias("bill_billing_entity"),
            pl.lit(LEGAL_ENTITY).alias("bill_invoicing_entity"),
            pl.lit(LEGAL_ENTITY).alias("line_item_legal_entity"),
            pl.lit(self.org.payer_id).alias("bill_payer_account_id"),
            pl.lit(self.org.payer_name).alias("bill_payer_account_name"),
            pl.lit(epoch_ms(month.start), pl.Int64).alias("bill_billing_period_start_date"),
            pl.lit(epoch_ms(month.end), pl.Int64).alias("bill_billing_period_end_date"),
            pl.lit(invoice_id, pl.String).alias("bill_invoice_id"),
            pl.lit("USD").alias("line_item_currency_code"),
            pl.lit("USD").alias("pricing_currency"),
            pl.lit(False).alias("_dup"),
        )


def _service_name(product_code: str) -> str:
    return next((t.product_name for t in AWS_TEMPLATES if t.product_code == product_code), product_code)


def _uuid(*parts: object) -> str:
    return stable_uuid(*parts)


def _duplicate_rows(frame: pl.DataFrame, k: int, rng: np.random.Generator) -> tuple[pl.DataFrame, int]:
    """Repeat ``k`` usage rows right after themselves: the exact duplicates a re-send produces."""
    candidates = np.flatnonzero(frame["_kind"].to_numpy() == KIND_USAGE)
    if not len(candidates):
        return frame, 0
    picks = np.sort(rng.choice(candidates, min(k, len(candidates)), replace=False))
    order = np.sort(np.concatenate([np.arange(frame.height), picks]), kind="stable")
    out = frame[pl.Series(order, dtype=pl.UInt32)]
    is_dup = np.zeros(len(order), dtype=bool)
    is_dup[1:] = order[1:] == order[:-1]
    return out.with_columns(pl.Series("_dup", is_dup)), len(picks)
