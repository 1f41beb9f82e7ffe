"""Run the FinOps Foundation `focus-validator` on normalized FOCUS output and read its verdict.

Why a wrapper: the validator (2.2.1, FOCUS 1.2 rules) needs Python 3.12 and `pyarrow<21`, so it
lives in its own venv (`<repo>/.fv-venv`, made by the Makefile) and is run as a subprocess. It
exits 0 even when rules fail, reads `focus_validator/rules/currency_codes.csv` relative to its
working directory and writes a log file there, so every run gets a fresh temp working dir and
its console report is parsed for the totals and the failed rule ids.

Verdict: a failed rule is *blocking* unless it is a documented focus-validator 2.2.1 defect
(KNOWN_VALIDATOR_DEFECTS) whose rule, as the FOCUS spec words it, holds on the data; "zero failed
rules" in this project means zero blocking failures. Rules 2.2.1 cannot evaluate at all
(VACUOUS_RULES) are checked here and reported beside the verdict, without gating it.

CLI::

    python -m billing_pipeline.tools.conformance --input FILE_OR_DIR [--fail-on-failures]
    python -m billing_pipeline.tools.conformance --lake LAKE --date YYYY-MM-DD [--source S] [--fail-on-failures]
    python -m billing_pipeline.tools.conformance --all-fixtures [--keep DIR]     # what CI runs

`--lake` validates one day of `<lake>/normalized_line_items/date=D/source=S/part-0.parquet` (all
sources, or one). `--all-fixtures` builds lakes with the spine's own slice builders from the public
AWS legacy CUR sample, the public FOCUS 1.0 sample, the public GCP (koku, rebuilt nested) and Azure
EA samples and (when importable) the project's generator (AWS, FOCUS, GCP, Azure),
validates each normalized dataset, and exits 1 on a blocking failure of AWS, GCP, Azure or generator data, or
on a rule that fails on the normalized FOCUS 1.0 sample but not on the sample itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from billing_pipeline.platform import focus
from billing_pipeline.platform.config import SourceConfig
from billing_pipeline.platform.storage import Store, join

REPO_ROOT = Path(__file__).resolve().parents[2]
VALIDATOR_ENV_VAR = "FOCUS_VALIDATOR"
DEFAULT_VALIDATOR = REPO_ROOT / ".fv-venv" / "bin" / "focus-validator"
DEFAULT_TIMEOUT_S = 900.0
INSTALL_HINT = (
    "install it with `make validator` (python3.12 -m venv .fv-venv && "
    ".fv-venv/bin/pip install 'focus-validator==2.2.1' 'pyarrow<21') "
    f"or point {VALIDATOR_ENV_VAR} at a focus-validator executable"
)

# Applicability criteria describe what the provider supports; a rule gated by a criterion that is
# not passed is reported SKIPPED ("rule not applicable"). With none passed (the validator's
# default), 131 of the 578 rules are skipped, among them every presence check for SkuId/SkuPriceId/
# ListUnitPrice/SubAccountId/RegionId/Tags/ResourceId and all commitment-discount rules. The cloud
# providers we ingest support all of these except VIRTUAL_CURRENCY_SUPPORTED (credits/tokens).
# Note: 2.2.1 applies a rule when ANY of its criteria is passed, so the PricingCurrency* presence
# rules gated by "PUBLIC_PRICE_LIST and VIRTUAL_CURRENCY" apply anyway: leaving it out or passing
# "ALL" gives the same verdict.
CLOUD_APPLICABILITY_CRITERIA: tuple[str, ...] = (
    "ACCOUNT_NAMING_SUPPORTED",
    "AVAILABILITY_ZONE_SUPPORTED",
    "BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED",
    "CAPACITY_RESERVATION_SUPPORTED",
    "COMMITMENT_DISCOUNT_SUPPORTED",
    "MULTIPLE_BILLING_ACCOUNT_TYPES_SUPPORTED",
    "MULTIPLE_PRICING_CATEGORIES_SUPPORTED",
    "MULTIPLE_SUB_ACCOUNT_TYPES_SUPPORTED",
    "NEGOTIATED_PRICING_SUPPORTED",
    "PRICING_BILLING_CURRENCY_DIFFERENCES_SUPPORTED",
    "PUBLIC_PRICE_LIST_SUPPORTED",
    "REGION_SUPPORTED",
    "RESOURCE_TYPE_ASSIGNMENT_SUPPORTED",
    "SUB_ACCOUNT_SUPPORTED",
    "TAGGING_SUPPORTED",
    "UNIT_PRICING_SUPPORTED",
    "USAGE_MEASUREMENT_SUPPORTED",
)

# FOCUS 1.2 CostAndUsage columns, by the type the validator checks them against: the project's own
# column table (billing_pipeline.platform.focus), so the contract and the conformance run cannot drift apart.
FOCUS_DECIMAL_COLUMNS: frozenset[str] = frozenset(c.name for c in focus.FOCUS_COLUMNS if c.dtype == focus.MONEY)
FOCUS_DATETIME_COLUMNS: frozenset[str] = frozenset(c.name for c in focus.FOCUS_COLUMNS if c.dtype == focus.TIMESTAMP)
FOCUS_STRING_COLUMNS: frozenset[str] = frozenset(c.name for c in focus.FOCUS_COLUMNS if c.dtype == focus.STRING)
FOCUS_COLUMNS: frozenset[str] = FOCUS_DECIMAL_COLUMNS | FOCUS_DATETIME_COLUMNS | FOCUS_STRING_COLUMNS
JSON_OBJECT_COLUMNS: frozenset[str] = frozenset({"Tags", "SkuPriceDetails"})


class ValidatorError(RuntimeError):
    """The validator could not be run, crashed, timed out or printed no totals."""


@dataclass(frozen=True)
class RuleFailure:
    """One FAIL line of the validator's report; `composite` = an AND/OR parent of other rules."""

    rule_id: str
    message: str
    violations: int | None = None
    must_satisfy: str = ""
    note: str = ""

    @property
    def composite(self) -> bool:
        return bool(re.match(rf"^{re.escape(self.rule_id)}: (AND|OR) failed", self.message))

    @property
    def failed_children(self) -> tuple[str, ...]:
        """Child rule ids an AND/OR failure names (empty for a leaf rule)."""
        match = re.search(r"(?:failed child rules|all child rules failed): \[([^\]]*)\]", self.message)
        return tuple(c.strip() for c in match.group(1).split(",") if c.strip()) if match else ()


