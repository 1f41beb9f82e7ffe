"""The made-up organisation behind the generated bills: accounts, services, prices, tag habits.

Everything here is static data. The models draw line items from it; keeping it in one place lets a
reader of the README demo see which teams, accounts and services to expect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TEAMS: list[str] = ["payments", "search", "data-platform", "ml", "web"]
COST_CENTERS: dict[str, str] = {
    "payments": "CC-1001",
    "search": "CC-1002",
    "data-platform": "CC-1003",
    "ml": "CC-1004",
    "web": "CC-1005",
}
PRODUCTS: dict[str, str] = {
    "payments": "checkout",
    "search": "catalog-search",
    "data-platform": "lakehouse",
    "ml": "recommender",
    "web": "storefront",
}
ENVS: list[str] = ["prod", "staging", "dev"]
# Identifiers of people in tags, as real bills carry them: each team's owner e-mail (tag `contact`) and the
# user principal that created its resources (tag `CreatedBy`, the form of AWS's `aws:createdBy`). They never
# decide an allocation (no tag policy key); the security tests look for them outside the raw lake.
TEAM_CONTACTS: dict[str, str] = {
    "payments": "dana.okafor@acme.example",
    "search": "li.wei@acme.example",
    "data-platform": "marta.silva@acme.example",
    "ml": "arjun.rao@acme.example",
    "web": "sam.taylor@acme.example",
}
TEAM_CREATORS: dict[str, str] = {
    "payments": "IAMUser:AIDAEXAMPLEPAY01:dokafor",
    "search": "IAMUser:AIDAEXAMPLESRC02:lwei",
    "data-platform": "AssumedRole:AROAEXAMPLEDAT03:msilva",
    "ml": "AssumedRole:AROAEXAMPLEML004:arao",
    "web": "IAMUser:AIDAEXAMPLEWEB05:staylor",
}

# One concept, several spellings: the index into each list is a tagging "style".
TAG_SPELLINGS: dict[str, list[str]] = {
    "team": ["Team", "team", "TEAM", "owner"],
    "cost_center": ["CostCenter", "cost-center", "cost_center"],
    "env": ["env", "Environment", "Stage"],
    "product": ["product", "app"],
}


@dataclass(frozen=True)
class Account:
    """A sub account (AWS linked account, OCI compartment, Atlas project) and its habits."""

    account_id: str
    name: str
    team: str
    business_unit: str
    regions: tuple[str, ...]
    style: dict[str, int]
    env_weights: tuple[float, float, float] = (0.6, 0.25, 0.15)
    weight: float = 1.0


# --- AWS ---------------------------------------------------------------------------------------

AWS_REGIONS: dict[str, tuple[str, str, float]] = {
    # region code: (location, usage type prefix, price multiplier)
    "us-east-1": ("US East (N. Virginia)", "", 1.0),
    "us-west-2": ("US West (Oregon)", "USW2-", 1.0),
    "eu-west-1": ("EU (Ireland)", "EU-", 1.07),
    "eu-central-1": ("EU (Frankfurt)", "EUC1-", 1.12),
}


@dataclass(frozen=True)
class AwsTemplate:
    """One AWS SKU family: what a line item of it looks like and what it costs."""

    key: str
    product_code: str
    product_name: str
    product_family: str
    usage_type: str
    operation: str
    unit: str
    rate: float
    kind: str  # hours | storage | quantity
    resource: str  # instance | volume | natgw | bucket | db | function | loggroup | table | cluster | none
    mean_qty: float = 1.0
    weight: float = 1.0
    instance_type: str | None = None
    instance_family: str | None = None
    normalization_factor: float | None = None
    sp_eligible: bool = False
    attrs: dict[str, str] = field(default_factory=dict)


AWS_TEMPLATES: list[AwsTemplate] = [
    AwsTemplate(
        "ec2_m5",
        "AmazonEC2",
        "Amazon Elastic Compute Cloud",
        "Compute Instance",
        "BoxUsage:m5.xlarge",
        "RunInstances",
        "Hrs",
        0.192,
        "hours",
        "instance",
        weight=10,
        instance_type="m5.xlarge",
        instance_family="General purpose",
        normalization_factor=8,
        sp_eligible=True,
        attrs={"operating_system": "Linux", "tenancy": "Shared", "vcpu": "4", "memory": "16 GiB"},
    ),
    AwsTemplate(
        "ec2_c6g",
        "AmazonEC2",
        "Amazon Elastic Compute Cloud",
        "Compute Instance",
        "BoxUsage:c6g.2xlarge",
        "RunInstances",
        "Hrs",
        0.272,
        "hours",
        "instance",
        weight=6,
        instance_type="c6g.2xlarge",
        instance_family="Compute optimized",
        normalization_factor=16,
        sp_eligible=True,
        attrs={"operating_system": "Linux", "tenancy": "Shared", "vcpu": "8", "memory": "16 GiB"},
    ),
    AwsTemplate(
        "ec2_ebs",
        "AmazonEC2",
        "Amazon Elastic Compute Cloud",
        "Storage",
        "EBS:VolumeUsage.gp3",
        "CreateVolume-Gp3",
        "GB-Mo",
        0.08,
        "storage",
        "volume",
        mean_qty=400,
        weight=8,
        attrs={"volume_api_name": "gp3", "storage_media": "SSD-backed", "volume_type": "General Purpose"},
    ),
    AwsTemplate(
        "ec2_nat",
        "AmazonEC2",
        "Amazon Elastic Compute Cloud",
        "NAT Gateway",
        "NatGateway-Hours",
        "NatGateway",
        "Hrs",
        0.045,
        "hours",
        "natgw",
        weight=3,
    ),
    AwsTemplate(
        "s3_storage",
        "AmazonS3",
        "Amazon Simple Storage Service",
        "Storage",
        "TimedStorage-ByteHrs",
        "StandardStorage",
        "GB-Mo",
        0.023,
        "storage",
        "bucket",
        mean_qty=3000,
        weight=6,
        attrs={
            "storage_class": "General Purpose",
            "volume_type": "Standard",
            "durability": "99.999999999%",
            "availability": "99.99%",
        },
    ),
    AwsTemplate(
        "s3_requests",
        "AmazonS3",
        "Amazon Simple Storage Service",
        "API Request",
        "Requests-Tier1",
        "PutObject",
        "Requests",
        0.000005,
        "quantity",
        "bucket",
        mean_qty=200_000,
        weight=4,
        attrs={"group": "S3-API-Tier1", "group_description": "PUT/COPY/POST or LIST requests"},
    ),
    AwsTemplate(
        "rds_instance",
        "AmazonRDS",
        "Amazon Relational Database Service",
        "Database Instance",
        "InstanceUsage:db.r6g.large",
        "CreateDBInstance:0014",
        "Hrs",
        0.225,
        "hours",
        "db",
        weight=4,
        instance_type="db.r6g.large",
        instance_family="Memory optimized",
        normalization_factor=4,
        attrs={"database_engine": "PostgreSQL", "vcpu": "2", "memory": "16 GiB"},
    ),
    AwsTemplate(
        "rds_storage",
        "AmazonRDS",
        "Amazon Relational Database Service",
        "Database Storage",
        "RDS:GP3-Storage",
        "CreateDBInstance:0014",
        "GB-Mo",
        0.115,
        "storage",
        "db",
        mean_qty=500,
        weight=3,
        attrs={"database_engine": "PostgreSQL", "volume_type": "General Purpose-GP3"},
    ),
    AwsTemplate(
        "lambda_gbs",
        "AWSLambda",
        "AWS Lambda",
        "Serverless",
        "Lambda-GB-Second",
        "Invoke",
        "Lambda-GB-Second",
        0.0000166667,
        "quantity",
        "function",
        mean_qty=150_000,
        weight=5,
        sp_eligible=True,
        attrs={"group": "AWS-Lambda-Duration"},
    ),
    AwsTemplate(
        "lambda_req",
        "AWSLambda",
        "AWS Lambda",
        "Serverless",
        "Request",
        "Invoke",
        "Requests",
        0.0000002,
        "quantity",
        "function",
        mean_qty=2_000_000,
        weight=3,
        attrs={"group": "AWS-Lambda-Requests"},
    ),
    AwsTemplate(
        "cw_metrics",
        "AmazonCloudWatch",
        "AmazonCloudWatch",
        "Metric",
        "CW:MetricMonitorUsage",
        "MetricStorage",
        "Metrics",
        0.30,
        "storage",
        "none",
        mean_qty=200,
        weight=3,
        attrs={"group": "Metric"},
    ),
    AwsTemplate(
        "cw_logs",
        "AmazonCloudWatch",
        "AmazonCloudWatch",
        "Data Payload",
        "DataProcessing-Bytes",
        "PutLogEvents",
        "GB",
        0.50,
        "quantity",
        "loggroup",
        mean_qty=6,
        weight=3,
        attrs={"group": "Ingested Logs"},
    ),
    AwsTemplate(
        "ddb_rru",
        "AmazonDynamoDB",
        "Amazon DynamoDB",
        "Amazon DynamoDB PayPerRequest Throughput",
        "ReadRequestUnits",
        "PayPerRequestThroughput",
        "ReadRequestUnits",
        0.00000025,
        "quantity",
        "table",
        mean_qty=8_000_000,
        weight=3,
        attrs={"group": "DDB-ReadUnits"},
    ),
    AwsTemplate(
        "ddb_storage",
        "AmazonDynamoDB",
        "Amazon DynamoDB",
        "Database Storage",
        "TimedStorage-ByteHrs",
        "StandardStorage",
        "GB-Mo",
        0.25,
        "storage",
        "table",
        mean_qty=120,
        weight=2,
    ),
    AwsTemplate(
        "dt_out",
        "AWSDataTransfer",
        "AWS Data Transfer",
        "Data Transfer",
        "DataTransfer-Out-Bytes",
        "RunInstances",
        "GB",
        0.09,
        "quantity",
        "instance",
        mean_qty=40,
        weight=5,
        attrs={"transfer_type": "AWS Outbound"},
    ),
    AwsTemplate(
        "dt_regional",
        "AWSDataTransfer",
        "AWS Data Transfer",
        "Data Transfer",
        "DataTransfer-Regional-Bytes",
        "PublicIP-In",
        "GB",
        0.01,
        "quantity",
        "instance",
        mean_qty=120,
        weight=3,
        attrs={"transfer_type": "IntraRegion"},
    ),
    AwsTemplate(
        "eks_cluster",
        "AmazonEKS",
        "Amazon Elastic Kubernetes Service",
        "Compute",
        "AmazonEKS-Hours:perCluster",
        "CreateOperation",
        "Hrs",
        0.10,
        "hours",
        "cluster",
        weight=2,
    ),
]

AWS_SERVICE_NAMES: dict[str, str] = {t.product_code: t.product_name for t in AWS_TEMPLATES}


@dataclass(frozen=True)
class Reservation:
    """A partial-upfront reserved instance shared across the payer's accounts."""

    key: str
    template: str
    region: str
    owner: int  # index of the owning account
    count: int
    upfront_rate: float  # amortized upfront per hour
    recurring_rate: float  # recurring fee per hour
    arn_kind: str  # ec2 | rds
    purchased_this_month: bool = False


