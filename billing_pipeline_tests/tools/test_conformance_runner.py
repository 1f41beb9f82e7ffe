"""The focus-validator runner: report parsing (pure), file preparation, and real validator runs.

The validator runs need `focus-validator` (CI installs it in `.fv-venv`; locally point
FOCUS_VALIDATOR at one). Each run takes ~5 s, so the module makes four.

`correct_focus_frame()` is the recipe the normalizer must follow for FOCUS 1.2: every row is
spec-correct, and focus-validator 2.2.1 passes it with no failure other than its own known
defects (billing_pipeline.tools.conformance.KNOWN_VALIDATOR_DEFECTS).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from billing_pipeline.tools.conformance import (
    KNOWN_VALIDATOR_DEFECTS,
    RuleFailure,
    ValidatorError,
    ValidatorReport,
    apply_known_defect_waivers,
    check_frame,
    find_validator,
    format_summary,
    main,
    parse_validator_output,
    prepare_focus_file,
    run_validator,
)

# --------------------------------------------------------------------------------------------
# The hand-written, spec-correct FOCUS 1.2 dataset
# --------------------------------------------------------------------------------------------

UTC = dt.UTC
MONEY = pl.Decimal(38, 10)
TS = pl.Datetime("us", "UTC")
BP_START = dt.datetime(2026, 10, 1, tzinfo=UTC)
BP_END = dt.datetime(2026, 11, 1, tzinfo=UTC)
HOUR = dt.datetime(2026, 10, 5, 10, tzinfo=UTC)
SP_ARN = "arn:aws:savingsplans::123456789012:savingsplan/sp-0abc"
MONEY_COLUMNS = {
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "ListUnitPrice",
    "ContractedUnitPrice",
    "PricingQuantity",
    "ConsumedQuantity",
    "CommitmentDiscountQuantity",
    "PricingCurrencyListUnitPrice",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
}
TIME_COLUMNS = {"BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"}

# Every row carries every FOCUS 1.2 column (absent = null). ProviderName == InvoiceIssuerName:
# the validator reads a difference as "paid to a third party" and then demands BilledCost 0.
BASE: dict[str, Any] = {
    "BillingAccountId": "123456789012",
    "BillingAccountName": "Acme Payer",
    "BillingAccountType": "Billing Account",
    "SubAccountId": "210987654321",
    "SubAccountName": "acme-prod",
    "SubAccountType": "Member Account",
    "BillingCurrency": "USD",
    "PricingCurrency": "USD",
    "BillingPeriodStart": BP_START,
    "BillingPeriodEnd": BP_END,
    "ChargePeriodStart": HOUR,
    "ChargePeriodEnd": HOUR + dt.timedelta(hours=1),
    "ProviderName": "AWS",
    "PublisherName": "AWS",
    "InvoiceIssuerName": "AWS",
    "InvoiceId": "EUINUS26-000123",
    "ChargeClass": None,
    "CapacityReservationId": None,
    "CapacityReservationStatus": None,
    "AvailabilityZone": None,
    "RegionId": None,
    "RegionName": None,
    "ResourceId": None,
    "ResourceName": None,
    "ResourceType": None,
    "SkuId": None,
    "SkuPriceId": None,
    "SkuMeter": None,
    "SkuPriceDetails": None,
    "Tags": None,
    "PricingCategory": None,
    "PricingQuantity": None,
    "PricingUnit": None,
    "ListUnitPrice": None,
    "ContractedUnitPrice": None,
    "PricingCurrencyListUnitPrice": None,
    "PricingCurrencyContractedUnitPrice": None,
    "ConsumedQuantity": None,
    "ConsumedUnit": None,
    "CommitmentDiscountId": None,
    "CommitmentDiscountName": None,
    "CommitmentDiscountCategory": None,
    "CommitmentDiscountType": None,
    "CommitmentDiscountStatus": None,
    "CommitmentDiscountQuantity": None,
    "CommitmentDiscountUnit": None,
    "x_UsageType": None,
    "x_Operation": None,
}
# One ServiceCategory (and ServiceSubcategory) per ServiceName across ALL rows, tax/credit included.
EC2 = {
    "ServiceName": "Amazon Elastic Compute Cloud",
    "ServiceCategory": "Compute",
    "ServiceSubcategory": "Virtual Machines",
}
S3 = {
    "ServiceName": "Amazon Simple Storage Service",
    "ServiceCategory": "Storage",
    "ServiceSubcategory": "Object Storage",
}
SAVINGS_PLANS = {
    "ServiceName": "Savings Plans for AWS Compute usage",
    "ServiceCategory": "Compute",
    "ServiceSubcategory": "Other (Compute)",
}
US_EAST_1 = {"RegionId": "us-east-1", "RegionName": "US East (N. Virginia)"}
COMMITMENT = {
    "CommitmentDiscountId": SP_ARN,
    "CommitmentDiscountName": "sp-compute-1y",
    "CommitmentDiscountCategory": "Spend",
    "CommitmentDiscountType": "Compute Savings Plan",
    "CommitmentDiscountUnit": "USD",
}
EC2_SKU = {
    "SkuId": "DQ578CGN99KG6ECF",
    "SkuPriceId": "DQ578CGN99KG6ECF.JRTCKXETXF.6YS6EN2CT7",
    "SkuMeter": "BoxUsage",
}
SP_SKU = {"SkuId": "SP-COMPUTE-1Y-NU", "SkuPriceId": "SP-COMPUTE-1Y-NU.RECURRING", "SkuMeter": "ComputeSP:1yrNoUpfront"}
WHOLE_PERIOD = {"ChargePeriodStart": BP_START, "ChargePeriodEnd": BP_END}


def priced(qty: str, unit: str, list_price: str, contracted_price: str, billed: str, effective: str) -> dict[str, Any]:
    """Usage/Purchase pricing: unit prices x PricingQuantity == costs; PricingCurrency* = billing ones."""
    q, lp, cp = Decimal(qty), Decimal(list_price), Decimal(contracted_price)
    return {
        "PricingQuantity": q,
        "PricingUnit": unit,
        "ListUnitPrice": lp,
        "ListCost": q * lp,
        "ContractedUnitPrice": cp,
        "ContractedCost": q * cp,
        "BilledCost": Decimal(billed),
        "EffectiveCost": Decimal(effective),
        "PricingCurrencyListUnitPrice": lp,
        "PricingCurrencyContractedUnitPrice": cp,
        "PricingCurrencyEffectiveCost": Decimal(effective),
    }


def unpriced(amount: str) -> dict[str, Any]:
    """Tax/Credit/Correction: all four costs equal, no unit prices, no quantities."""
    a = Decimal(amount)
    return {"BilledCost": a, "EffectiveCost": a, "ListCost": a, "ContractedCost": a, "PricingCurrencyEffectiveCost": a}


def correct_rows() -> list[dict[str, Any]]:
    usage = {"ChargeCategory": "Usage", "ChargeFrequency": "Usage-Based"}
    return [
        # 1. on-demand EC2 hour
        {
            **BASE,
            **EC2,
            **US_EAST_1,
            **EC2_SKU,
            **usage,
            **priced("1", "Hours", "0.096", "0.096", "0.096", "0.096"),
            "PricingCategory": "Standard",
            "ChargeDescription": "$0.096 per On Demand Linux m5.large Instance Hour",
            "AvailabilityZone": "us-east-1a",
            "ResourceId": "i-0123456789abcdef0",
            "ResourceName": "web-1",
            "ResourceType": "Virtual Machine",
            "ConsumedQuantity": Decimal("1"),
            "ConsumedUnit": "Hours",
            "SkuPriceDetails": '{"x_InstanceType": "m5.large", "x_OperatingSystem": "Linux"}',
            "Tags": '{"env": "prod", "team": "web"}',
            "x_UsageType": "USE1-BoxUsage:m5.large",
            "x_Operation": "RunInstances",
        },
        # 2. S3 storage with a negotiated (EDP) price below list
        {
            **BASE,
            **S3,
            **US_EAST_1,
            **usage,
            **priced("10", "GB-Months", "0.023", "0.0207", "0.207", "0.207"),
            "PricingCategory": "Standard",
            "ChargeDescription": "$0.023 per GB - first 50 TB / month of storage used",
            "ResourceId": "arn:aws:s3:::acme-logs",
            "ResourceName": "acme-logs",
            "ResourceType": "Bucket",
            "ConsumedQuantity": Decimal("10"),
            "ConsumedUnit": "GB-Months",
            "SkuId": "WP9ANXZGBYYSGJEA",
            "SkuPriceId": "WP9ANXZGBYYSGJEA.JRTCKXETXF.PGHJ3S3EYE",
            "SkuMeter": "TimedStorage-ByteHrs",
            "x_UsageType": "TimedStorage-ByteHrs",
            "x_Operation": "StandardStorage",
        },
        # 3. S3 requests
        {
            **BASE,
            **S3,
            **US_EAST_1,
            **usage,
            **priced("1000", "Requests", "0.000005", "0.000005", "0.005", "0.005"),
            "PricingCategory": "Standard",
            "ChargeDescription": "$0.005 per 1,000 PUT requests",
            "ResourceId": "arn:aws:s3:::acme-logs",
            "ResourceName": "acme-logs",
            "ResourceType": "Bucket",
            "ConsumedQuantity": Decimal("1000"),
            "ConsumedUnit": "Requests",
            "SkuId": "RVKXB4HCQQXC4V7U",
            "SkuPriceId": "RVKXB4HCQQXC4V7U.JRTCKXETXF.6YS6EN2CT7",
            "SkuMeter": "Requests-Tier1",
            "Tags": '{"env": "prod"}',
            "x_UsageType": "Requests-Tier1",
            "x_Operation": "PutObject",
        },
        # 4. purchase of the commitment (monthly fee of a no-upfront Savings Plan): EffectiveCost 0,
        #    ChargeFrequency not Usage-Based, ResourceId = the commitment, no Status, no consumption
        {
            **BASE,
            **SAVINGS_PLANS,
            **COMMITMENT,
            **SP_SKU,
            **WHOLE_PERIOD,
            **priced("730", "Hours", "1", "1", "730", "0"),
            "ChargeCategory": "Purchase",
            "ChargeFrequency": "Recurring",
            "PricingCategory": "Standard",
            "ChargeDescription": "1 year No Upfront Compute Savings Plan",
            "ResourceId": SP_ARN,
            "ResourceType": "Savings Plan",
            "CommitmentDiscountQuantity": Decimal("730"),
            "x_UsageType": "ComputeSP:1yrNoUpfront",
        },
        # 5. EC2 hour covered by the commitment: BilledCost 0, amortized EffectiveCost, Status Used
        {
            **BASE,
            **EC2,
            **US_EAST_1,
            **COMMITMENT,
            **EC2_SKU,
            **usage,
            **priced("1", "Hours", "0.096", "0.096", "0", "0.062"),
            "PricingCategory": "Committed",
            "ChargeDescription": "Compute Savings Plan covered usage m5.large",
            "AvailabilityZone": "us-east-1b",
            "ResourceId": "i-0fedcba9876543210",
            "ResourceType": "Virtual Machine",
            "CommitmentDiscountStatus": "Used",
            "CommitmentDiscountQuantity": Decimal("0.062"),
            "ConsumedQuantity": Decimal("1"),
            "ConsumedUnit": "Hours",
            "SkuPriceDetails": '{"x_InstanceType": "m5.large"}',
            "Tags": '{"env": "prod", "team": "api"}',
            "x_UsageType": "USE1-BoxUsage:m5.large",
            "x_Operation": "RunInstances",
        },
        # 6. unused part of the commitment for that hour: Usage, Status Unused, no ConsumedQuantity
        {
            **BASE,
            **SAVINGS_PLANS,
            **COMMITMENT,
            **SP_SKU,
            **usage,
            **priced("0.938", "Hours", "1", "1", "0", "0.938"),
            "PricingCategory": "Committed",
            "ChargeDescription": "Unused Compute Savings Plan commitment",
            "ResourceId": SP_ARN,
            "ResourceType": "Savings Plan",
            "CommitmentDiscountStatus": "Unused",
            "CommitmentDiscountQuantity": Decimal("0.938"),
            "x_UsageType": "ComputeSP:1yrNoUpfront",
        },
        # 7. tax: no SKU, prices, quantities or PricingCategory; same ServiceName->ServiceCategory
        {
            **BASE,
            **EC2,
            **WHOLE_PERIOD,
            **unpriced("1.25"),
            "ChargeCategory": "Tax",
            "ChargeFrequency": "Recurring",
            "ChargeDescription": "Tax for product code AmazonEC2",
        },
        # 8. credit
        {
            **BASE,
            **EC2,
            **WHOLE_PERIOD,
            **unpriced("-5"),
            "ChargeCategory": "Credit",
            "ChargeFrequency": "One-Time",
            "ChargeDescription": "AWS Activate credit",
        },
        # 9. correction of the previous (already invoiced) billing period
        {
            **BASE,
            **EC2,
            **US_EAST_1,
            **EC2_SKU,
            **usage,
            **unpriced("-0.096"),
            "ChargeClass": "Correction",
            "PricingCategory": "Standard",
            "ChargeDescription": "Correction: m5.large hour billed twice in September",
            "ChargePeriodStart": dt.datetime(2026, 9, 30, 23, tzinfo=UTC),
            "ChargePeriodEnd": BP_START,
            "ResourceId": "i-0123456789abcdef0",
            "ResourceName": "web-1",
            "ResourceType": "Virtual Machine",
            "x_UsageType": "USE1-BoxUsage:m5.large",
            "x_Operation": "RunInstances",
        },
    ]


def correct_focus_frame() -> pl.DataFrame:
    """The rows as the normalizer hands them over: Decimal money, UTC datetimes, an internal column."""
    rows = correct_rows()
    columns = list(dict.fromkeys(name for row in rows for name in row))
    schema = {c: MONEY if c in MONEY_COLUMNS else TS if c in TIME_COLUMNS else pl.String for c in columns}
    frame = pl.DataFrame([[row.get(c) for c in columns] for row in rows], schema=schema, orient="row")
    return frame.with_columns(pl.lit("run-0001").alias("ingest_run_id"))


def broken_focus_frame() -> pl.DataFrame:
    """The correct frame with a null BilledCost on row 0 and a SkuId on the tax row."""
    first, tax = pl.int_range(pl.len()) == 0, pl.col("ChargeCategory") == "Tax"
    return correct_focus_frame().with_columns(
        pl.when(first).then(None).otherwise(pl.col("BilledCost")).alias("BilledCost"),
        pl.when(tax).then(pl.lit("TAXSKU")).otherwise(pl.col("SkuId")).alias("SkuId"),
    )


# --------------------------------------------------------------------------------------------
# Parsing captured validator output (pure)
# --------------------------------------------------------------------------------------------

PASSING_OUTPUT = """
=== Validation Results ===
Total: 6 | Pass: 4 | Fail: 0 | Skipped: 2
⏭️ AvailabilityZone-C-003-C: SKIPPED  (violations=0, reason=Rule skipped - validation is dynamic and cannot be pre-generated, msg=Rule skipped - validation is dynamic and cannot be pre-generated)
⏭️ ListUnitPrice-C-001-M: SKIPPED  (violations=0, reason=rule not applicable, msg=Rule skipped - not applicable to current dataset or configuration, 1.1ms)
✅ BilledCost-C-001-M: PASS  (violations=0, 0.4ms)
✅ BilledCost-C-003-M: PASS  (violations=0, 7.6ms)
✅ ChargeCategory-C-003-M: PASS  (violations=0, msg=ChargeCategory-C-003-M: OR passed - satisfied by rules: [check_value#1])
✅ CostAndUsage-D-006-M: PASS  (violations=0, 2.7ms)
"""  # noqa: E501 (captured validator output, kept verbatim)

FAILING_OUTPUT = """
=== Validation Results ===
Total: 7 | Pass: 2 | Fail: 4 | Skipped: 1
⏭️ BilledCost-C-004-M: SKIPPED  (violations=0, reason=Rule skipped - CheckDecimalValue validation is not yet implemented, msg=Rule skipped - CheckDecimalValue validation is not yet implemented)
✅ BilledCost-C-001-M: PASS  (violations=0, 0.4ms)
✅ CostAndUsage-D-006-M: PASS  (violations=0, 2.7ms)
❌ BilledCost-C-000-M: FAIL  (violations=1, msg=BilledCost-C-000-M: AND failed - failed child rules: [BilledCost-C-003-M])
❌ BilledCost-C-003-M: FAIL  (violations=1, msg=BilledCost MUST NOT be NULL., 2.0ms)
❌ CostAndUsage-D-033-O: FAIL  (violations=1, msg=Column 'InvoiceId' RECOMMENDED be present in the table. [Upstream dependency failed: CostAndUsage-D-042-O (missing column)], 2.7ms)
❌ InvoiceId-C-004-C: FAIL  (violations=9, msg=InvoiceId MUST be NULL., 2.1ms)

--- Failures ---
- BilledCost-C-003-M: violations=1; BilledCost MUST NOT be NULL.
  MustSatisfy: BilledCost MUST NOT be null.
- CostAndUsage-D-033-O: violations=1; Column 'InvoiceId' RECOMMENDED be present in the table. [Upstream dependency failed: CostAndUsage-D-042-O (missing column)]
  MustSatisfy: InvoiceId is RECOMMENDED to be present in a FOCUS dataset.
- InvoiceId-C-004-C: violations=9; InvoiceId MUST be NULL.
  MustSatisfy: InvoiceId MUST be null when the charge is not associated either with an invoice or with a pre-generated provisional invoice.
- BilledCost-C-000-M: violations=1; BilledCost-C-000-M: AND failed - failed child rules: [BilledCost-C-003-M]
  MustSatisfy: The BilledCost column adheres to the following requirements:
"""  # noqa: E501 (captured validator output, kept verbatim)

# What the console outputter prints when stdout cannot encode emoji.
ASCII_OUTPUT = """
=== Validation Results ===
Total: 3 | Pass: 1 | Fail: 1 | Skipped: 1
[SKIP] Tags-C-004-M: SKIPPED  (violations=0, reason=Rule skipped - validation is dynamic and cannot be pre-generated, msg=Rule skipped - validation is dynamic and cannot be pre-generated)
[PASS] Tags-C-001-M: PASS  (violations=0, 3.0ms)
[FAIL] RegionName-C-002-M: FAIL  (violations=1, msg=RegionName MUST contain only ASCII characters., 2.2ms)
"""  # noqa: E501 (captured validator output, kept verbatim)


def test_parse_totals_without_failures() -> None:
    report = parse_validator_output(PASSING_OUTPUT)
    assert (report.total, report.passed, report.failed, report.skipped) == (6, 4, 0, 2)
    assert report.failed_rules == [] and report.ok
    assert report.skip_reasons == {
        "Rule skipped - validation is dynamic and cannot be pre-generated": 1,
        "rule not applicable": 1,
    }


def test_parse_failures_section_with_messages_and_must_satisfy() -> None:
    report = parse_validator_output(FAILING_OUTPUT)
    assert (report.total, report.passed, report.failed, report.skipped) == (7, 2, 4, 1)
    ids = [rule_id for rule_id, _ in report.failed_rules]
    assert ids == ["BilledCost-C-003-M", "CostAndUsage-D-033-O", "InvoiceId-C-004-C", "BilledCost-C-000-M"]
    first = report.failures[0]
    assert first.message == "BilledCost MUST NOT be NULL." and first.violations == 1
    assert first.must_satisfy == "BilledCost MUST NOT be null."
    parent = report.failures[-1]
    assert parent.composite and parent.failed_children == ("BilledCost-C-003-M",)
    assert [f.rule_id for f in report.root_failures] == ids[:3]
    assert not report.ok


def test_parse_ascii_icons_without_failures_section() -> None:
    report = parse_validator_output(ASCII_OUTPUT)
    assert (report.passed, report.failed, report.skipped) == (1, 1, 1)
    assert report.failed_rules == [("RegionName-C-002-M", "RegionName MUST contain only ASCII characters.")]
    assert report.failures[0].violations == 1


def test_parse_rejects_output_without_totals() -> None:
    with pytest.raises(ValidatorError, match="no totals"):
        parse_validator_output("Traceback (most recent call last):\n  ...\nduckdb.BinderException: boom\n")


def test_parse_rejects_failure_count_it_cannot_account_for() -> None:
    text = FAILING_OUTPUT.replace("Fail: 4", "Fail: 5")
    with pytest.raises(ValidatorError, match="5 failed rules but 4"):
        parse_validator_output(text)


def _report(*failures: RuleFailure) -> ValidatorReport:
    return ValidatorReport(
        passed=0,
        failed=len(failures),
        skipped=0,
        total=len(failures),
        failed_rules=[(f.rule_id, f.message) for f in failures],
        raw_output="",
        failures=list(failures),
    )


def test_known_defects_are_waived_only_when_the_intended_rule_holds() -> None:
    status = RuleFailure("CommitmentDiscountStatus-C-004-C", "CommitmentDiscountStatus MUST NOT be NULL.", 2)
    parent = RuleFailure(
        "CommitmentDiscountStatus-C-002-C",
        "CommitmentDiscountStatus-C-002-C: AND failed - failed child rules: [CommitmentDiscountStatus-C-004-C]",
    )
    invoice = RuleFailure("InvoiceId-C-004-C", "InvoiceId MUST be NULL.", 3)
    real = RuleFailure("BilledCost-C-003-M", "BilledCost MUST NOT be NULL.", 1)
    good = pl.LazyFrame(
        {
            "ChargeCategory": ["Usage", "Usage", "Tax"],
            "CommitmentDiscountId": ["sp-1", None, None],
            "CommitmentDiscountStatus": ["Used", None, None],
        }
    )
    report = apply_known_defect_waivers(_report(status, parent, invoice, real), good)
    assert {f.rule_id for f in report.waived} == {status.rule_id, parent.rule_id, invoice.rule_id}
    assert [f.rule_id for f in report.blocking_failures] == [real.rule_id]

    # A commitment usage row without a status breaks the rule as FOCUS means it: not waived.
    bad = good.with_columns(pl.lit(None, pl.String).alias("CommitmentDiscountStatus"))
    report = apply_known_defect_waivers(_report(status, parent), bad)
    assert report.waived == [] and "broken on 1 rows" in report.blocking_failures[0].note

    # InvoiceId halves are waived only while the validator passed their OR parent.
    or_parent = RuleFailure("InvoiceId-C-003-C", "InvoiceId-C-003-C: OR failed - all child rules failed: [x#1]")
    report = apply_known_defect_waivers(_report(invoice, or_parent), good)
    assert report.waived == []
    assert set(KNOWN_VALIDATOR_DEFECTS) >= {"InvoiceId-C-004-C", "InvoiceId-C-005-C"}


def test_prepare_focus_file_types_and_columns(tmp_path: Path) -> None:
    frame = correct_focus_frame().with_columns(
        pl.col("ChargePeriodStart").dt.replace_time_zone(None).dt.cast_time_unit("ns"),
        pl.struct(env=pl.lit("prod")).alias("Tags"),
    )
    out = prepare_focus_file(frame.lazy(), tmp_path / "focus.parquet")
    written = pl.read_parquet(out)
    assert "ingest_run_id" not in written.columns
    assert written.columns[-2:] == ["x_UsageType", "x_Operation"]
    assert written.schema["ChargePeriodStart"] == pl.Datetime("us", "UTC")
    assert written["ChargePeriodStart"][0] == HOUR
    assert written.schema["BilledCost"] == pl.Float64
    assert written["Tags"][0] == '{"env":"prod"}'
    assert written.height == frame.height
    with pytest.raises(ValueError, match="Parquet"):
        prepare_focus_file(frame, tmp_path / "focus.csv")


def test_empty_input_is_refused_before_running_the_validator() -> None:
    with pytest.raises(ValueError, match="no FOCUS rows"):
        check_frame(correct_focus_frame().head(0))


FAKE_VALIDATOR = """#!/bin/sh
# Stands in for focus-validator: checks the working dir it is given, then acts out FAKE_MODE.
[ -f focus_validator/rules/currency_codes.csv ] || { echo "currency_codes.csv missing" >&2; exit 3; }
echo "$@" > "$FAKE_ARGS"
case "$FAKE_MODE" in
  ok) cat "$FAKE_OUTPUT" ;;
  crash) echo "Traceback (most recent call last): duckdb.BinderException" >&2; exit 1 ;;
  silent) echo "nothing useful" ;;
