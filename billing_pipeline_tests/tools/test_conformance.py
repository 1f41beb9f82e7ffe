"""FOCUS conformance of `normalized_line_items`, judged by focus-validator 2.2.1 itself.

One module fixture builds the lakes `python -m billing_pipeline.tools.conformance --all-fixtures` builds
(public AWS legacy CUR sample, public FOCUS 1.0 sample, the generator's three exports) through the
spine's own slice builders and validates them: about 40 s, the validator runs in parallel.
"Zero failed rules" means zero *blocking* failures: failed rules minus the documented
focus-validator defects whose rule, as FOCUS words it, holds on the data.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from billing_pipeline.platform.focus import FOCUS_COLUMN_NAMES
from billing_pipeline.tools import conformance
from billing_pipeline.tools.conformance import (
    DatasetCheck,
    RuleFailure,
    ValidatorReport,
    apply_known_defect_waivers,
    check_fixtures,
    check_vacuous_rules,
    empty_strings_as_null,
    find_validator,
    main,
)

from ..conftest import FOCUS_SAMPLE

# The FOCUS 1.0 sample's failures that normalizing cannot fix: each is in the data as delivered
# (README, "FOCUS conformance", lists why). A change here must change the README table too.
FOCUS_SAMPLE_INHERENT = {
    "BillingAccountName-C-003-C",  # 7 Oracle rows: "" as the name, i.e. no name
    "BillingAccountType-C-005-C",  # Oracle account ids do not say what kind of account they are
    "ConsumedQuantity-C-004-C",  # 2 Adjustment rows carry a ConsumedQuantity
    "ConsumedUnit-C-003-O",  # `GiB/Second-Months` has no FOCUS Unit Format spelling
    "PricingUnit-C-003-O",  # same unit
    "ContractedCost-C-003-M",  # 7 Oracle rows without ContractedCost (NULL)
    "ContractedCost-C-004-M",
    "ContractedUnitPrice-C-009-C",  # a Credit row with a negative ContractedUnitPrice
    "RegionName-C-004-C",  # RegionName without RegionId
    "RegionName-C-005-C",  # RegionId without RegionName
    "ResourceType-C-004-C",  # ResourceType without ResourceId
    "ResourceType-C-005-C",  # ResourceId without ResourceType
    "ServiceName-C-005-C",  # Amazon Elastic Compute Cloud under Compute and under Storage
    "ServiceName-C-008-C",  # hence two subcategories for it as well
    "SkuMeter-C-005-C",  # FOCUS 1.0 has no meter and nothing in a row determines one
}
# Columns FOCUS 1.1/1.2 added that the FOCUS 1.0 sample lacks.
COLUMNS_ADDED_BY_12 = (
    "BillingAccountType",
    "SubAccountType",
    "ServiceSubcategory",
    "InvoiceId",
    "PricingCurrency",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingCurrencyContractedUnitPrice",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountUnit",
    "SkuMeter",
    "SkuPriceDetails",
)


@pytest.fixture(scope="module")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance")


@pytest.fixture(scope="module")
def checks(fixtures_dir: Path) -> dict[str, DatasetCheck]:
    find_validator()  # fail loudly, with the install hint, if CI did not install it
    return {check.name: check for check in check_fixtures(fixtures_dir)}


def test_aws_legacy_cur_sample_has_no_blocking_failure(checks: dict[str, DatasetCheck]) -> None:
    check = checks["aws-legacy-cur-sample"]
    assert check.rows == 1281 and check.days == 14
    assert check.report.validator_version == "2.2.1"
    assert check.report.blocking_failures == [], check.summary()
    assert check.ok
    assert check.report.passed > 350, check.summary()
    # what the validator cannot evaluate itself holds too on this sample
    assert not any(check.report.unchecked.values()), check.report.unchecked


@pytest.mark.parametrize("source", ["aws_cur2", "aws_cur", "focus", "gcp", "azure"])
def test_generator_data_has_no_blocking_failure(checks: dict[str, DatasetCheck], source: str) -> None:
    check = checks[f"generator-{source}"]
    assert check.rows > 0 and check.days == conformance.GENERATOR_DAYS
    assert check.report.blocking_failures == [], check.summary()
    assert check.ok


@pytest.mark.parametrize(
    "name", ["gcp-koku-samples", "azure-ea-actual-sample", "azure-ea-amortized-sample", "azure-ea-converters-sample"]
)
def test_gcp_and_azure_samples_have_no_blocking_failure(checks: dict[str, DatasetCheck], name: str) -> None:
    check = checks[name]
    assert check.rows > 0 and check.days > 0
    assert check.report.blocking_failures == [], check.summary()
    assert check.ok


def test_focus_sample_fails_no_rule_its_input_passes(checks: dict[str, DatasetCheck]) -> None:
    check = checks["focus-1.0-sample"]
    assert check.baseline is not None and check.baseline_nulls is not None
    assert (check.baseline.passed, check.baseline.failed) == (235, 133)  # the sample as delivered
    assert check.regressions == [], check.summary()
    failing_on_output = {f.rule_id for f in check.report.blocking_failures}
    failing_on_input = {f.rule_id for f in check.baseline.failures}
    # Only the BillingAccountName rules pass on the input, and only because of "" standing for a
    # missing name (FOCUS NullHandling forbids that); read as null, the input fails them too.
    assert failing_on_output - failing_on_input == {"BillingAccountName-C-000-M", "BillingAccountName-C-003-C"}
    assert set(check.masked_by_placeholders) == failing_on_output - failing_on_input
    assert {f.rule_id for f in check.report.root_failures} == FOCUS_SAMPLE_INHERENT, check.summary()
    assert len(check.fixed) >= 95  # missing 1.2 columns, "" as null, issuer names, unit spellings


def test_focus_sample_gets_the_12_columns_where_its_rows_determine_them(fixtures_dir: Path) -> None:
    lake = fixtures_dir / "focus-sample" / "lake" / "normalized_line_items"
    frame = pl.read_parquet(sorted(lake.rglob("*.parquet")))
    assert set(COLUMNS_ADDED_BY_12) <= set(frame.columns) and set(FOCUS_COLUMN_NAMES) <= set(frame.columns)
    raw = pl.read_csv(FOCUS_SAMPLE, infer_schema=False, null_values=["NULL"])
    assert frame.height == raw.height
    aws, microsoft = pl.col("ProviderName") == "AWS", pl.col("ProviderName") == "Microsoft"
    assert frame.filter(aws | microsoft)["BillingAccountType"].null_count() == 0
    assert frame.filter(pl.col("SubAccountId").is_not_null())["SubAccountType"].null_count() == 0
    assert set(frame.filter(microsoft)["SubAccountType"]) == {"Subscription"}
    assert set(frame.filter(pl.col("ProviderName") == "Oracle")["SubAccountType"]) == {"Tenancy"}
    assert frame["ServiceSubcategory"].null_count() == 0
    ec2 = frame.filter(
        (pl.col("ServiceName") == "Amazon Elastic Compute Cloud") & (pl.col("ServiceCategory") == "Compute")
    )
    assert set(ec2["ServiceSubcategory"]) == {"Virtual Machines"}
    assert frame["PricingCurrency"].null_count() == 0
    assert frame.filter(pl.col("PricingCurrencyEffectiveCost") != pl.col("EffectiveCost")).is_empty()
    # AWS's legal entities invoice as AWS; the entity itself is kept, costs are untouched
    assert set(frame.filter(aws)["InvoiceIssuerName"]) == {"AWS"}
    assert "Amazon Web Services EMEA SARL" in set(frame.filter(aws)["x_InvoicingEntity"])
    assert frame["BilledCost"].sum() == raw["BilledCost"].cast(frame.schema["BilledCost"]).sum()
    # units: canonical spellings, the delivered one kept
    assert "GB-Seconds" in set(frame["PricingUnit"]) and "Lambda-GB-Seconds" in set(frame["x_PricingUnit"])
    # what no 1.0 row determines stays null rather than invented
    for column in ("CapacityReservationId", "CommitmentDiscountQuantity", "SkuMeter", "SkuPriceDetails", "InvoiceId"):
        assert frame[column].null_count() == frame.height, column


def test_lake_cli_validates_one_day(fixtures_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = fixtures_dir / "aws-sample" / "lake"
    assert main(["--lake", str(lake), "--date", "2023-11-04", "--fail-on-failures"]) == 0
    out = capsys.readouterr().out
    first, second = out.splitlines()[:2]
    assert first == "normalized_line_items 2023-11-04 (every source): 226 rows"
    assert second.startswith("focus-validator 2.2.1 FOCUS 1.2: ")
    assert "blocking failures: 0 " in out
    assert main(["--lake", str(lake), "--date", "2023-12-24"]) == 2  # no such day
    assert "no normalized_line_items for 2023-12-24" in capsys.readouterr().err


def test_all_fixtures_cli_prints_a_line_per_dataset_and_gates(
    checks: dict[str, DatasetCheck], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = list(checks.values())
    monkeypatch.setattr(conformance, "check_fixtures", lambda workdir, **_: results)
    assert main(["--all-fixtures"]) == 0
    out = capsys.readouterr().out
    assert "[PASS] aws-legacy-cur-sample: 1281 rows, 14 days;" in out
    assert "failing on output but not on input: 0" in out
    assert out.rstrip().endswith("conformance: OK (11 datasets)")

    broken = ValidatorReport(1, 1, 0, 2, [("BilledCost-C-003-M", "x")], "", [RuleFailure("BilledCost-C-003-M", "x")])
    results = [DatasetCheck("aws-legacy-cur-sample", "d", 1, 1, broken)]
    monkeypatch.setattr(conformance, "check_fixtures", lambda workdir, **_: results)
    assert main(["--all-fixtures"]) == 1
    assert "conformance: FAIL aws-legacy-cur-sample" in capsys.readouterr().out


def _report(*failures: RuleFailure) -> ValidatorReport:
    return ValidatorReport(
        0, len(failures), 0, len(failures), [(f.rule_id, f.message) for f in failures], "", list(failures)
    )


def test_native_gate_compares_rule_by_rule_and_names_placeholder_passes() -> None:
    output = _report(RuleFailure("A-C-001-M", "a"), RuleFailure("B-C-001-M", "b"), RuleFailure("C-C-001-M", "c"))
    as_delivered = _report(RuleFailure("A-C-001-M", "a"))
    read_as_null = _report(RuleFailure("A-C-001-M", "a"), RuleFailure("B-C-001-M", "b"))
    check = DatasetCheck("native", "d", 1, 1, output, as_delivered, read_as_null)
    assert check.regressions == ["C-C-001-M"] and not check.ok
    assert check.masked_by_placeholders == ["B-C-001-M"]
    frame = pl.LazyFrame({"s": ["", " ", "x", None], "n": [1, 2, 3, 4]})
    assert empty_strings_as_null(frame).collect()["s"].to_list() == [None, None, "x", None]


def test_purchase_effective_cost_waiver_applies_to_non_commitment_purchases_only() -> None:
    failure = RuleFailure("EffectiveCost-C-005-C", "EffectiveCost MUST equal '0'.", 1)
    support_fee = pl.LazyFrame(
        {
            "ChargeCategory": ["Purchase", "Purchase"],
            "CommitmentDiscountId": [None, "arn:ri"],  # a support fee, an RI upfront fee
            "EffectiveCost": [394.7, 0.0],
        }
    )
    assert [f.rule_id for f in apply_known_defect_waivers(_report(failure), support_fee).waived] == [failure.rule_id]
    unamortized = support_fee.with_columns(pl.lit(6075.9).alias("EffectiveCost"))
    report = apply_known_defect_waivers(_report(failure), unamortized)
    assert report.waived == [] and "broken on 1 rows" in report.blocking_failures[0].note


def test_rules_the_validator_cannot_evaluate_are_checked_here() -> None:
    frame = pl.LazyFrame(
        {
            "ChargeCategory": ["Usage", "Usage", "Tax"],
            "ChargeClass": [None, "Correction", None],
            "CommitmentDiscountId": [None, None, None],
            "CommitmentDiscountQuantity": [None, None, None],
            "SkuId": [None, None, None],
            "PricingQuantity": [2.0, None, None],
            "ListUnitPrice": [0.5, None, None],
            "ListCost": [1.00000001, 3.0, 1.0],
        },
        schema_overrides={
            "CommitmentDiscountId": pl.String,
            "CommitmentDiscountQuantity": pl.Float64,
            "SkuId": pl.String,
        },
    )
    counts = check_vacuous_rules(frame)
    assert counts["SkuId-C-005-C"] == 1  # the regular Usage row; the correction and the tax are exempt
    assert counts["ListCost-C-009-C"] == 0  # within the source's rounding
    assert counts["CommitmentDiscountQuantity-C-005-C"] == 0
    assert "ContractedUnitPrice-C-011-C" not in counts  # its columns are absent
    off = frame.with_columns(pl.lit(1.1).alias("ListCost"))
    assert check_vacuous_rules(off)["ListCost-C-009-C"] == 1


def test_days_of_a_sample_are_its_usage_dates() -> None:
    days = conformance._days_of(FOCUS_SAMPLE, "ChargePeriodStart")
    assert days[0] == dt.date(2024, 9, 1) and len(days) == 30


def test_contract_rejects_status_values_the_validator_cannot_check(fixtures_dir: Path, tmp_path: Path) -> None:
    """2.2.1 checks CommitmentDiscountStatus against Active/Expired/Pending: the contract holds the line."""
    from billing_pipeline.platform.focus import FocusContractError, validate_focus_file

    source = next((fixtures_dir / "generator" / "lake" / "normalized_line_items").rglob("source=aws_cur2/*.parquet"))
    frame = pl.read_parquet(source)
    assert validate_focus_file(str(source)) == frame.height
    assert set(frame["CommitmentDiscountStatus"].drop_nulls()) == {"Used", "Unused"}
    broken = tmp_path / "broken.parquet"
    status = pl.col("CommitmentDiscountStatus")
    frame.with_columns(status.replace("Used", "Active")).write_parquet(broken)
    with pytest.raises(FocusContractError, match="CommitmentDiscountStatus"):
        validate_focus_file(str(broken))