@dataclass(frozen=True)
class SavingsPlan:
    """A 1-year no-upfront Compute Savings Plan: a daily commitment in USD."""

    owner: int
    discount: float  # SP rate = on-demand rate * (1 - discount)
    coverage: float  # share of compute rows it covers


@dataclass(frozen=True)
class AwsOrg:
    """One payer (management) account with its linked accounts: one CUR report's worth."""

    source: str
    payer_id: str
    payer_name: str
    accounts: tuple[Account, ...]
    reservations: tuple[Reservation, ...]
    savings_plan: SavingsPlan
    spike_product_code: str
    ri_share: float = 0.05


ACME = AwsOrg(
    source="aws_cur2",
    payer_id="111111111111",
    payer_name="acme-management",
    accounts=(
        Account(
            "210987654321",
            "acme-payments-prod",
            "payments",
            "Commerce",
            ("us-east-1", "eu-west-1"),
            {"team": 0, "cost_center": 0, "env": 1, "product": 1},
            (0.85, 0.1, 0.05),
            1.3,
        ),
        Account(
            "322334455667",
            "acme-search-prod",
            "search",
            "Commerce",
            ("us-east-1", "us-west-2"),
            {"team": 1, "cost_center": 1, "env": 0, "product": 0},
            (0.8, 0.15, 0.05),
            1.0,
        ),
        Account(
            "433445566778",
            "acme-data-platform",
            "data-platform",
            "Data",
            ("us-east-1", "eu-central-1"),
            {"team": 2, "cost_center": 2, "env": 2, "product": 0},
            (0.6, 0.2, 0.2),
            1.2,
        ),
        Account(
            "544556677889",
            "acme-ml-sandbox",
            "ml",
            "Data",
            ("us-west-2",),
            {"team": 3, "cost_center": 0, "env": 0, "product": 1},
            (0.1, 0.2, 0.7),
            0.7,
        ),
    ),
    reservations=(
        Reservation("ri_ec2", "ec2_m5", "us-east-1", 0, 12, 0.0578, 0.0574, "ec2", purchased_this_month=True),
        Reservation("ri_rds", "rds_instance", "us-east-1", 2, 4, 0.0612, 0.0630, "rds"),
    ),
    savings_plan=SavingsPlan(owner=1, discount=0.28, coverage=0.06),
    spike_product_code="AWSDataTransfer",
)

