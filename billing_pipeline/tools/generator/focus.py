"""Native FOCUS 1.2 rows of a non-AWS vendor export (Oracle Cloud in USD, MongoDB Atlas in EUR).

Rows are built to be spec-correct so the FinOps Foundation validator can run on them unchanged:
quantities and unit prices have 4 decimals and costs are their exact products (``ListUnitPrice *
PricingQuantity == ListCost`` to the last digit), datetimes are whole hours in UTC, ``ListCost >=
ContractedCost >= 0`` for usage, commitment purchases have ``EffectiveCost`` 0 and are amortised over
covered usage plus an ``Unused`` row per day, taxes and credits have all four costs equal.

Like the AWS model, a day's structure is keyed by (seed, vendor, day, piece) and its amounts by the
restatement revision, so unchanged days are identical across deliveries.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import polars as pl

from billing_pipeline.tools.generator._util import (
    BASE32,
    HEX,
    Month,
    Piece,
    epoch_ms,
    random_tokens,
    rng_for,
    stable_int,
    stable_uuid,
    take_strings,
)
from billing_pipeline.tools.generator.aws import MAX_CHARGE, RESTATED_SHARE, SPIKE_FACTOR, WEEKEND_FACTOR, _tag_frame
from billing_pipeline.tools.generator.catalog import ENVS, FOCUS_VENDORS, TAG_SPELLINGS, TEAMS, FocusVendor
from billing_pipeline.tools.generator.columns import RESOURCE_TAG_KEYS

QTY = 10**4  # PricingQuantity / ConsumedQuantity / CommitmentDiscountQuantity scale
PRICE = 10**4  # unit price scale; QTY * PRICE == 10**8, the money scale
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
COMMIT_RATE_SHARE = 0.72  # commitment price as a share of the list price
KIND_STANDARD, KIND_COMMITTED = 0, 1

_RESOURCE_TOKENS = {
    "Instance": "instance",
    "Volume": "volume",
    "Bucket": "bucket",
    "Autonomous Database": "autonomousdatabase",
    "Load Balancer": "loadbalancer",
}
_REGION_KEYS = {"us-ashburn-1": "iad", "us-phoenix-1": "phx", "eu-frankfurt-1": "fra"}


def _price(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * PRICE + int((frac + "0000")[:4])


def tags_json(frame: pl.DataFrame) -> pl.Series:
    """FOCUS ``Tags``: a flat JSON object of the resource's tags, keys as the user spelled them."""
    parts = [
        pl.when(pl.col(f"_tag_{k}").is_not_null()).then(pl.format('"{}":"{}"', pl.lit(k), pl.col(f"_tag_{k}")))
        for k in RESOURCE_TAG_KEYS
    ]
    body = pl.concat_list(parts).list.drop_nulls().list.join(",")
    return frame.select(
        pl.when(body == "").then(None).otherwise(pl.concat_str([pl.lit("{"), body, pl.lit("}")])).alias("Tags")
    ).to_series()