@dataclass
class ValidatorReport:
    """What one validator run concluded. `failed_rules` holds (rule id, message) of every FAIL."""

    passed: int
    failed: int
    skipped: int
    total: int
    failed_rules: list[tuple[str, str]]
    raw_output: str
    failures: list[RuleFailure] = field(default_factory=list)
    skip_reasons: dict[str, int] = field(default_factory=dict)
    passed_rules: list[str] = field(default_factory=list)
    validator_version: str = "unknown"
    focus_version: str = "1.2"
    applicability_criteria: tuple[str, ...] = ()
    waived: list[RuleFailure] = field(default_factory=list)
    unchecked: dict[str, int] = field(default_factory=dict)  # VACUOUS_RULES -> rows breaking them

    @property
    def blocking_failures(self) -> list[RuleFailure]:
        """Failures left after waiving known validator defects whose intended rule holds."""
        waived = {f.rule_id for f in self.waived}
        return [f for f in self.failures if f.rule_id not in waived]

    @property
    def ok(self) -> bool:
        """True when every FAIL is a waived validator defect (the CI gate)."""
        return not self.blocking_failures

    @property
    def root_failures(self) -> list[RuleFailure]:
        """Blocking failures that are not mere AND/OR parents of another failure (the ones to fix)."""
        return [f for f in self.blocking_failures if not f.composite]


@dataclass(frozen=True)
class KnownDefect:
    """A rule focus-validator 2.2.1 fails on spec-correct data, and how to check what FOCUS meant.

    A failure of the rule is waived only when `intended` (a polars predicate selecting the rows
    that break the rule as the spec words it) selects no row, or, for `waive_if_passed`, when
    the validator itself passed the parent rule that expresses the intent.
    """

    reason: str
    columns: tuple[str, ...] = ()
    intended: Callable[[], pl.Expr] | None = None
    waive_if_passed: str | None = None


def _null(col: str) -> pl.Expr:
    return pl.col(col).is_null()


KNOWN_VALIDATOR_DEFECTS: dict[str, KnownDefect] = {
    "InvoiceId-C-004-C": KnownDefect(
        "the two branches of the OR InvoiceId-C-003-C ('null when not invoiced' / 'not null when "
        "invoiced') are also run on their own, unconditionally: one of them fails on any data",
        waive_if_passed="InvoiceId-C-003-C",
    ),
    "InvoiceId-C-005-C": KnownDefect(
        "see InvoiceId-C-004-C: unconditional half of the OR InvoiceId-C-003-C",
        waive_if_passed="InvoiceId-C-003-C",
    ),
    "CommitmentDiscountStatus-C-004-C": KnownDefect(
        "model condition is 'CommitmentDiscountId IS NULL' (spec: not null and ChargeCategory "
        "'Usage'), so it contradicts CommitmentDiscountStatus-C-003-C on every non-commitment row",
        columns=("CommitmentDiscountId", "ChargeCategory", "CommitmentDiscountStatus"),
        intended=lambda: (
            ~_null("CommitmentDiscountId") & (pl.col("ChargeCategory") == "Usage") & _null("CommitmentDiscountStatus")
        ),
    ),
    "CommitmentDiscountStatus-C-005-M": KnownDefect(
        "model's allowed values are 'Active'/'Expired'/'Pending' (FOCUS 1.2: 'Used'/'Unused'); the OR "
        "only fails when no row is null or holds one of those, e.g. a commitment-only partition",
        columns=("CommitmentDiscountStatus",),
        intended=lambda: (
            ~_null("CommitmentDiscountStatus") & ~pl.col("CommitmentDiscountStatus").is_in(["Used", "Unused"])
        ),
    ),
    "ConsumedQuantity-C-006-C": KnownDefect(
        "model condition is inverted: it demands ConsumedQuantity on commitment-covered rows WITH "
        "ChargeClass 'Correction' (where FOCUS says it MAY be null) instead of on the others",
        columns=("ChargeCategory", "ChargeClass", "CommitmentDiscountStatus", "ConsumedQuantity"),
        intended=lambda: (
            (pl.col("ChargeCategory") == "Usage")
            & (_null("ChargeClass") | (pl.col("ChargeClass") != "Correction"))
            & (_null("CommitmentDiscountStatus") | (pl.col("CommitmentDiscountStatus") != "Unused"))
            & _null("ConsumedQuantity")
        ),
    ),
    "CapacityReservationStatus-C-003-C": KnownDefect(
        "model condition is malformed ({'AND': ...} without a CheckFunction) and dropped: "
        "'MUST be null' is applied to every row",
        columns=("CapacityReservationId", "CapacityReservationStatus"),
        intended=lambda: _null("CapacityReservationId") & ~_null("CapacityReservationStatus"),
    ),
    "CapacityReservationStatus-C-004-C": KnownDefect(
        "model condition is malformed and dropped: 'MUST NOT be null' is applied to every row, "
        "contradicting CapacityReservationStatus-C-003-C",
        columns=("CapacityReservationId", "ChargeCategory", "CapacityReservationStatus"),
        intended=lambda: (
            ~_null("CapacityReservationId") & (pl.col("ChargeCategory") == "Usage") & _null("CapacityReservationStatus")
        ),
    ),
    "EffectiveCost-C-005-C": KnownDefect(
        "model drops the rule's qualifier 'and the purchase is intended to cover future eligible "
        "charges': it demands EffectiveCost 0 on every Purchase, e.g. a support fee, whose "
        "EffectiveCost is its BilledCost; checked on commitment purchases (CommitmentDiscountId set)",
        columns=("ChargeCategory", "CommitmentDiscountId", "EffectiveCost"),
        intended=lambda: (
            (pl.col("ChargeCategory") == "Purchase") & ~_null("CommitmentDiscountId") & (pl.col("EffectiveCost") != 0)
        ),
    ),
}


# Rules 2.2.1 passes whatever the data: their model condition "ChargeClass is not 'Correction'"
# becomes `ChargeClass IS NOT NULL AND ChargeClass <> 'Correction'`, false on every regular row
# (ChargeClass is null there). What each rule says is checked here on the same file and reported
# beside the verdict (`ValidatorReport.unchecked`), as information: the gate is the validator's.
# Products allow the source's rounding: CUR and FOCUS exports round costs to 8-11 decimals.
PRODUCT_ROUNDING = 1e-8


def _not_correction() -> pl.Expr:
    return _null("ChargeClass") | (pl.col("ChargeClass") != "Correction")


def _priced() -> pl.Expr:
    return pl.col("ChargeCategory").is_in(["Usage", "Purchase"]) & _not_correction()


def _product_mismatch(price: str, quantity: str, cost: str) -> pl.Expr:
    a, b, r = (pl.col(c).cast(pl.Float64) for c in (price, quantity, cost))
    slack = pl.max_horizontal(r.abs() * 1e-9, pl.lit(PRODUCT_ROUNDING))
    return ~_null(price) & ~_null(quantity) & _not_correction() & ((a * b - r).abs() > slack)