GLOBEX = AwsOrg(
    source="aws_cur",
    payer_id="999988887777",
    payer_name="globex-payer",
    accounts=(
        Account(
            "600011112222",
            "globex-web-prod",
            "web",
            "Digital",
            ("us-east-1", "us-west-2"),
            {"team": 0, "cost_center": 1, "env": 0, "product": 1},
            (0.9, 0.07, 0.03),
            1.4,
        ),
        Account(
            "600033334444",
            "globex-web-staging",
            "web",
            "Digital",
            ("us-east-1",),
            {"team": 1, "cost_center": 2, "env": 1, "product": 0},
            (0.05, 0.8, 0.15),
            0.6,
        ),
        Account(
            "600055556666",
            "globex-analytics",
            "data-platform",
            "Data",
            ("eu-west-1", "us-east-1"),
            {"team": 3, "cost_center": 0, "env": 2, "product": 0},
            (0.6, 0.2, 0.2),
            1.0,
        ),
    ),
    reservations=(
        Reservation("ri_ec2", "ec2_m5", "us-east-1", 0, 8, 0.0578, 0.0574, "ec2", purchased_this_month=True),
        Reservation("ri_rds", "rds_instance", "us-east-1", 2, 2, 0.0612, 0.0630, "rds"),
    ),
    savings_plan=SavingsPlan(owner=0, discount=0.28, coverage=0.06),
    spike_product_code="AmazonS3",
)