class _VendorModel:
    """One FOCUS billing account: its resources, prices, commitment and fixed charges."""

    def __init__(self, vendor: FocusVendor, month: Month, seed: int, rows_per_day: int) -> None:
        self.v = vendor
        self.month = month
        self.seed = seed
        self.code = stable_int(vendor.billing_account_id) % (2**31)
        self.rows_per_day = max(1, round(rows_per_day * vendor.share))
        self.list_price = np.array([_price(s.list_price) for s in vendor.skus], dtype=np.int64)
        disc = round(vendor.contracted_discount * 100)
        self.contracted_price = self.list_price * (100 - disc) // 100
        self.commit_price = self.list_price * round(COMMIT_RATE_SHARE * 100) // 100
        self._build_resources()
        month_rng = rng_for(seed, self.code, 77)
        lo = max(1, month.days // 3)
        hi = max(lo, (2 * month.days) // 3)
        self.spike_day = int(month_rng.integers(lo, hi + 1))
        self.credit_day = min(12, month.days)
        self.correction_day = min(3, month.days)
        self.commitment_id = (
            f"ocid1.commitment.oc1..{stable_uuid(seed, vendor.billing_account_id, 'commit').replace('-', '')}"
            if vendor.commitment
            else None
        )
        self._estimate()

    def _build_resources(self) -> None:
        v = self.v
        rng = rng_for(self.seed, self.code, 0xA11)
        n_sub = len(v.sub_accounts)
        n = int(np.clip(self.rows_per_day // 5, 30, 200_000))
        sub_w = np.array([a.weight for a in v.sub_accounts])
        sub = rng.choice(n_sub, n, p=sub_w / sub_w.sum())
        sku_w = np.array([s.weight for s in v.skus])
        sku = rng.choice(len(v.skus), n, p=sku_w / sku_w.sum())
        if v.commitment:  # make sure covered usage has instances to land on
            eligible = np.flatnonzero([s.commitment_eligible for s in v.skus])
            sku[: min(n, 8)] = eligible[0]
        regions = list(v.regions)
        max_r = max(len(a.regions) for a in v.sub_accounts)
        reg_matrix = np.zeros((n_sub, max_r), dtype=np.int64)
        reg_count = np.zeros(n_sub, dtype=np.int64)
        for i, a in enumerate(v.sub_accounts):
            reg_matrix[i, : len(a.regions)] = [regions.index(r) for r in a.regions]
            reg_count[i] = len(a.regions)
        region = reg_matrix[sub, (rng.random(n) * reg_count[sub]).astype(np.int64)]
        own_team = np.array([TEAMS.index(a.team) for a in v.sub_accounts])[sub]
        team = np.where(rng.random(n) < 0.75, own_team, rng.integers(0, len(TEAMS), n))
        env_cdf = np.cumsum(np.array([a.env_weights for a in v.sub_accounts]), axis=1)
        env = (rng.random(n)[:, None] > env_cdf[sub]).sum(axis=1).clip(0, 2)
        rtype = np.array([s.resource_type or "" for s in v.skus], dtype=object)[sku]
        tagged = (rng.random(n) < 0.8) & (rtype != "")
        style_rows = {c: np.array([a.style[c] for a in v.sub_accounts])[sub] for c in TAG_SPELLINGS}
        tags = _tag_frame(rng, n, style_rows, team, env, tagged)

        token = pl.Series(random_tokens(rng, n, 60, BASE32))
        hex6 = pl.Series(random_tokens(rng, n, 6, HEX))
        region_s = take_strings(regions, region)
        base = pl.DataFrame(
            {
                "rt": take_strings([s.resource_type for s in v.skus], sku),
                "tok": token,
                "h": hex6,
                "reg": region_s,
                "sub": take_strings([a.account_id for a in v.sub_accounts], sub),
                "team": take_strings(TEAMS, team),
                "env": take_strings(ENVS, env),
            }
        )
        rt = pl.col("rt")
        if v.provider == "Oracle":
            rtoken = rt.replace_strict(list(_RESOURCE_TOKENS), list(_RESOURCE_TOKENS.values()), default="resource")
            rkey = pl.col("reg").replace_strict(list(_REGION_KEYS), list(_REGION_KEYS.values()), default="iad")
            rid = pl.concat_str([pl.lit("ocid1."), rtoken, pl.lit(".oc1."), rkey, pl.lit("."), pl.col("tok")])
        else:
            rid = pl.concat_str([pl.col("sub"), pl.lit("/clusters/"), pl.col("team"), pl.lit("-"), pl.col("h")])
        name = pl.concat_str(
            [
                pl.col("team"),
                pl.lit("-"),
                pl.col("env"),
                pl.lit("-"),
                rt.str.to_lowercase().str.replace_all(" ", "-"),
                pl.lit("-"),
                pl.col("h").str.slice(0, 4),
            ]
        )
        has = rt.is_not_null()
        zonal = np.array([s.zonal for s in v.skus])[sku]
        az_options = [v.availability_zones.get(r, ()) for r in regions]
        az_pick = rng.integers(0, 8, n)
        az_table = [[opts[k % len(opts)] if opts else None for k in range(8)] for opts in az_options]
        az_flat = [x for row in az_table for x in row]
        az_s = take_strings(az_flat, region * 8 + az_pick)
        self.resources = base.select(
            pl.when(has).then(rid).alias("ResourceId"),
            pl.when(has).then(name).alias("ResourceName"),
            rt.alias("ResourceType"),
            pl.col("reg").alias("RegionId"),
            pl.col("reg").replace_strict(regions, [v.regions[r] for r in regions]).alias("RegionName"),
            pl.when(pl.Series(zonal)).then(az_s).alias("AvailabilityZone"),
            pl.col("sub").alias("SubAccountId"),
            pl.col("sub")
            .replace_strict([a.account_id for a in v.sub_accounts], [a.name for a in v.sub_accounts])
            .alias("SubAccountName"),
        ).with_columns(tags_json(tags))
        self.res_sku = sku
        self.res_size = rng.lognormal(0.0, 0.6, n)
        popularity = rng.lognormal(0.0, 1.0, n)
        per_sku = np.bincount(sku, minlength=len(v.skus)).astype(np.float64)
        w = sku_w[sku] * popularity / np.maximum(per_sku[sku], 1) * sub_w[sub]
        self.res_cdf = np.cumsum(w) / w.sum()
        self.commit_pool = np.flatnonzero(np.array([s.commitment_eligible for s in v.skus])[sku])
        self.sku_frame = pl.DataFrame(
            {
                "ServiceName": [s.service_name for s in v.skus],
                "ServiceCategory": [s.service_category for s in v.skus],
                "ServiceSubcategory": [s.service_subcategory for s in v.skus],
                "SkuId": [s.sku_id for s in v.skus],
                "SkuMeter": [s.sku_meter for s in v.skus],
                "SkuPriceId": [f"{s.sku_id}-{v.currency}-STD" for s in v.skus],
                "SkuPriceDetails": [f'{{"x_PartNumber":"{s.sku_id}"}}' for s in v.skus],
                "ChargeDescription": [s.description for s in v.skus],
                "PricingUnit": [s.pricing_unit for s in v.skus],
                "_kind_sku": [{"hours": 0, "storage": 1, "quantity": 2}[s.kind] for s in v.skus],
            }
        )
        self.sku_kind = self.sku_frame["_kind_sku"].to_numpy()
        self.sku_mean = np.array([s.mean_qty for s in v.skus])
        self.sku_spike = np.array([s.service_name == v.spike_service for s in v.skus])

    # --- plan ----------------------------------------------------------------------------------

    def fixed_row_count(self, day: int) -> int:
        n = 1 if self.v.commitment else 0  # the commitment's Unused row
        if day == 1:
            n += len({s.service_name for s in self.v.skus}) + (1 if self.v.commitment else 0)
        if day == self.credit_day:
            n += 1
        if day == self.correction_day:
            n += 1
        return n

    def day_counts(self, day: int) -> tuple[int, int]:
        """(standard usage, commitment-covered usage) rows of a day."""
        total = max(self.rows_per_day, self.fixed_row_count(day))
        var = total - self.fixed_row_count(day)
        n_c = int(var * 0.08) if self.v.commitment else 0
        return var - n_c, n_c

    def _estimate(self) -> None:
        """Size the daily commitment (in OCPU hours) and taxes from a pilot draw."""
        rng = rng_for(self.seed, self.code, 0xB0B)
        res, _, dur = self._draw(rng, 4000, None)
        qty = self._qty(rng, res, dur, np.ones(len(res)))
        cost = qty * self.contracted_price[self.res_sku[res]]
        n_u, n_c = self.day_counts(2 if self.month.days > 1 else 1)
        self.daily_spend = float(cost.mean()) * (n_u + n_c)
        services = [s.service_name for s in self.v.skus]
        svc = np.array(services, dtype=object)[self.res_sku[res]]
        self.service_share = {s: float(cost[svc == s].sum() / max(cost.sum(), 1)) for s in dict.fromkeys(services)}
        if self.v.commitment and len(self.commit_pool):
            c_res, _, c_dur = self._draw(rng, 2000, self.commit_pool)
            c_qty = self._qty(rng, c_res, c_dur, np.ones(len(c_res)))
            # Whole hours per day, 30% head-room over the expected covered usage.
            hours = max(1, int(1.3 * c_qty.mean() * max(n_c, 1) / QTY))
            sku_i = next(i for i, s in enumerate(self.v.skus) if s.commitment_eligible)
            # The month's purchase, even at list price, stays under the per-charge cap.
            hours = min(hours, MAX_CHARGE // (self.month.days_in_month * int(self.list_price[sku_i]) * QTY))
            self.commit_daily_qty = max(1, hours) * QTY
        else:
            self.commit_daily_qty = 0

    # --- rows ----------------------------------------------------------------------------------

    def _draw(
        self, rng: np.random.Generator, n: int, pool: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if pool is not None and len(pool):
            res = pool[rng.integers(0, len(pool), n)]
        else:
            res = np.searchsorted(self.res_cdf, rng.random(n), side="right").clip(0, len(self.res_cdf) - 1)
        storage = self.sku_kind[self.res_sku[res]] == 1
        full = storage | (rng.random(n) < 0.65)
        start = np.where(full, 0, rng.integers(0, 24, n))
        dur = np.where(full, 24, rng.integers(1, 25 - start))
        return res, start, dur

    def _qty(self, rng: np.random.Generator, res: np.ndarray, dur: np.ndarray, factor: np.ndarray) -> np.ndarray:
        """PricingQuantity in units of 1e-4: unit-hours, GB-months for the day, or GB."""
        sku = self.res_sku[res]
        kind = self.sku_kind[sku]
        size = self.res_size[res]
        mean = self.sku_mean[sku]
        noise = rng.lognormal(0.0, 0.4, len(res))
        units = np.maximum(1.0, np.rint(size * mean))
        qty = np.where(
            kind == 0,
            units * dur,
            np.where(kind == 1, size * mean / self.month.days_in_month, size * mean * dur / 24.0 * noise),
        )
        return np.maximum(1, np.rint(qty * factor * QTY)).astype(np.int64)

    def pieces(self, day: int, k: int) -> list[tuple[int, int]]:
        n_u, n_c = self.day_counts(day)
        us = [len(a) for a in np.array_split(np.empty(n_u), k)]
        cs = [len(a) for a in np.array_split(np.empty(n_c), k)]
        return list(zip(us, cs, strict=True))

    def variable_rows(
        self, day: int, rev: int, piece: int, n_u: int, n_c: int, cap_qty: int
    ) -> tuple[pl.DataFrame, int]:
        rng = rng_for(self.seed, self.code, day, piece, 1)
        res_u, start_u, dur_u = self._draw(rng, n_u, None)
        res_c, start_c, dur_c = self._draw(rng, n_c, self.commit_pool)
        res = np.concatenate([res_u, res_c])
        start = np.concatenate([start_u, start_c])
        dur = np.concatenate([dur_u, dur_c])
        kind = np.concatenate([np.full(n_u, KIND_STANDARD), np.full(n_c, KIND_COMMITTED)]).astype(np.int8)
        sku = self.res_sku[res]
        factor = np.ones(len(res))
        if self.month.day(day).weekday() >= 5:
            factor = np.where(self.sku_kind[sku] == 1, 1.0, WEEKEND_FACTOR)
        if day == self.spike_day:
            factor = factor * np.where(self.sku_spike[sku], SPIKE_FACTOR, 1.0)
        if rev:
            adj = rng_for(self.seed, self.code, day, piece, rev, 2)
            bump = adj.random(len(res)) < RESTATED_SHARE
            factor = factor * np.where(bump, adj.uniform(1.02, 1.25, len(res)), 1.0)
        qty = self._qty(rng, res, dur, factor)
        committed = kind == KIND_COMMITTED
        qty = np.where(committed, np.minimum(qty, max(cap_qty, 1)), qty)
        list_p = self.list_price[sku]
        contracted_p = self.contracted_price[sku]
        commit_p = self.commit_price[sku]
        list_cost = qty * list_p
        contracted_cost = qty * contracted_p
        effective = np.where(committed, qty * commit_p, contracted_cost)
        billed = np.where(committed, 0, contracted_cost)
        perm = rng.permutation(len(res))
        res, start, dur, kind, sku, qty = res[perm], start[perm], dur[perm], kind[perm], sku[perm], qty[perm]
        list_p, contracted_p = list_p[perm], contracted_p[perm]
        list_cost, contracted_cost, effective, billed = (
            list_cost[perm],
            contracted_cost[perm],
            effective[perm],
            billed[perm],
        )
        day_ms = self.month.day_ms(day)
        committed_s = pl.Series(kind == KIND_COMMITTED)
        frame = pl.DataFrame(
            {
                "_kind": kind,
                "ChargePeriodStart": day_ms + start.astype(np.int64) * HOUR_MS,
                "ChargePeriodEnd": day_ms + (start + dur).astype(np.int64) * HOUR_MS,
                "PricingQuantity": qty,
                "ConsumedQuantity": qty,
                "ListUnitPrice": list_p,
                "ContractedUnitPrice": contracted_p,
                "ListCost": list_cost,
                "ContractedCost": contracted_cost,
                "EffectiveCost": effective,
                "BilledCost": billed,
            }
        )
        frame = pl.concat(
            [frame, self.resources[pl.Series(res, dtype=pl.UInt32)], self.sku_frame[pl.Series(sku, dtype=pl.UInt32)]],
            how="horizontal",
        ).with_columns(
            pl.lit("Usage").alias("ChargeCategory"),
            pl.lit("Usage-Based").alias("ChargeFrequency"),
            pl.col("PricingUnit").alias("ConsumedUnit"),
            pl.when(committed_s).then(pl.lit("Committed")).otherwise(pl.lit("Standard")).alias("PricingCategory"),
            pl.when(committed_s).then(pl.col("PricingQuantity")).alias("CommitmentDiscountQuantity"),
            pl.when(committed_s).then(pl.lit("Used")).alias("CommitmentDiscountStatus"),
            *self._commitment_columns(committed_s),
        )
        used = int(qty[kind == KIND_COMMITTED].sum())
        return frame.drop("_kind_sku"), used

    def _commitment_columns(self, mask: pl.Series | pl.Expr) -> list[pl.Expr]:
        return [
            pl.when(mask).then(pl.lit(self.commitment_id)).alias("CommitmentDiscountId"),
            pl.when(mask).then(pl.lit("E4 OCPU annual commitment")).alias("CommitmentDiscountName"),
            pl.when(mask).then(pl.lit("Usage")).alias("CommitmentDiscountCategory"),
            pl.when(mask).then(pl.lit("Compute Commitment")).alias("CommitmentDiscountType"),
            pl.when(mask).then(pl.lit("Hours")).alias("CommitmentDiscountUnit"),
        ]

    def fixed_rows(self, day: int, used_qty: int) -> pl.DataFrame:
        """Unused commitment (daily), purchase and taxes (day 1), a credit, a correction."""
        v, month = self.v, self.month
        rng = rng_for(self.seed, self.code, day, 99)
        day_ms = month.day_ms(day)
        month_ms, month_end_ms = epoch_ms(month.start), epoch_ms(month.end)
        rows: list[dict[str, object]] = []
        first_sub = v.sub_accounts[0]
        sub = {"SubAccountId": first_sub.account_id, "SubAccountName": first_sub.name}
        if v.commitment:
            sku_i = next(i for i, s in enumerate(v.skus) if s.commitment_eligible)
            s = v.skus[sku_i]
            lp, cp, mp = int(self.list_price[sku_i]), int(self.contracted_price[sku_i]), int(self.commit_price[sku_i])
            unused = max(0, self.commit_daily_qty - used_qty)
            commit = {
                "CommitmentDiscountId": self.commitment_id,
                "CommitmentDiscountName": "E4 OCPU annual commitment",
                "CommitmentDiscountCategory": "Usage",
                "CommitmentDiscountType": "Compute Commitment",
                "CommitmentDiscountUnit": "Hours",
                "ResourceId": self.commitment_id,
                "ResourceName": "E4 OCPU annual commitment",
                "ResourceType": "Commitment",
                "ServiceName": s.service_name,
                "ServiceCategory": s.service_category,
                "ServiceSubcategory": s.service_subcategory,
                "RegionId": v.sub_accounts[0].regions[0],
                "RegionName": v.regions[v.sub_accounts[0].regions[0]],
                "SkuId": s.sku_id,
                "SkuMeter": s.sku_meter,
                "SkuPriceId": f"{s.sku_id}-{v.currency}-STD",
                "SkuPriceDetails": f'{{"x_PartNumber":"{s.sku_id}"}}',
                "PricingUnit": s.pricing_unit,
            } | sub
            if unused:
                rows.append(
                    commit
                    | {
                        "ChargeCategory": "Usage",
                        "ChargeFrequency": "Usage-Based",
                        "ChargeDescription": "Unused commitment: E4 OCPU annual commitment",
                        "ChargePeriodStart": day_ms,
                        "ChargePeriodEnd": day_ms + DAY_MS,
                        "PricingCategory": "Committed",
                        "PricingQuantity": unused,
                        "ListUnitPrice": lp,
                        "ContractedUnitPrice": cp,
                        "ListCost": unused * lp,
                        "ContractedCost": unused * cp,
                        "BilledCost": 0,
                        "EffectiveCost": unused * mp,
                        "CommitmentDiscountStatus": "Unused",
                        "CommitmentDiscountQuantity": unused,
                    }
                )
            if day == 1:
                qty = self.commit_daily_qty * month.days_in_month
                rows.append(
                    commit
                    | {
                        "ChargeCategory": "Purchase",
                        "ChargeFrequency": "Recurring",
                        "ChargeDescription": "E4 OCPU annual commitment, monthly payment",
                        "ChargePeriodStart": month_ms,
                        "ChargePeriodEnd": month_end_ms,
                        "PricingCategory": "Standard",
                        "PricingQuantity": qty,
                        "ListUnitPrice": lp,
                        "ContractedUnitPrice": mp,
                        "ListCost": qty * lp,
                        "ContractedCost": qty * mp,
                        "BilledCost": qty * mp,
                        "EffectiveCost": 0,
                        "CommitmentDiscountQuantity": qty,
                    }
                )
        if day == 1:
            services = list(dict.fromkeys(s.service_name for s in v.skus))
            for svc in services:
                s = next(x for x in v.skus if x.service_name == svc)
                base = self.daily_spend * month.days_in_month * self.service_share[svc]
                tax = min(max(1, round(v.tax_rate * base * rng.uniform(0.9, 1.1))), MAX_CHARGE)
                rows.append(
                    {
                        "ChargeCategory": "Tax",
                        "ChargeFrequency": "Recurring",
                        "ChargeDescription": f"{v.tax_name} for {svc}",
                        "ChargePeriodStart": month_ms,
                        "ChargePeriodEnd": month_end_ms,
                        "ServiceName": svc,
                        "ServiceCategory": s.service_category,
                        "ServiceSubcategory": s.service_subcategory,
                        "ListCost": tax,
                        "ContractedCost": tax,
                        "BilledCost": tax,
                        "EffectiveCost": tax,
                    }
                )
        if day == self.credit_day:
            s = v.skus[0]
            credit = -min(max(1, round(0.05 * self.daily_spend * rng.uniform(0.8, 1.2))), MAX_CHARGE)
            rows.append(
                sub
                | {
                    "ChargeCategory": "Credit",
                    "ChargeFrequency": "One-Time",
                    "ChargeDescription": "Promotional credit",
                    "ChargePeriodStart": day_ms,
                    "ChargePeriodEnd": day_ms + DAY_MS,
                    "ServiceName": s.service_name,
                    "ServiceCategory": s.service_category,
                    "ServiceSubcategory": s.service_subcategory,
                    "ListCost": credit,
                    "ContractedCost": credit,
                    "BilledCost": credit,
                    "EffectiveCost": credit,
                }
            )
        if day == self.correction_day:
            s = v.skus[-1]
            prev = (month.start - timedelta(days=1)).strftime("%Y-%m")
            amount = -min(max(1, round(0.01 * self.daily_spend * rng.uniform(0.8, 1.2))), MAX_CHARGE)
            rows.append(
                sub
                | {
                    "ChargeCategory": "Adjustment",
                    "ChargeClass": "Correction",
                    "ChargeFrequency": "One-Time",
                    "ChargeDescription": f"Correction of the {prev} invoice: {s.service_name} overcharge",
                    "ChargePeriodStart": day_ms,
                    "ChargePeriodEnd": day_ms + DAY_MS,
                    "ServiceName": s.service_name,
                    "ServiceCategory": s.service_category,
                    "ServiceSubcategory": s.service_subcategory,
                    "ListCost": amount,
                    "ContractedCost": amount,
                    "BilledCost": amount,
                    "EffectiveCost": amount,
                }
            )
        if not rows:
            return pl.DataFrame()
        return pl.DataFrame(rows, infer_schema_length=None)

    def finish(self, frame: pl.DataFrame, invoice_id: str | None) -> pl.DataFrame:
        """Billing-account columns shared by every row of this vendor."""
        v, month = self.v, self.month
        return frame.with_columns(
            pl.lit(v.billing_account_id).alias("BillingAccountId"),
            pl.lit(v.billing_account_name).alias("BillingAccountName"),
            pl.lit(v.billing_account_type).alias("BillingAccountType"),
            pl.lit(v.currency).alias("BillingCurrency"),
            pl.lit(v.currency).alias("PricingCurrency"),
            pl.lit(epoch_ms(month.start), pl.Int64).alias("BillingPeriodStart"),
            pl.lit(epoch_ms(month.end), pl.Int64).alias("BillingPeriodEnd"),
            pl.lit(v.provider).alias("ProviderName"),
            pl.lit(v.provider).alias("PublisherName"),
            pl.lit(v.provider).alias("InvoiceIssuerName"),
            pl.lit(invoice_id, pl.String).alias("InvoiceId"),
            pl.when(pl.col("SubAccountId").is_not_null()).then(pl.lit(v.sub_account_type)).alias("SubAccountType"),
            pl.col("ContractedUnitPrice").alias("PricingCurrencyContractedUnitPrice"),
            pl.col("ListUnitPrice").alias("PricingCurrencyListUnitPrice"),
            pl.col("EffectiveCost").alias("PricingCurrencyEffectiveCost"),
            pl.col("BilledCost").alias("_billed"),
            pl.col("EffectiveCost").alias("_effective"),
            pl.lit(False).alias("_dup"),
        )


class FocusModel:
    """Both FOCUS billing accounts of the vendor export, generated day by day in pieces."""

    def __init__(self, month: Month, seed: int, rows_per_day: int, piece_rows: int) -> None:
        self.month = month
        self.piece_rows = max(1, piece_rows)
        self.rows_per_day = rows_per_day
        self.vendors = [_VendorModel(v, month, seed, rows_per_day) for v in FOCUS_VENDORS]

    @property
    def spike_days(self) -> dict[str, int]:
        return {vm.v.billing_account_id: vm.spike_day for vm in self.vendors if vm.v.spike_service}

    def day_pieces(self, day: int, rev: int, invoice_ids: dict[str, str] | None) -> Iterator[Piece]:
        """Yield one usage day in pieces; each piece holds a share of every billing account."""
        total = sum(sum(vm.day_counts(day)) + vm.fixed_row_count(day) for vm in self.vendors)
        k = max(1, -(-total // self.piece_rows))
        plans = [vm.pieces(day, k) for vm in self.vendors]
        caps = [
            vm.commit_daily_qty // max(1, sum(p[1] for p in plan)) for vm, plan in zip(self.vendors, plans, strict=True)
        ]
        used = [0] * len(self.vendors)
        for i in range(k):
            frames = []
            for j, vm in enumerate(self.vendors):
                n_u, n_c = plans[j][i]
                frame, u = vm.variable_rows(day, rev, i, n_u, n_c, caps[j])
                used[j] += u
                if i == k - 1:
                    fixed = vm.fixed_rows(day, used[j])
                    if fixed.height:
                        frame = pl.concat([frame, fixed], how="diagonal_relaxed")
                invoice = invoice_ids.get(vm.v.billing_account_id) if invoice_ids else None
                frames.append(vm.finish(frame, invoice))
            frame = pl.concat(frames, how="diagonal_relaxed")
            yield _piece(day, frame)


def _piece(day: int, frame: pl.DataFrame) -> Piece:
    sums = frame.group_by("BillingAccountId", "BillingCurrency").agg(
        pl.col("_billed").cast(pl.Int128).sum().alias("b"),
        pl.col("_effective").cast(pl.Int128).sum().alias("e"),
        pl.len().alias("n"),
    )
    billed, effective, rows, dups = {}, {}, {}, {}
    for acct, cur, b, e, n in sums.iter_rows():
        billed[(acct, cur)] = int(b)
        effective[(acct, cur)] = int(e)
        rows[(acct, cur)] = int(n)
        dups[(acct, cur)] = 0
    return Piece(day=day, frame=frame, billed=billed, effective=effective, rows=rows, duplicates=dups)