VACUOUS_RULES: dict[str, Callable[[], pl.Expr]] = {
    "PricingQuantity-C-005-C": lambda: _priced() & _null("PricingQuantity"),
    "PricingCategory-C-004-C": lambda: _priced() & _null("PricingCategory"),
    "SkuId-C-005-C": lambda: _priced() & _null("SkuId"),
    "SkuPriceId-C-005-C": lambda: _priced() & _null("SkuPriceId"),
    "ListUnitPrice-C-005-C": lambda: _priced() & _null("ListUnitPrice"),
    "ContractedUnitPrice-C-006-C": lambda: _priced() & _null("ContractedUnitPrice"),
    "PricingCurrencyListUnitPrice-C-005-C": lambda: _priced() & _null("PricingCurrencyListUnitPrice"),
    "CommitmentDiscountQuantity-C-005-C": lambda: (
        _priced() & ~_null("CommitmentDiscountId") & _null("CommitmentDiscountQuantity")
    ),
    "ListCost-C-009-C": lambda: _product_mismatch("ListUnitPrice", "PricingQuantity", "ListCost"),
    "ContractedUnitPrice-C-011-C": lambda: _product_mismatch(
        "ContractedUnitPrice", "PricingQuantity", "ContractedCost"
    ),
}


def check_vacuous_rules(data: pl.LazyFrame) -> dict[str, int]:
    """Rows breaking each rule of VACUOUS_RULES as FOCUS words it (rules whose columns exist)."""
    names = set(data.collect_schema().names())
    needed = {"ChargeClass", "ChargeCategory", "CommitmentDiscountId", "PricingQuantity"}
    if not needed <= names:
        return {}
    exprs = [
        predicate().sum().alias(rule_id)
        for rule_id, predicate in VACUOUS_RULES.items()
        if set(predicate().meta.root_names()) <= names
    ]
    return data.select(exprs).collect().row(0, named=True) if exprs else {}


def apply_known_defect_waivers(report: ValidatorReport, data: pl.LazyFrame) -> ValidatorReport:
    """Fill `report.waived`: known-defect failures whose intended rule holds on `data`, plus
    AND/OR parents that failed only because of waived children."""
    failed_ids = {f.rule_id for f in report.failures}
    names = set(data.collect_schema().names())
    checks: dict[str, pl.Expr] = {}
    waived: set[str] = set()
    for failure in report.failures:
        defect = KNOWN_VALIDATOR_DEFECTS.get(failure.rule_id)
        if defect is None:
            continue
        if defect.waive_if_passed is not None:
            if defect.waive_if_passed not in failed_ids:
                waived.add(failure.rule_id)
        elif defect.intended is not None and set(defect.columns) <= names:
            checks[failure.rule_id] = defect.intended().sum().alias(failure.rule_id)
    notes: dict[str, str] = {}
    if checks:
        counts = data.select(list(checks.values())).collect().row(0, named=True)
        waived |= {rule_id for rule_id, n in counts.items() if not n}
        notes = {
            rule_id: f"known validator defect, but the rule as FOCUS words it is broken on {n} rows too"
            for rule_id, n in counts.items()
            if n
        }
    changed = True
    while changed:
        changed = False
        for failure in report.failures:
            kids = failure.failed_children
            if failure.rule_id not in waived and kids and all(k in waived for k in kids):
                waived.add(failure.rule_id)
                changed = True
    report.failures = [replace(f, note=notes[f.rule_id]) if f.rule_id in notes else f for f in report.failures]
    report.waived = [f for f in report.failures if f.rule_id in waived]
    return report


# --------------------------------------------------------------------------------------------
# Locating the validator
# --------------------------------------------------------------------------------------------


def find_validator() -> Path:
    """The `focus-validator` executable: $FOCUS_VALIDATOR, else `<repo>/.fv-venv/bin/...`."""
    override = os.environ.get(VALIDATOR_ENV_VAR)
    candidate = Path(override).expanduser() if override else DEFAULT_VALIDATOR
    if not candidate.is_file():
        source = f"${VALIDATOR_ENV_VAR}" if override else "default location"
        raise FileNotFoundError(f"focus-validator not found at {candidate} ({source}); {INSTALL_HINT}")
    return candidate


def _interpreter_of(validator: Path) -> Path:
    """The Python that runs a console script, read from its shebang line."""
    first_line = validator.read_text(encoding="utf-8", errors="replace").splitlines()[0]
    if not first_line.startswith("#!"):
        raise ValidatorError(f"{validator} is not a Python console script (no shebang)")
    return Path(first_line[2:].strip().split()[0])


def _package_info(validator: Path) -> tuple[Path, str]:
    """(installed `focus_validator` package dir, distribution version) of this executable."""
    venv = validator.resolve().parent.parent
    for site in sorted(venv.glob("lib/python3*/site-packages")):
        pkg = site / "focus_validator"
        if (pkg / "rules" / "currency_codes.csv").is_file():
            dists = sorted(site.glob("focus_validator-*.dist-info"))
            version = dists[0].name.removeprefix("focus_validator-").removesuffix(".dist-info") if dists else "unknown"
            return pkg, version
    # Not a plain venv layout (pipx shim, system install): ask the interpreter itself.
    python = _interpreter_of(validator)
    probe = (
        "import importlib.metadata as m, pathlib, focus_validator as f;"
        "print(pathlib.Path(f.__file__).parent); print(m.version('focus-validator'))"
    )
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise ValidatorError(f"cannot locate the focus_validator package of {validator}: {out.stderr.strip()}")
    pkg_dir, version = out.stdout.strip().splitlines()[-2:]
    return Path(pkg_dir), version


def prepare_workdir(workdir: Path, package_dir: Path) -> None:
    """Lay out `focus_validator/rules/currency_codes.csv`, which the validator opens by a cwd-relative path."""
    rules_dir = workdir / "focus_validator" / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(package_dir / "rules" / "currency_codes.csv", rules_dir / "currency_codes.csv")


# --------------------------------------------------------------------------------------------
# Parsing the console report
# --------------------------------------------------------------------------------------------

_TOTALS_RE = re.compile(r"Total:\s*(\d+)\s*\|\s*Pass:\s*(\d+)\s*\|\s*Fail:\s*(\d+)\s*\|\s*Skipped:\s*(\d+)")
# Per-rule status lines: "❌ BilledCost-C-003-M: FAIL  (violations=1, msg=..., 1.2ms)"; the icon
# falls back to "[FAIL]" etc. when stdout cannot encode emoji.
_STATUS_RE = re.compile(r"^\S+\s+([A-Za-z][\w.]*-[A-Z]-\d{3}-[A-Z]):\s+(PASS|FAIL|SKIPPED)\b(?:\s+\((.*)\))?\s*$")
_FAILURE_RE = re.compile(r"^- ([A-Za-z][\w.]*-[A-Z]-\d{3}-[A-Z]): violations=([^;]*); (.*)$")
_MUST_RE = re.compile(r"^\s+MustSatisfy: (.*)$")
_REASON_RE = re.compile(r"reason=(.*?)(?:, msg=|$)")
_MSG_RE = re.compile(r"msg=(.*?)(?:, \d+(?:\.\d+)?ms)?$")


