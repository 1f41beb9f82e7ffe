"""AWS Cost and Usage Reports, CUR 2.0 (Data Exports) and legacy CUR, to FOCUS 1.2.

One mapping for both flavours (legacy names are brought to CUR 2.0's first: `frame`), split by job:
`line_items` (what kind of charge a row is, its effective cost), `columns` (accounts, charge,
cost, pricing, commitment), `dimensions` (service, SKU, resource, location, tags, `x_` columns,
row problems), `discover` (legacy CUR deliveries), `catalog` (lookup tables), `adapter` (the
adapters themselves). Effective (amortized) cost follows the rules AWS's own dashboards use
(DOMAIN.md). BilledCost and EffectiveCost are the CUR's numbers; nothing changes them.

- Legacy CUR has no account names: BillingAccountName/SubAccountName fall back to the account id,
  the only label the export carries. BillingAccountType "Billing Account" (the payer), SubAccountType
  "AWS Account". PricingCurrency falls back to the billing currency (tax rows have none).
"""

from __future__ import annotations

from billing_pipeline.adapters.aws.adapter import AwsCur2Adapter, AwsCurAdapter, AwsLegacyCurAdapter
from billing_pipeline.adapters.aws.columns import PROVIDER
from billing_pipeline.adapters.aws.dimensions import DEFAULT_INVOICING_ENTITY
from billing_pipeline.adapters.aws.frame import MONEY_INPUTS, QUANTITY_INPUTS, snake_case_legacy, to_snake_frame

__all__ = [
    "DEFAULT_INVOICING_ENTITY",
    "MONEY_INPUTS",
    "PROVIDER",
    "QUANTITY_INPUTS",
    "AwsCur2Adapter",
    "AwsCurAdapter",
    "AwsLegacyCurAdapter",
    "snake_case_legacy",
    "to_snake_frame",
]