AWS_ORGS: dict[str, AwsOrg] = {"aws_cur2": ACME, "aws_cur": GLOBEX, "aws_cur_parquet": GLOBEX}

# --- FOCUS vendor (not AWS) ----------------------------------------------------------------------


@dataclass(frozen=True)
class FocusSku:
    """One priced SKU of the FOCUS vendor, with the FOCUS service taxonomy it maps to."""

    key: str
    service_name: str
    service_category: str
    service_subcategory: str
    sku_id: str
    sku_meter: str
    description: str
    pricing_unit: str
    list_price: str  # decimal string, at most 4 decimals
    kind: str  # hours | storage | quantity
    resource_type: str | None
    mean_qty: float = 1.0
    weight: float = 1.0
    zonal: bool = False
    commitment_eligible: bool = False


@dataclass(frozen=True)
class FocusVendor:
    """A FOCUS-exporting provider with one billing account and its sub accounts."""

    provider: str
    billing_account_id: str
    billing_account_name: str
    billing_account_type: str
    currency: str
    sub_account_type: str
    sub_accounts: tuple[Account, ...]
    regions: dict[str, str]
    skus: tuple[FocusSku, ...]
    contracted_discount: float
    resource_prefix: str
    tax_name: str
    tax_rate: float
    invoice_prefix: str
    commitment: bool = False
    spike_service: str | None = None
    share: float = 0.5
    availability_zones: dict[str, tuple[str, ...]] = field(default_factory=dict)