esac
"""


@pytest.fixture
def fake_validator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A venv-shaped folder holding a shell-script validator (no Python 3.12 needed)."""
    site = tmp_path / "fv" / "lib" / "python3.12" / "site-packages"
    (site / "focus_validator" / "rules").mkdir(parents=True)
    (site / "focus_validator" / "rules" / "currency_codes.csv").write_text("currency_codes\nUSD\n")
    (site / "focus_validator-2.2.1.dist-info").mkdir()
    exe = tmp_path / "fv" / "bin" / "focus-validator"
    exe.parent.mkdir()
    exe.write_text(FAKE_VALIDATOR)
    exe.chmod(0o755)
    (tmp_path / "output.txt").write_text(FAILING_OUTPUT)
    monkeypatch.setenv("FOCUS_VALIDATOR", str(exe))
    monkeypatch.setenv("FAKE_OUTPUT", str(tmp_path / "output.txt"))
    monkeypatch.setenv("FAKE_ARGS", str(tmp_path / "args.txt"))
    return tmp_path


def test_run_validator_invocation_and_error_paths(fake_validator: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = prepare_focus_file(correct_focus_frame(), fake_validator / "focus.parquet")
    monkeypatch.setenv("FAKE_MODE", "ok")
    report = run_validator(data)
    assert report.validator_version == "2.2.1" and report.failed == 4
    assert [f.rule_id for f in report.waived] == ["InvoiceId-C-004-C"]  # its OR parent did not fail
    args = (fake_validator / "args.txt").read_text().split()
    assert args[:6] == [
        "--data-file",
        str(data),
        "--validate-version",
        "1.2",
        "--block-download",
        "--applicability-criteria",
    ]
    assert "COMMITMENT_DISCOUNT_SUPPORTED" in args[6].split(",")

    monkeypatch.setenv("FAKE_MODE", "crash")
    with pytest.raises(ValidatorError, match="(?s)exited 1.*BinderException"):
        run_validator(data)
    monkeypatch.setenv("FAKE_MODE", "silent")
    with pytest.raises(ValidatorError, match="no totals"):
        run_validator(data)


def test_find_validator_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FOCUS_VALIDATOR", str(tmp_path / "nope" / "focus-validator"))
    with pytest.raises(FileNotFoundError, match="make validator"):
        find_validator()


# --------------------------------------------------------------------------------------------
# Real validator runs
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def correct_report() -> ValidatorReport:
    find_validator()  # fail loudly, with the install hint, if CI did not install it
    return check_frame(correct_focus_frame())


def test_correct_dataset_has_no_failures_but_known_validator_defects(correct_report: ValidatorReport) -> None:
    report = correct_report
    assert report.validator_version == "2.2.1"
    assert report.passed > 300, format_summary(report)
    assert report.blocking_failures == [], format_summary(report)
    assert report.ok
    # What 2.2.1 still fails on this data is its own defects (and their AND parents), nothing else.
    leaves = {f.rule_id for f in report.waived if not f.composite}
    assert leaves <= set(KNOWN_VALIDATOR_DEFECTS), leaves
    # The applicability criteria switched on the commitment, SKU and sub-account rules.
    assert "rule not applicable" not in report.skip_reasons


def test_broken_dataset_fails_on_the_broken_columns() -> None:
    report = check_frame(broken_focus_frame())
    assert not report.ok
    failed = {f.rule_id: f for f in report.root_failures}
    assert "BilledCost-C-003-M" in failed, format_summary(report)
    assert "BilledCost" in failed["BilledCost-C-003-M"].message
    assert "SkuId-C-004-C" in failed, format_summary(report)


def test_cli_on_a_lake_partition(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partition = tmp_path / "lake" / "normalized_line_items" / "date=2026-10-05"
    partition.mkdir(parents=True)
    frame = correct_focus_frame()
    frame.head(4).write_parquet(partition / "part-0.parquet")
    frame.slice(4).write_parquet(partition / "part-1.parquet")
    assert main(["--input", str(partition.parent), "--fail-on-failures"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("focus-validator 2.2.1 FOCUS 1.2: ")
    assert "blocking failures: 0" in out

    broken = tmp_path / "broken.parquet"
    broken_focus_frame().write_parquet(broken)
    assert main(["--input", str(broken), "--fail-on-failures"]) == 1
    out = capsys.readouterr().out
    assert "FAIL BilledCost-C-003-M" in out