def _to_int(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


def parse_validator_output(text: str) -> ValidatorReport:
    """Read totals, failed rules and skip reasons from the validator's console report.

    Raises ValidatorError when the report holds no `Total: | Pass: | Fail: | Skipped:` line.
    """
    totals = _TOTALS_RE.findall(text)
    if not totals:
        raise ValidatorError("focus-validator printed no totals line ('Total: N | Pass: N | Fail: N | Skipped: N')")
    total, passed, failed, skipped = (int(n) for n in totals[-1])

    lines = text.splitlines()
    failures: dict[str, RuleFailure] = {}
    skip_reasons: dict[str, int] = {}
    passed_rules: list[str] = []
    status_fail_msgs: dict[str, tuple[str, int | None]] = {}
    for line in lines:
        status = _STATUS_RE.match(line)
        if not status:
            continue
        rule_id, verdict, extras = status.group(1), status.group(2), status.group(3) or ""
        if verdict == "PASS":
            passed_rules.append(rule_id)
        elif verdict == "SKIPPED":
            reason = _REASON_RE.search(extras)
            key = reason.group(1).strip() if reason else "unknown"
            skip_reasons[key] = skip_reasons.get(key, 0) + 1
        elif verdict == "FAIL":
            msg = _MSG_RE.search(extras)
            vio = re.search(r"violations=(\d+)", extras)
            status_fail_msgs[rule_id] = (
                msg.group(1).strip() if msg else f"{rule_id} failed",
                int(vio.group(1)) if vio else None,
            )

    # The "--- Failures ---" section carries the full message and the rule's MustSatisfy text.
    if "--- Failures ---" in text:
        section = text.split("--- Failures ---", 1)[1].splitlines()
        for i, line in enumerate(section):
            match = _FAILURE_RE.match(line)
            if not match:
                continue
            must = _MUST_RE.match(section[i + 1]) if i + 1 < len(section) else None
            rule_id = match.group(1)
            failures[rule_id] = RuleFailure(
                rule_id=rule_id,
                message=match.group(3).strip(),
                violations=_to_int(match.group(2)),
                must_satisfy=must.group(1).strip() if must else "",
            )
    for rule_id, (msg, vio) in status_fail_msgs.items():
        failures.setdefault(rule_id, RuleFailure(rule_id=rule_id, message=msg, violations=vio))

    ordered = sorted(failures.values(), key=lambda f: (f.composite, f.rule_id))
    if failed and len(ordered) != failed:
        # Totals are authoritative; a mismatch means the format moved under us.
        raise ValidatorError(f"focus-validator reported {failed} failed rules but {len(ordered)} could be parsed")
    return ValidatorReport(
        passed=passed,
        failed=failed,
        skipped=skipped,
        total=total,
        failed_rules=[(f.rule_id, f.message) for f in ordered],
        raw_output=text,
        failures=ordered,
        skip_reasons=skip_reasons,
        passed_rules=passed_rules,
    )


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def run_validator(
    data_file: Path,
    focus_version: str = "1.2",
    *,
    validator: Path | None = None,
    applicability_criteria: Sequence[str] | None = CLOUD_APPLICABILITY_CRITERIA,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    waive_known_defects: bool = True,
) -> ValidatorReport:
    """Validate one `.parquet`/`.csv` FOCUS file and return the parsed report.

    `failed`/`failed_rules` are the validator's raw verdict; with `waive_known_defects`,
    `report.waived` lists the failures caused by focus-validator 2.2.1 model bugs (see
    KNOWN_VALIDATOR_DEFECTS) and `report.ok` tells whether anything else failed.

    Runs `focus-validator --data-file F --validate-version V --block-download
    [--applicability-criteria C1,C2,..]` in a fresh temp working dir (it needs
    `focus_validator/rules/currency_codes.csv` there and drops its log file there).
    `--block-download` keeps it off GitHub: the 1.2 rule model ships inside the package.
    """
    data_file = Path(data_file).resolve()
    if data_file.suffix not in (".parquet", ".csv"):
        raise ValueError(f"focus-validator picks its reader by suffix; need .parquet or .csv, got {data_file.name}")
    if not data_file.is_file():
        raise FileNotFoundError(data_file)
    exe = validator or find_validator()
    package_dir, version = _package_info(exe)
    criteria = tuple(applicability_criteria or ())
    cmd = [
        str(exe),
        "--data-file",
        str(data_file),
        "--validate-version",
        focus_version,
        "--block-download",
    ]
    if criteria:
        cmd += ["--applicability-criteria", ",".join(criteria)]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    env.pop("LOGGING_CONFIG", None)  # its own logging.yaml sends logs to a file in the workdir
    with tempfile.TemporaryDirectory(prefix="focus-validator-") as tmp:
        workdir = Path(tmp)
        prepare_workdir(workdir, package_dir)
        try:
            proc = subprocess.run(
                cmd, cwd=workdir, env=env, capture_output=True, text=True, encoding="utf-8", timeout=timeout_s
            )
        except subprocess.TimeoutExpired as exc:
            raise ValidatorError(f"focus-validator timed out after {timeout_s:.0f}s on {data_file}") from exc
        log_tail = _tail(workdir / "focus_validator_detailed.log")
    output = proc.stdout
    if proc.returncode != 0:
        raise ValidatorError(
            f"focus-validator exited {proc.returncode} on {data_file}:\n{_last_lines(proc.stderr or output)}"
        )
    try:
        report = parse_validator_output(output)
    except ValidatorError as exc:
        raise ValidatorError(
            f"{exc}\nstdout:\n{_last_lines(output)}\nstderr:\n{_last_lines(proc.stderr)}\nlog:\n{log_tail}"
        ) from exc
    report.validator_version = version
    report.focus_version = focus_version
    report.applicability_criteria = criteria
    data = _scan_as_validator_reads(data_file)
    if waive_known_defects and report.failures:
        apply_known_defect_waivers(report, data)
    report.unchecked = check_vacuous_rules(data)
    return report


_VALIDATOR_NULL_STRINGS = ["INVALID", "INVALID_COST", "BAD_DATE", "INVALID_DECIMAL", "INVALID_INT", "NULL"]


def _scan_as_validator_reads(data_file: Path) -> pl.LazyFrame:
    """The file as the validator sees it null-wise (its CSV reader maps `NULL` etc. to null)."""
    if data_file.suffix == ".parquet":
        return pl.scan_parquet(data_file)
    return pl.scan_csv(data_file, infer_schema=False, null_values=_VALIDATOR_NULL_STRINGS)


def _last_lines(text: str, n: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _tail(path: Path, n: int = 30) -> str:
    try:
        return _last_lines(path.read_text(encoding="utf-8", errors="replace"), n)
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------
# Preparing the input file
# --------------------------------------------------------------------------------------------


def prepare_focus_file(lf_or_df: pl.LazyFrame | pl.DataFrame, out_path: Path) -> Path:
    """Write FOCUS rows as the Parquet file the validator reads without spurious failures.

    Why Parquet, not CSV (found with focus-validator 2.2.1):
    - From CSV, polars infers the types and the validator only re-types datetime columns: an
      all-digit id (AWS account `123456789012`, even `012345678901`) becomes Int64 and fails
      BillingAccountId-C-002-M / SubAccountId-C-001-M "MUST be of type String". Its CSV reader
      also maps the literal strings `NULL`, `INVALID`, ... and empty fields to null. From
      Parquet, every FOCUS column is cast to the spec type (String / Float64 / datetime) first,
      and null vs "" survives.
    - Datetimes: `Datetime(us, UTC)` passes TypeDateTime/FormatDateTime as `TIMESTAMP WITH TIME
      ZONE`; naive or ns datetimes pass too (taken as UTC). Strings pass as `YYYY-MM-DDTHH:MM:SSZ`,
      `...+00:00` or `YYYY-MM-DD HH:MM:SS`, but fractional seconds (`...:00.000Z`) fail to parse and
      the column is DROPPED (then fails as missing); so does a datetime column holding any null.
      Here naive datetimes are taken as UTC, other zones converted, all written as us/UTC.
    - Decimals: the validator casts every FOCUS decimal column to Float64 itself (so
      `Decimal(38,10)` is fine; its product checks allow a 1e-9 relative tolerance). They are
      written as Float64 here so no Parquet decimal logical type has to survive the trip between
      the project's polars and the validator's.
    - `Tags`/`SkuPriceDetails` must be JSON object strings (`json_valid`); a Struct column is
      JSON-encoded here, nulls stay null (Tags MAY be null).
    - `x_` columns are tolerated (custom-column rules are "dynamic", never run) and kept, after
      the FOCUS columns. Any other non-FOCUS column (internal bookkeeping) is dropped: FOCUS
      requires custom columns to carry the `x_` prefix.
    Values are never changed: fixing them is the normalizer's job; this only fixes encodings.
    """
    out_path = Path(out_path)
    if out_path.suffix != ".parquet":
        raise ValueError(f"prepare_focus_file writes Parquet; got {out_path.name}")
    lf = lf_or_df.lazy()
    schema = lf.collect_schema()
    focus_cols = sorted(c for c in schema.names() if c in FOCUS_COLUMNS)
    custom_cols = [c for c in schema.names() if c.startswith("x_")]
    exprs: list[pl.Expr] = []
    for name in focus_cols:
        exprs.append(_focus_column_expr(name, schema[name]))
    exprs.extend(pl.col(c) for c in custom_cols)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    lf.select(exprs).collect().write_parquet(out_path)
    return out_path


def _focus_column_expr(name: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if name in FOCUS_DATETIME_COLUMNS:
        if isinstance(dtype, pl.Datetime):
            col = col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col.dt.convert_time_zone("UTC")
            return col.dt.cast_time_unit("us").alias(name)
        if dtype == pl.Date:
            return col.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(name)
        return col.cast(pl.String).str.to_datetime(time_unit="us", time_zone="UTC").alias(name)
    if name in FOCUS_DECIMAL_COLUMNS:
        return col.cast(pl.Float64).alias(name)
    if name in JSON_OBJECT_COLUMNS and isinstance(dtype, pl.Struct):
        return col.struct.json_encode().alias(name)
    return col.cast(pl.String).alias(name)


def read_focus_input(path: Path) -> pl.LazyFrame:
    """A FOCUS file (.parquet/.csv) or a folder of Parquet files (recursively, e.g. a lake partition)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"no *.parquet files under {path}")
        # Files of one partition may differ in optional/x_ columns: align them by name.
        scans = [pl.scan_parquet(f, hive_partitioning=False) for f in files]
        return pl.concat(scans, how="diagonal_relaxed")
    if path.suffix == ".parquet":
        return pl.scan_parquet(path)
    if path.suffix == ".csv":
        # All text, so ids keep their leading zeros (prepare_focus_file types it); `NULL` means
        # null as in the validator's own CSV reader, a quoted "" stays an empty string.
        return pl.scan_csv(path, infer_schema=False, null_values=_VALIDATOR_NULL_STRINGS)
    raise ValueError(f"unsupported input {path}: expected a .parquet/.csv file or a directory")


# --------------------------------------------------------------------------------------------
# Lakes: one day of `normalized_line_items`, and lakes built from the fixtures
# --------------------------------------------------------------------------------------------

SAMPLES_DIR = REPO_ROOT / "billing_pipeline_tests" / "fixtures" / "samples"
AWS_LEGACY_CUR_SAMPLE = "focus_converters_sample-anonymous-aws-export-dataset.csv"
FOCUS_10_SAMPLE = "focus-sample-data_FOCUS-1.0_focus_sample.csv"
GENERATOR_MONTH = "2026-10"
GENERATOR_ROWS_PER_DAY = 200
GENERATOR_DAYS = 3
# The generator's landing layout: source name -> (provider, path below the landing root).
GENERATOR_SOURCES: dict[str, tuple[str, str]] = {
    "aws_cur2": ("aws_cur2", "aws_cur2/cur2-daily"),
    "aws_cur": ("aws_cur", "aws_cur/cur/legacy-cur"),
    "focus": ("focus", "focus/focus-export"),
    "gcp": ("gcp", "gcp/billing-export"),
    "azure": ("azure", "azure/cost-exports/actual-daily"),
}


def normalized_files(lake: str, day: dt.date, source: str | None = None, store: Store | None = None) -> list[str]:
    """The `normalized_line_items` slice files of one day (every source, or one), sorted by source."""
    from billing_pipeline.platform.lake import slice_url

    store = store or Store()
    day_dir = join(lake, "normalized_line_items", f"date={day.isoformat()}")
    if source is not None:
        url = slice_url(lake, "normalized_line_items", day, source)
        return [url] if store.exists(url) else []
    return sorted(f.url for f in store.find(day_dir) if f.url.endswith("/part-0.parquet"))


def export_normalized(
    lake: str, days: Sequence[dt.date], workdir: Path, source: str | None = None, store: Store | None = None
) -> pl.LazyFrame:
    """The rows of `days` (every source, or one) as one frame; remote slices are staged to `workdir`.

    Slices of different sources may carry different `x_` extras: they are aligned by name.
    """
    store = store or Store()
    urls = [url for day in days for url in normalized_files(lake, day, source, store)]
    if not urls:
        where = f"source {source!r}" if source else "any source"
        raise FileNotFoundError(f"no normalized_line_items for {', '.join(map(str, days))} ({where}) in {lake}")
    scans = [pl.scan_parquet(store.stage(url, workdir), hive_partitioning=False) for url in urls]
    return pl.concat(scans, how="diagonal_relaxed")


def legacy_cur_landing(root: Path, sample: Path, assembly: str = "a1") -> Path:
    """A legacy CUR report root (create-new-version mode) holding one delivery of a CUR CSV sample.

    The public sample covers November 2023; the delivery is laid out exactly as AWS writes it:
    `<report>/<yyyymmdd-yyyymmdd>/<assemblyId>/<name>-1.csv.gz` plus both manifests.
    """
    report = root / "cur" / "sample"
    delivery = report / "20231101-20231201" / assembly
    delivery.mkdir(parents=True, exist_ok=True)
    with open(sample, "rb") as src, gzip.open(delivery / "sample-1.csv.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    manifest = {
        "assemblyId": assembly,
        "reportKeys": [f"cur/sample/20231101-20231201/{assembly}/sample-1.csv.gz"],
        "billingPeriod": {"start": "20231101T000000.000Z", "end": "20231201T000000.000Z"},
    }
    (report / "20231101-20231201" / "sample-Manifest.json").write_text(json.dumps(manifest))
    (delivery / "sample-Manifest.json").write_text(json.dumps(manifest))
    return report


# Public GCP and Azure samples (fixtures/samples/SOURCES.md): koku's flattened GCP CSVs rebuilt into the native
# nested export (`generator.gcp_samples`), Microsoft's EA exports delivered as one partitioned run each.
GCP_KOKU_SAMPLES = ("koku_202011_30c31bca571d9b7f3b2c8459dd8bc34a_2020-11-08_2020-11-11.csv", "koku_2022-08-01_5.csv")
AZURE_EA_SAMPLES = {
    "azure-ea-actual-sample": ("finops-toolkit_EA_ActualCost_Small.csv", "ActualCost"),
    "azure-ea-amortized-sample": ("finops-toolkit_EA_AmortizedCost_Small.csv", "AmortizedCost"),
    "azure-ea-converters-sample": ("focus_converters_sample-anonymous-ea-export-dataset.csv", "ActualCost"),
}


def cloud_sample_checks(
    samples: Path, workdir: Path
) -> list[tuple[str, str, Path, list[SourceConfig], list[dt.date], Path | None]]:
    """Landing zones for the public GCP and Azure samples, as their providers deliver them."""
    from billing_pipeline.adapters.azure import blob_entry, manifest_document
    from billing_pipeline.tools.generator.gcp_samples import koku_csv_to_nested, write_ndjson

    out: list[tuple[str, str, Path, list[SourceConfig], list[dt.date], Path | None]] = []
    gcp_landing = workdir / "gcp-samples" / "landing"
    days: set[dt.date] = set()
    for index, name in enumerate(GCP_KOKU_SAMPLES):
        frame = koku_csv_to_nested(samples / name)
        write_ndjson(frame, gcp_landing / f"export-{index}.json.gz")
        days |= set(frame["usage_start_time"].dt.date().to_list())
    out.append(
        (
            "gcp-koku-samples",
            "public koku GCP samples rebuilt as native nested NDJSON -> normalized_line_items",
            workdir / "gcp-samples" / "lake",
            [SourceConfig(name="gcp_sample", provider="gcp", url=str(gcp_landing))],
            sorted(days),
            None,
        )
    )
    for name, (file_name, dataset) in AZURE_EA_SAMPLES.items():
        landing = workdir / name / "landing" / "export"
        dates = (
            pl.read_csv(samples / file_name, infer_schema=False, encoding="utf8-lossy")
            .select(pl.col("Date").str.to_date("%m/%d/%Y"))
            .to_series()
        )
        first = min(dates)
        run = landing / f"{first:%Y%m}01-{first:%Y%m}28" / "run-1"
        run.mkdir(parents=True, exist_ok=True)
        shutil.copy(samples / file_name, run / "part_0_0001.csv")
        blob = blob_entry(run / "part_0_0001.csv", f"export/{run.relative_to(landing)}/part_0_0001.csv")
        (run / "manifest.json").write_text(json.dumps(manifest_document("run-1", [blob], dataset)))
        out.append(
            (
                name,
                f"public Azure EA {dataset} sample ({file_name}) -> normalized_line_items",
                workdir / name / "lake",
                [SourceConfig(name="azure_sample", provider="azure", url=str(landing))],
                sorted(set(dates.to_list())),
                None,
            )
        )
    return out


def _days_of(csv_file: Path, column: str) -> list[dt.date]:
    """Distinct UTC dates of a CSV sample's date column (its first 10 characters)."""
    days = pl.scan_csv(csv_file, infer_schema=False).select(pl.col(column).str.slice(0, 10).unique()).collect()
    return sorted(dt.date.fromisoformat(d) for d in days.to_series() if d)


def build_lake(
    lake: Path, sources: Sequence[SourceConfig], days: Sequence[dt.date], workdir: Path
) -> dict[str, list[dt.date]]:
    """Run the spine's raw and normalized steps (the functions the assets call) for every day.

    Returns, per source, the days that produced a normalized slice.
    """
    from billing_pipeline.spine.normalize import build_normalized_slice
    from billing_pipeline.spine.raw import build_raw_slice

    store = Store()
    built: dict[str, list[dt.date]] = {s.name: [] for s in sources}
    for day in days:
        for source in sources:
            build_raw_slice(source, day, store, str(lake), workdir)
            if build_normalized_slice(source, day, store, str(lake), workdir).rows:
                built[source.name].append(day)
    return built


@dataclass
class DatasetCheck:
    """One dataset's verdict.

    For a native FOCUS input, `baseline` is the validator's report on the file as delivered and
    `baseline_nulls` on the same file with its empty strings read as null (FOCUS NullHandling:
    "" MUST NOT stand for null; 2.2.1 cannot check that, so "" passes every not-null rule). The
    gate is then: no rule blocks on the output that the input did not fail, read either way.
    Otherwise the gate is: no blocking failure (documented validator defects waived).
    """

    name: str
    description: str
    rows: int
    days: int
    report: ValidatorReport
    baseline: ValidatorReport | None = None
    baseline_nulls: ValidatorReport | None = None

    def _failed_on_input(self, report: ValidatorReport | None) -> set[str]:
        return {f.rule_id for f in report.failures} if report is not None else set()

    @property
    def regressions(self) -> list[str]:
        """Rules blocking on the output that the input passed or skipped, read either way."""
        if self.baseline is None:
            return []
        failed = self._failed_on_input(self.baseline) | self._failed_on_input(self.baseline_nulls)
        return sorted(f.rule_id for f in self.report.blocking_failures if f.rule_id not in failed)

    @property
    def masked_by_placeholders(self) -> list[str]:
        """Rules the input passes only through empty strings standing for null, and the output fails."""
        if self.baseline is None:
            return []
        as_delivered = self._failed_on_input(self.baseline)
        read_as_null = self._failed_on_input(self.baseline_nulls)
        return sorted(
            f.rule_id
            for f in self.report.blocking_failures
            if f.rule_id not in as_delivered and f.rule_id in read_as_null
        )

    @property
    def fixed(self) -> list[str]:
        """Rules the input as delivered failed that pass (or are waived) on the output."""
        if self.baseline is None:
            return []
        blocking = {f.rule_id for f in self.report.blocking_failures}
        return sorted(f.rule_id for f in self.baseline.failures if f.rule_id not in blocking)

    @property
    def ok(self) -> bool:
        return not self.regressions if self.baseline is not None else self.report.ok

    def summary(self) -> str:
        report = self.report
        head = (
            f"[{'PASS' if self.ok else 'FAIL'}] {self.name}: {self.rows} rows, {self.days} days; "
            f"{report.passed} passed, {report.failed} failed, {report.skipped} skipped; "
            f"blocking failures: {len(report.blocking_failures)} "
            f"({len(report.waived)} waived as known focus-validator defects)"
        )
        lines = [head, f"    {self.description}"]
        if self.baseline is not None:
            base = self.baseline
            lines.append(
                f"    input as delivered: {base.passed} passed, {base.failed} failed, {base.skipped} skipped; "
                f"fixed by normalizing: {len(self.fixed)}; "
                f"failing on output but not on input: {len(self.regressions)}"
                + (f" {self.regressions}" if self.regressions else "")
            )
            if self.masked_by_placeholders:
                lines.append(
                    "    passed on the input only through empty strings standing for null: "
                    + ", ".join(self.masked_by_placeholders)
                )
            lines.append(
                "    remaining root failures (inherent in the source data): "
                + (", ".join(f.rule_id for f in report.root_failures) or "none")
            )
        else:
            for failure in report.root_failures:
                vio = f" [{failure.violations} violations]" if failure.violations is not None else ""
                lines.append(f"    FAIL {failure.rule_id}{vio}: {failure.message}")
        unchecked = format_unchecked(report)
        if unchecked:
            lines.append(f"    {unchecked}")
        return "\n".join(lines)


def empty_strings_as_null(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Every empty (or blank) string cell as null: how FOCUS says a native file's "" must be read."""
    strings = [name for name, dtype in frame.collect_schema().items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(c).str.strip_chars() == "").then(None).otherwise(pl.col(c)).alias(c) for c in strings
    )


def check_fixtures(
    workdir: Path,
    *,
    samples: Path = SAMPLES_DIR,
    include_generator: bool = True,
    applicability_criteria: Sequence[str] | None = CLOUD_APPLICABILITY_CRITERIA,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[DatasetCheck]:
    """Build lakes from the public samples (and the generator, when present), validate each
    normalized dataset, and the FOCUS 1.0 sample as delivered too, for the rule-by-rule comparison.

    Every normalized day of a source is validated at once (one file per source): the validator's
    cross-row rules (one ServiceCategory per ServiceName, one SkuId per SkuPriceId) then see
    the whole dataset, which is stricter than day by day.
    """
    checks: list[tuple[str, str, Path, list[SourceConfig], list[dt.date], Path | None]] = []
    aws_sample = samples / AWS_LEGACY_CUR_SAMPLE
    focus_sample = samples / FOCUS_10_SAMPLE
    aws_landing = legacy_cur_landing(workdir / "aws-sample" / "landing", aws_sample)
    checks.append(
        (
            "aws-legacy-cur-sample",
            f"public AWS legacy CUR sample ({aws_sample.name}) -> normalized_line_items",
            workdir / "aws-sample" / "lake",
            [SourceConfig(name="aws_sample", provider="aws_cur", url=str(aws_landing))],
            _days_of(aws_sample, "lineItem/UsageStartDate"),
            None,
        )
    )
    focus_landing = workdir / "focus-sample" / "landing"
    focus_landing.mkdir(parents=True, exist_ok=True)
    shutil.copy(focus_sample, focus_landing / focus_sample.name)
    checks.append(
        (
            "focus-1.0-sample",
            f"public FOCUS 1.0 sample ({focus_sample.name}) -> normalized_line_items",
            workdir / "focus-sample" / "lake",
            [SourceConfig(name="focus_sample", provider="focus", url=str(focus_landing))],
            _days_of(focus_sample, "ChargePeriodStart"),
            focus_sample,
        )
    )
    checks += cloud_sample_checks(samples, workdir)
    generate = _generator() if include_generator else None
    if generate is not None:
        landing = workdir / "generator" / "landing"
        generate(landing, month=GENERATOR_MONTH, rows_per_day=GENERATOR_ROWS_PER_DAY, days=GENERATOR_DAYS)
        first = dt.date.fromisoformat(f"{GENERATOR_MONTH}-01")
        days = [first + dt.timedelta(days=i) for i in range(GENERATOR_DAYS)]
        for name, (provider, relative) in GENERATOR_SOURCES.items():
            checks.append(
                (
                    f"generator-{name}",
                    f"billing_pipeline.tools.generator {provider} export ({GENERATOR_ROWS_PER_DAY} rows/day, "
                    f"{GENERATOR_DAYS} days) -> normalized_line_items",
                    workdir / "generator" / "lake",
                    [SourceConfig(name=name, provider=provider, url=str(landing / relative))],
                    days,
                    None,
                )
            )

    jobs: list[tuple[str, str, pl.LazyFrame, int]] = []
    for name, description, lake, sources, days, _ in checks:
        built = build_lake(lake, sources, days, workdir)
        built_days = sorted({d for ds in built.values() for d in ds})
        frame = export_normalized(str(lake), built_days, workdir, source=sources[0].name)
        jobs.append((name, description, frame, len(built_days)))
    baselines = {name: native for name, _, _, _, _, native in checks if native is not None}

    def validate(frame: pl.LazyFrame) -> ValidatorReport:
        return check_frame(frame, applicability_criteria=applicability_criteria, timeout_s=timeout_s)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        reports = {name: pool.submit(validate, frame) for name, _, frame, _ in jobs}
        inputs = {name: pool.submit(validate, read_focus_input(path)) for name, path in baselines.items()}
        nulls = {
            name: pool.submit(validate, empty_strings_as_null(read_focus_input(path)))
            for name, path in baselines.items()
        }
        results = []
        for name, description, frame, n_days in jobs:
            rows = frame.select(pl.len()).collect().item()
            baseline = inputs[name].result() if name in inputs else None
            baseline_nulls = nulls[name].result() if name in nulls else None
            results.append(
                DatasetCheck(name, description, rows, n_days, reports[name].result(), baseline, baseline_nulls)
            )
    return results


def _generator() -> Callable[..., object] | None:
    """`billing_pipeline.tools.generator.generate_landing_zone`, or None while it is not importable."""
    try:
        from billing_pipeline.tools.generator import generate_landing_zone
    except ImportError:
        return None
    return generate_landing_zone


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def format_unchecked(report: ValidatorReport) -> str | None:
    """One line on the rules 2.2.1 cannot evaluate (VACUOUS_RULES), as checked here; informational."""
    if not report.unchecked:
        return None
    broken = {rule: n for rule, n in report.unchecked.items() if n}
    held = len(report.unchecked) - len(broken)
    detail = ", ".join(f"{rule} on {n} rows" for rule, n in broken.items())
    return f"not evaluated by focus-validator (vacuous on null ChargeClass), checked here: {held} hold" + (
        f"; broken (informational): {detail}" if broken else ""
    )


def format_summary(report: ValidatorReport) -> str:
    """Totals line, then each blocking failed rule (root causes first), then the waived ones."""
    blocking = report.blocking_failures
    lines = [
        f"focus-validator {report.validator_version} FOCUS {report.focus_version}: "
        f"{report.passed} passed, {report.failed} failed, {report.skipped} skipped",
        f"blocking failures: {len(blocking)} "
        f"({len(report.waived)} failed rules waived as known focus-validator defects)",
    ]
    for failure in blocking:
        vio = f" [{failure.violations} violations]" if failure.violations is not None else ""
        note = f" ({failure.note})" if failure.note else ""
        lines.append(f"  FAIL {failure.rule_id}{vio}: {failure.message}{note}")
    for failure in report.waived:
        defect = KNOWN_VALIDATOR_DEFECTS.get(failure.rule_id)
        why = defect.reason if defect else "only waived child rules failed"
        lines.append(f"  waived {failure.rule_id}: {why}")
    unchecked = format_unchecked(report)
    if unchecked:
        lines.append(unchecked)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m billing_pipeline.tools.conformance",
        description="Check FOCUS data with the FinOps Foundation focus-validator.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--input", type=Path, help="FOCUS .parquet/.csv file or a folder of .parquet")
    what.add_argument("--lake", help="lake root (local path or URL): validate one day of normalized_line_items")
    what.add_argument(
        "--all-fixtures",
        action="store_true",
        help="build lakes from the public samples and the generator, validate them; exit 1 on any regression",
    )
    parser.add_argument("--date", type=dt.date.fromisoformat, help="with --lake: the day, YYYY-MM-DD")
    parser.add_argument("--source", help="with --lake: only this source (default: every source of the day)")
    parser.add_argument("--keep", type=Path, help="with --all-fixtures: build the lakes here and keep them")
    parser.add_argument("--focus-version", default="1.2")
    parser.add_argument(
        "--fail-on-failures", action="store_true", help="exit 1 when any rule failed (waived known defects excepted)"
    )
    parser.add_argument("--no-waivers", action="store_true", help="do not waive known focus-validator defects")
    parser.add_argument(
        "--applicability-criteria",
        default=",".join(CLOUD_APPLICABILITY_CRITERIA),
        help="comma-separated criteria passed to the validator ('' for none, 'ALL' for all)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds")
    return parser


def check_frame(
    frame: pl.LazyFrame | pl.DataFrame,
    *,
    focus_version: str = "1.2",
    applicability_criteria: Sequence[str] | None = CLOUD_APPLICABILITY_CRITERIA,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    waive_known_defects: bool = True,
) -> ValidatorReport:
    """prepare_focus_file + run_validator on a temp file (the unit other entry points reuse)."""
    with tempfile.TemporaryDirectory(prefix="focus-conformance-") as tmp:
        data_file = prepare_focus_file(frame, Path(tmp) / "focus.parquet")
        if not pl.scan_parquet(data_file).select(pl.len()).collect().item():
            # 2.2.1 fails every allowed-value (OR) rule on an empty table: say what is wrong instead.
            raise ValueError("no FOCUS rows to validate")
        return run_validator(
            data_file,
            focus_version,
            applicability_criteria=applicability_criteria,
            timeout_s=timeout_s,
            waive_known_defects=waive_known_defects,
        )


def _all_fixtures(args: argparse.Namespace, criteria: list[str]) -> int:
    def run(workdir: Path) -> list[DatasetCheck]:
        return check_fixtures(workdir, applicability_criteria=criteria, timeout_s=args.timeout)

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="focus-fixtures-") as tmp:
            results = run(Path(tmp))
    version = results[0].report.validator_version if results else "unknown"
    print(f"focus-validator {version}, FOCUS {args.focus_version}, applicability criteria: {len(criteria)}")
    print("Gate: zero blocking failures (failed rules minus the documented focus-validator defects) on")
    print("the AWS, GCP and Azure samples and the generator data; for the native FOCUS 1.0 sample, no rule may fail on")
    print("the output that did not fail on the input as delivered.")
    if not any(r.name.startswith("generator-") for r in results):
        print("note: billing_pipeline.tools.generator is not importable; generator data not checked")
    for result in results:
        print(result.summary())
    failed = [r.name for r in results if not r.ok]
    print(f"conformance: {'FAIL ' + ', '.join(failed) if failed else 'OK'} ({len(results)} datasets)")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.lake and not args.date:
        parser.error("--lake needs --date YYYY-MM-DD")
    if (args.date or args.source) and not args.lake:
        parser.error("--date/--source go with --lake")
    criteria = [c.strip() for c in args.applicability_criteria.split(",") if c.strip()]
    try:
        if args.all_fixtures:
            return _all_fixtures(args, criteria)
        with tempfile.TemporaryDirectory(prefix="focus-export-") as tmp:
            if args.lake:
                frame = export_normalized(args.lake, [args.date], Path(tmp), source=args.source).collect()
                scope = f"source {args.source}" if args.source else "every source"
                print(f"normalized_line_items {args.date} ({scope}): {frame.height} rows")
            else:
                frame = read_focus_input(args.input)
            report = check_frame(
                frame,
                focus_version=args.focus_version,
                applicability_criteria=criteria,
                timeout_s=args.timeout,
                waive_known_defects=not args.no_waivers,
            )
    except (ValidatorError, FileNotFoundError, ValueError, pl.exceptions.PolarsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(report))
    return 1 if args.fail_on_failures and not report.ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