OCI_SKUS: tuple[FocusSku, ...] = (
    FocusSku(
        "oci_ocpu",
        "Compute",
        "Compute",
        "Virtual Machines",
        "B93113",
        "OCPU Hours",
        "Compute - Standard - E4 - OCPU",
        "Hours",
        "0.0250",
        "hours",
        "Instance",
        weight=10,
        zonal=True,
        commitment_eligible=True,
    ),
    FocusSku(
        "oci_mem",
        "Compute",
        "Compute",
        "Virtual Machines",
        "B93114",
        "Memory Gigabyte Hours",
        "Compute - Standard - E4 - Memory",
        "GB-Hours",
        "0.0015",
        "hours",
        "Instance",
        mean_qty=16,
        weight=8,
        zonal=True,
    ),
    FocusSku(
        "oci_block",
        "Block Storage",
        "Storage",
        "Block Storage",
        "B91961",
        "Gigabyte Storage Capacity",
        "Storage - Block Volume - Storage",
        "GB-Months",
        "0.0255",
        "storage",
        "Volume",
        mean_qty=600,
        weight=6,
        zonal=True,
    ),
    FocusSku(
        "oci_object",
        "Object Storage",
        "Storage",
        "Object Storage",
        "B91628",
        "Gigabyte Storage Capacity",
        "Object Storage - Storage",
        "GB-Months",
        "0.0255",
        "storage",
        "Bucket",
        mean_qty=4000,
        weight=4,
    ),
    FocusSku(
        "oci_adw",
        "Database",
        "Databases",
        "Relational Databases",
        "B95701",
        "ECPU Hours",
        "Oracle Autonomous Data Warehouse - ECPU",
        "Hours",
        "0.3360",
        "hours",
        "Autonomous Database",
        mean_qty=2,
        weight=4,
    ),
    FocusSku(
        "oci_lb",
        "Load Balancer",
        "Networking",
        "Application Networking",
        "B93030",
        "Load Balancer Hours",
        "Load Balancer Base",
        "Hours",
        "0.0113",
        "hours",
        "Load Balancer",
        weight=2,
    ),
    FocusSku(
        "oci_egress",
        "Networking",
        "Networking",
        "Network Connectivity",
        "B88327",
        "Gigabytes Outbound",
        "Networking - Outbound Data Transfer",
        "GB",
        "0.0085",
        "quantity",
        None,
        mean_qty=300,
        weight=3,
    ),
)

ATLAS_SKUS: tuple[FocusSku, ...] = (
    FocusSku(
        "atlas_m30",
        "Atlas Dedicated Cluster",
        "Databases",
        "NoSQL Databases",
        "ATLAS_AWS_INSTANCE_M30",
        "Instance Hours",
        "Atlas AWS Instance M30",
        "Hours",
        "0.5400",
        "hours",
        "Cluster",
        mean_qty=1,
        weight=6,
    ),
    FocusSku(
        "atlas_m10",
        "Atlas Dedicated Cluster",
        "Databases",
        "NoSQL Databases",
        "ATLAS_AWS_INSTANCE_M10",
        "Instance Hours",
        "Atlas AWS Instance M10",
        "Hours",
        "0.0800",
        "hours",
        "Cluster",
        mean_qty=1,
        weight=4,
    ),
    FocusSku(
        "atlas_backup",
        "Atlas Cloud Backup",
        "Storage",
        "Backup Storage",
        "ATLAS_AWS_BACKUP_SNAPSHOT_STORAGE",
        "Gigabyte Storage Capacity",
        "Atlas AWS Backup Snapshot Storage",
        "GB-Months",
        "0.1400",
        "storage",
        "Cluster",
        mean_qty=800,
        weight=3,
    ),
    FocusSku(
        "atlas_transfer",
        "Atlas Data Transfer",
        "Networking",
        "Network Connectivity",
        "ATLAS_AWS_DATA_TRANSFER_INTERNET",
        "Gigabytes Transferred",
        "Atlas AWS Data Transfer (Internet)",
        "GB",
        "0.0900",
        "quantity",
        "Cluster",
        mean_qty=50,
        weight=3,
    ),
    FocusSku(
        "atlas_search",
        "Atlas Search",
        "Analytics",
        "Search",
        "ATLAS_AWS_SEARCH_INSTANCE_S30",
        "Instance Hours",
        "Atlas AWS Search Node S30",
        "Hours",
        "0.3000",
        "hours",
        "Search Node",
        mean_qty=1,
        weight=2,
    ),
)

ORACLE = FocusVendor(
    provider="Oracle",
    billing_account_id="ocid1.tenancy.oc1..aaaaaaaa7acme5ten4ncy2q6vxk3lq3b7pu5wq2yvr6t4h",
    billing_account_name="acme-oci",
    billing_account_type="Tenancy",
    currency="USD",
    sub_account_type="Compartment",
    sub_accounts=(
        Account(
            "ocid1.compartment.oc1..aaaaaaaapaymentsx4q3lw6dk2nm7c5r",
            "payments",
            "payments",
            "Commerce",
            ("us-ashburn-1",),
            {"team": 1, "cost_center": 2, "env": 0, "product": 0},
            (0.8, 0.15, 0.05),
            1.2,
        ),
        Account(
            "ocid1.compartment.oc1..aaaaaaaasearchq2z7ce4pa8dk1bt6m",
            "search",
            "search",
            "Commerce",
            ("us-ashburn-1", "us-phoenix-1"),
            {"team": 0, "cost_center": 0, "env": 1, "product": 1},
            (0.7, 0.2, 0.1),
            1.0,
        ),
        Account(
            "ocid1.compartment.oc1..aaaaaaaadataplat5k2v9xq3hw8ln4d",
            "data-platform",
            "data-platform",
            "Data",
            ("eu-frankfurt-1",),
            {"team": 2, "cost_center": 1, "env": 2, "product": 0},
            (0.6, 0.2, 0.2),
            1.0,
        ),
    ),
    regions={
        "us-ashburn-1": "US East (Ashburn)",
        "us-phoenix-1": "US West (Phoenix)",
        "eu-frankfurt-1": "Germany Central (Frankfurt)",
    },
    availability_zones={
        "us-ashburn-1": ("Qcvb:US-ASHBURN-AD-1", "Qcvb:US-ASHBURN-AD-2"),
        "us-phoenix-1": ("Qcvb:PHX-AD-1",),
        "eu-frankfurt-1": ("Qcvb:EU-FRANKFURT-1-AD-1",),
    },
    skus=OCI_SKUS,
    contracted_discount=0.10,
    resource_prefix="ocid1",
    tax_name="US Sales Tax",
    tax_rate=0.065,
    invoice_prefix="OCI-INV",
    commitment=True,
    spike_service="Networking",
    share=0.6,
)

ATLAS = FocusVendor(
    provider="MongoDB",
    billing_account_id="64f1c2ab9e3d4a0012acme01",
    billing_account_name="Acme Europe (Atlas)",
    billing_account_type="Organization",
    currency="EUR",
    sub_account_type="Project",
    sub_accounts=(
        Account(
            "64f1c2ab9e3d4a0012aa1001",
            "checkout-eu",
            "payments",
            "Commerce",
            ("eu-central-1",),
            {"team": 3, "cost_center": 1, "env": 1, "product": 1},
            (0.85, 0.1, 0.05),
            1.0,
        ),
        Account(
            "64f1c2ab9e3d4a0012aa1002",
            "catalog-eu",
            "search",
            "Commerce",
            ("eu-central-1", "eu-west-1"),
            {"team": 2, "cost_center": 2, "env": 0, "product": 0},
            (0.7, 0.2, 0.1),
            0.8,
        ),
    ),
    regions={"eu-central-1": "Europe (Frankfurt)", "eu-west-1": "Europe (Ireland)"},
    skus=ATLAS_SKUS,
    contracted_discount=0.0,
    resource_prefix="atlas",
    tax_name="VAT",
    tax_rate=0.19,
    invoice_prefix="ATL",
    share=0.4,
)

FOCUS_VENDORS: tuple[FocusVendor, ...] = (ORACLE, ATLAS)
