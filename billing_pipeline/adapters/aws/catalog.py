"""Lookup tables AWS billing data needs to become FOCUS 1.2, and the polars expressions that use them.

CUR names a service by its product code (`AmazonEC2`) and a product name; FOCUS wants a
ServiceCategory/ServiceSubcategory pair from its own lists, a ResourceType for every ResourceId,
a SkuMeter, region names and units in the FOCUS Unit Format. None of that is in a CUR row, so
it lives here, in one place, as data. Unknown codes fall back to FOCUS's "Other" values rather
than failing: a new AWS service must never stop ingestion.

Why the category comes from the product code, not the product family: FOCUS requires exactly
one ServiceCategory per ServiceName, and CUR's ServiceName (the product name) belongs to the
line item's product code; data transfer rows of S3 carry `product_servicecode=AWSDataTransfer`
but the product name "Amazon Simple Storage Service".
"""

from __future__ import annotations

import polars as pl

from billing_pipeline.platform.lookup import lookup

# product code -> (ServiceCategory, ServiceSubcategory, product name as CUR spells it)
SERVICES: dict[str, tuple[str, str, str]] = {
    # Compute
    "AmazonEC2": ("Compute", "Virtual Machines", "Amazon Elastic Compute Cloud"),
    "AWSLambda": ("Compute", "Serverless Compute", "AWS Lambda"),
    "AmazonECS": ("Compute", "Containers", "Amazon Elastic Container Service"),
    "AmazonEKS": ("Compute", "Containers", "Amazon Elastic Kubernetes Service"),
    "AmazonECR": ("Compute", "Containers", "Amazon EC2 Container Registry (ECR)"),
    "AmazonECRPublic": ("Compute", "Containers", "Amazon Elastic Container Registry Public"),
    "AWSAppRunner": ("Compute", "Containers", "AWS App Runner"),
    "AmazonLightsail": ("Compute", "Virtual Machines", "Amazon Lightsail"),
    "AWSOutposts": ("Compute", "Other (Compute)", "AWS Outposts"),
    "AmazonWorkSpaces": ("Compute", "End User Computing", "Amazon WorkSpaces"),
    "AmazonAppStream": ("Compute", "End User Computing", "Amazon AppStream"),
    "AmazonBraket": ("Compute", "Quantum Compute", "Amazon Braket"),
    "ComputeSavingsPlans": ("Compute", "Other (Compute)", "Savings Plans for AWS Compute usage"),
    # Storage
    "AmazonS3": ("Storage", "Object Storage", "Amazon Simple Storage Service"),
    "AmazonS3GlacierDeepArchive": ("Storage", "Object Storage", "Amazon S3 Glacier Deep Archive"),
    "AmazonGlacier": ("Storage", "Backup Storage", "Amazon Glacier"),
    "AmazonEFS": ("Storage", "File Storage", "Amazon Elastic File System"),
    "AmazonFSx": ("Storage", "File Storage", "Amazon FSx"),
    "AWSBackup": ("Storage", "Backup Storage", "AWS Backup"),
    "AWSStorageGateway": ("Storage", "Storage Platforms", "AWS Storage Gateway"),
    # Databases
    "AmazonRDS": ("Databases", "Relational Databases", "Amazon Relational Database Service"),
    "AmazonDynamoDB": ("Databases", "NoSQL Databases", "Amazon DynamoDB"),
    "AmazonElastiCache": ("Databases", "Caching", "Amazon ElastiCache"),
    "AmazonMemoryDB": ("Databases", "Caching", "Amazon MemoryDB"),
    "AmazonRedshift": ("Databases", "Data Warehouses", "Amazon Redshift"),
    "AmazonDocDB": ("Databases", "NoSQL Databases", "Amazon DocumentDB (with MongoDB compatibility)"),
    "AmazonNeptune": ("Databases", "NoSQL Databases", "Amazon Neptune"),
    "AmazonMCS": ("Databases", "NoSQL Databases", "Amazon Keyspaces (for Apache Cassandra)"),
    "AmazonTimestream": ("Databases", "Time Series Databases", "Amazon Timestream"),
    "AmazonQLDB": ("Databases", "Ledger Databases", "Amazon Quantum Ledger Database"),
    "DatabaseSavingsPlans": ("Databases", "Other (Databases)", "Savings Plans for AWS Database usage"),
    # Networking
    "AWSDataTransfer": ("Networking", "Network Connectivity", "AWS Data Transfer"),
    "AmazonVPC": ("Networking", "Network Infrastructure", "Amazon Virtual Private Cloud"),
    "AmazonCloudFront": ("Networking", "Content Delivery", "Amazon CloudFront"),
    "AmazonRoute53": ("Networking", "Network Routing", "Amazon Route 53"),
    "AWSELB": ("Networking", "Application Networking", "Elastic Load Balancing"),
    "AWSDirectConnect": ("Networking", "Network Connectivity", "AWS Direct Connect"),
    "AWSGlobalAccelerator": ("Networking", "Network Routing", "AWS Global Accelerator"),
    "AWSCloudMap": ("Networking", "Application Networking", "AWS Cloud Map"),
    "AWSNetworkFirewall": ("Networking", "Network Security", "AWS Network Firewall"),
    "awswaf": ("Networking", "Network Security", "AWS WAF"),
    "AWSShield": ("Networking", "Network Security", "AWS Shield"),
    # Integration
    "AmazonApiGateway": ("Integration", "API Management", "Amazon API Gateway"),
    "AWSAppSync": ("Integration", "API Management", "AWS AppSync"),
    "AmazonSNS": ("Integration", "Messaging", "Amazon Simple Notification Service"),
    "AWSQueueService": ("Integration", "Messaging", "Amazon Simple Queue Service"),
    "AmazonMQ": ("Integration", "Messaging", "Amazon MQ"),
    "AWSEvents": ("Integration", "Messaging", "Amazon EventBridge"),
    "AmazonSES": ("Integration", "Messaging", "Amazon Simple Email Service"),
    "AmazonStates": ("Integration", "Workflow Orchestration", "AWS Step Functions"),
    "AmazonMWAA": ("Integration", "Workflow Orchestration", "Amazon Managed Workflows for Apache Airflow"),
    "AppFlow": ("Integration", "Other (Integration)", "Amazon AppFlow"),
    # Analytics
    "AWSGlue": ("Analytics", "Data Processing", "AWS Glue"),
    "ElasticMapReduce": ("Analytics", "Data Processing", "Amazon Elastic MapReduce"),
    "AmazonAthena": ("Analytics", "Analytics Platforms", "Amazon Athena"),
    "AmazonKinesis": ("Analytics", "Streaming Analytics", "Amazon Kinesis"),
    "AmazonKinesisFirehose": ("Analytics", "Streaming Analytics", "Amazon Kinesis Firehose"),
    "AmazonKinesisAnalytics": ("Analytics", "Streaming Analytics", "Amazon Kinesis Analytics"),
    "AmazonMSK": ("Analytics", "Streaming Analytics", "Amazon Managed Streaming for Apache Kafka"),
    "AmazonES": ("Analytics", "Search", "Amazon OpenSearch Service"),
    "AmazonQuickSight": ("Analytics", "Business Intelligence", "Amazon QuickSight"),
    # AI and Machine Learning
    "AmazonSageMaker": ("AI and Machine Learning", "Machine Learning", "Amazon SageMaker"),
    "AmazonBedrock": ("AI and Machine Learning", "Generative AI", "Amazon Bedrock"),
    "AmazonLex": ("AI and Machine Learning", "Bots", "Amazon Lex"),
    "comprehend": ("AI and Machine Learning", "Natural Language Processing", "Amazon Comprehend"),
    "transcribe": ("AI and Machine Learning", "Natural Language Processing", "Amazon Transcribe"),
    "translate": ("AI and Machine Learning", "Natural Language Processing", "Amazon Translate"),
    "AmazonPolly": ("AI and Machine Learning", "Natural Language Processing", "Amazon Polly"),
    "AmazonRekognition": ("AI and Machine Learning", "Machine Learning", "Amazon Rekognition"),
    "AmazonTextract": ("AI and Machine Learning", "Machine Learning", "Amazon Textract"),
    "MachineLearningSavingsPlans": (
        "AI and Machine Learning",
        "Other (AI and Machine Learning)",
        "Savings Plans for AWS Machine Learning",
    ),
    # Management and Governance
    "AmazonCloudWatch": ("Management and Governance", "Observability", "AmazonCloudWatch"),
    "AWSXRay": ("Management and Governance", "Observability", "AWS X-Ray"),
    "AmazonGrafana": ("Management and Governance", "Observability", "Amazon Managed Grafana"),
    "AmazonPrometheus": ("Management and Governance", "Observability", "Amazon Managed Service for Prometheus"),
    "AWSCloudTrail": ("Management and Governance", "Compliance", "AWS CloudTrail"),
    "AWSConfig": ("Management and Governance", "Compliance", "AWS Config"),
    "AWSSystemsManager": ("Management and Governance", "Endpoint Management", "AWS Systems Manager"),
    "AWSCloudFormation": ("Management and Governance", "Other (Management and Governance)", "AWS CloudFormation"),
    "AWSCostExplorer": ("Management and Governance", "Cost Management", "AWS Cost Explorer"),
    "AWSBudgets": ("Management and Governance", "Cost Management", "AWS Budgets"),
    "AWSLakeFormation": ("Management and Governance", "Data Governance", "AWS Lake Formation"),
    "AWSElasticDisasterRecovery": ("Management and Governance", "Disaster Recovery", "AWS Elastic Disaster Recovery"),
    "AWSSupportBusiness": ("Management and Governance", "Support", "AWS Support (Business)"),
    "AWSSupportEnterprise": ("Management and Governance", "Support", "AWS Support (Enterprise)"),
    "AWSDeveloperSupport": ("Management and Governance", "Support", "AWS Support (Developer)"),
    # Security and Identity
    "awskms": ("Security", "Secret Management", "AWS Key Management Service"),
    "AWSSecretsManager": ("Security", "Secret Management", "AWS Secrets Manager"),
    "AWSCertificateManager": ("Security", "Secret Management", "AWS Certificate Manager"),
    "AmazonGuardDuty": ("Security", "Threat Detection and Response", "Amazon GuardDuty"),
    "AmazonDetective": ("Security", "Threat Detection and Response", "Amazon Detective"),
    "AWSSecurityHub": ("Security", "Security Posture Management", "AWS Security Hub"),
    "AmazonInspectorV2": ("Security", "Security Posture Management", "Amazon Inspector"),
    "AmazonMacie": ("Security", "Security Posture Management", "Amazon Macie"),
    "AmazonCognito": ("Identity", "Identity and Access Management", "Amazon Cognito"),
    "AWSDirectoryService": ("Identity", "Identity and Access Management", "AWS Directory Service"),
    # Developer tools, web, IoT, media, migration, business applications
    "AWSCloudShell": ("Developer Tools", "Development Environments", "AWS CloudShell"),
    "AWSCodeCommit": ("Developer Tools", "Source Code Management", "AWS CodeCommit"),
    "CodeBuild": ("Developer Tools", "Continuous Integration and Deployment", "CodeBuild"),
    "AWSCodePipeline": ("Developer Tools", "Continuous Integration and Deployment", "AWS CodePipeline"),
    "AWSCodeDeploy": ("Developer Tools", "Continuous Integration and Deployment", "AWS CodeDeploy"),
    "AWSCodeArtifact": ("Developer Tools", "Other (Developer Tools)", "AWS CodeArtifact"),
    "AWSDeviceFarm": ("Developer Tools", "Quality Assurance", "AWS Device Farm"),
    "AWSAmplify": ("Web", "Application Platforms", "AWS Amplify"),
    "AWSIoT": ("Internet of Things", "IoT Platforms", "AWS IoT"),
    "AWSGreengrass": ("Internet of Things", "IoT Platforms", "AWS IoT Greengrass"),
    "AWSIoTAnalytics": ("Internet of Things", "IoT Analytics", "AWS IoT Analytics"),
    "AmazonIVS": ("Media", "Media Streaming", "Amazon Interactive Video Service"),
    "AmazonKinesisVideo": ("Media", "Media Streaming", "Amazon Kinesis Video Streams"),
    "AWSElementalMediaConvert": ("Media", "Content Creation", "AWS Elemental MediaConvert"),
    "AmazonGameLift": ("Media", "Gaming", "Amazon GameLift"),
    "AWSDatabaseMigrationSvc": ("Migration", "Data Migration", "AWS Database Migration Service"),
    "AWSDataSync": ("Migration", "Data Migration", "AWS DataSync"),
    "AWSTransfer": ("Migration", "Data Migration", "AWS Transfer Family"),
    "AWSApplicationMigrationSvc": ("Migration", "Resource Migration", "AWS Application Migration Service"),
    "AWSMigrationHubRefactorSpaces": ("Migration", "Resource Migration", "AWS Migration Hub Refactor Spaces"),
    "AmazonConnect": ("Business Applications", "Other (Business Applications)", "Amazon Connect"),
    "AmazonWorkMail": ("Business Applications", "Productivity and Collaboration", "Amazon WorkMail"),
    "AmazonWorkDocs": ("Business Applications", "Productivity and Collaboration", "Amazon WorkDocs"),
    "AmazonChime": ("Business Applications", "Productivity and Collaboration", "Amazon Chime"),
}
OTHER_CATEGORY = ("Other", "Other (Other)")

# Product names of other spellings AWS uses for the same services (e.g. in its FOCUS exports).
SERVICE_NAME_ALIASES: dict[str, str] = {
    "Amazon Elastic Container Service for Kubernetes": "AmazonEKS",
    "Amazon Elastic Container Registry": "AmazonECR",
    "Amazon Simple Email Service": "AmazonSES",
    "Amazon OpenSearch Service": "AmazonES",
    "Amazon Elasticsearch Service": "AmazonES",
}

# The public AWS region codes and the names CUR uses for them (`product_location`).
REGION_NAMES: dict[str, str] = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "us-gov-east-1": "AWS GovCloud (US-East)",
    "us-gov-west-1": "AWS GovCloud (US-West)",
    "ca-central-1": "Canada (Central)",
    "ca-west-1": "Canada West (Calgary)",
    "mx-central-1": "Mexico (Central)",
    "sa-east-1": "South America (Sao Paulo)",
    "eu-central-1": "EU (Frankfurt)",
    "eu-central-2": "EU (Zurich)",
    "eu-west-1": "EU (Ireland)",
    "eu-west-2": "EU (London)",
    "eu-west-3": "EU (Paris)",
    "eu-north-1": "EU (Stockholm)",
    "eu-south-1": "EU (Milan)",
    "eu-south-2": "EU (Spain)",
    "il-central-1": "Israel (Tel Aviv)",
    "me-south-1": "Middle East (Bahrain)",
    "me-central-1": "Middle East (UAE)",
    "af-south-1": "Africa (Cape Town)",
    "ap-east-1": "Asia Pacific (Hong Kong)",
    "ap-south-1": "Asia Pacific (Mumbai)",
    "ap-south-2": "Asia Pacific (Hyderabad)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
    "ap-southeast-3": "Asia Pacific (Jakarta)",
    "ap-southeast-4": "Asia Pacific (Melbourne)",
    "ap-southeast-5": "Asia Pacific (Malaysia)",
    "ap-southeast-7": "Asia Pacific (Thailand)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-northeast-2": "Asia Pacific (Seoul)",
    "ap-northeast-3": "Asia Pacific (Osaka)",
    "cn-north-1": "China (Beijing)",
    "cn-northwest-1": "China (Ningxia)",
}
REGION_CODE = (
    r"^[a-z]{2}(?:-gov|-iso[a-z]?)?-(?:central|north|south|east|west|northeast|northwest|southeast|southwest)-\d$"
)

# Region prefixes of usage types (`USE1-BoxUsage:m5.large`); us-east-1 often has none.
USAGE_TYPE_REGION_PREFIXES: tuple[str, ...] = (
    "USE1",
    "USE2",
    "USW1",
    "USW2",
    "UGE1",
    "UGW1",
    "CAN1",
    "CAN2",
    "MXC1",
    "SAE1",
    "EUC1",
    "EUC2",
    "EUW1",
    "EUW2",
    "EUW3",
    "EUN1",
    "EUS1",
    "EUS2",
    "EU",
    "ILC1",
    "MES1",
    "MEC1",
    "AFS1",
    "APE1",
    "APS1",
    "APS2",
    "APS3",
    "APS4",
    "APS5",
    "APS6",
    "APS7",
    "APN1",
    "APN2",
    "APN3",
    "CNN1",
    "CNW1",
)

# ResourceType by ARN `service:type` (or `service` alone when ARNs carry no type segment).
ARN_RESOURCE_TYPES: dict[str, str] = {
    "ec2:instance": "EC2 Instance",
    "ec2:volume": "EBS Volume",
    "ec2:snapshot": "EBS Snapshot",
    "ec2:natgateway": "NAT Gateway",
    "ec2:elastic-ip": "Elastic IP",
    "ec2:vpc-endpoint": "VPC Endpoint",
    "ec2:transit-gateway-attachment": "Transit Gateway Attachment",
    "ec2:dedicated-host": "Dedicated Host",
    "ec2:capacity-reservation": "Capacity Reservation",
    "ec2:reserved-instances": "Reserved Instance",
    "ec2:image": "AMI",
    "lambda:function": "Lambda Function",
    "logs:log-group": "CloudWatch Log Group",
    "dynamodb:table": "DynamoDB Table",
    "rds:db": "RDS DB Instance",
    "rds:cluster": "RDS DB Cluster",
    "rds:snapshot": "RDS Snapshot",
    "eks:cluster": "EKS Cluster",
    "ecs:cluster": "ECS Cluster",
    "ecs:service": "ECS Service",
    "elasticloadbalancing:loadbalancer": "Load Balancer",
    "elasticfilesystem:file-system": "EFS File System",
    "kms:key": "KMS Key",
    "secretsmanager:secret": "Secret",
    "cloudwatch:dashboard": "CloudWatch Dashboard",
    "cloudwatch:alarm": "CloudWatch Alarm",
    "glue:job": "Glue Job",
    "glue:crawler": "Glue Crawler",
    "states:stateMachine": "Step Functions State Machine",
    "elasticache:cluster": "ElastiCache Cluster",
    "redshift:cluster": "Redshift Cluster",
    "sagemaker:endpoint": "SageMaker Endpoint",
    "sagemaker:notebook-instance": "SageMaker Notebook Instance",
    "savingsplans:savingsplan": "Savings Plan",
    "s3": "S3 Bucket",
    "sqs": "SQS Queue",
    "sns": "SNS Topic",
    "cloudtrail:trail": "CloudTrail Trail",
    "kinesis:stream": "Kinesis Stream",
    "es:domain": "OpenSearch Domain",
    "apigateway": "API Gateway API",
    "route53:hostedzone": "Route 53 Hosted Zone",
    "cloudfront:distribution": "CloudFront Distribution",
}
# ResourceType by the prefix of a bare EC2/VPC id (`i-0abc`, `vol-0abc`).
ID_PREFIX_RESOURCE_TYPES: dict[str, str] = {
    "i": "EC2 Instance",
    "vol": "EBS Volume",
    "snap": "EBS Snapshot",
    "nat": "NAT Gateway",
    "eipalloc": "Elastic IP",
    "eip": "Elastic IP",
    "vpce": "VPC Endpoint",
    "tgw-attach": "Transit Gateway Attachment",
    "tgw": "Transit Gateway",
    "eni": "Network Interface",
    "ami": "AMI",
    "fs": "EFS File System",
    "h": "Dedicated Host",
    "cr": "Capacity Reservation",
    "vpn": "VPN Connection",
    "dxcon": "Direct Connect Connection",
}
# ResourceType for ids that are neither ARNs nor prefixed ids, by product code (S3 bucket names).
SERVICE_RESOURCE_TYPES: dict[str, str] = {
    "AmazonS3": "S3 Bucket",
    "AmazonS3GlacierDeepArchive": "S3 Bucket",
    "AmazonEFS": "EFS File System",
    "AWSLambda": "Lambda Function",
    "AmazonDynamoDB": "DynamoDB Table",
    "AmazonRDS": "RDS DB Instance",
    "AmazonCloudFront": "CloudFront Distribution",
    "AmazonRoute53": "Route 53 Hosted Zone",
    "AmazonSNS": "SNS Topic",
    "AWSQueueService": "SQS Queue",
    "AmazonCloudWatch": "CloudWatch Resource",
    "AWSELB": "Load Balancer",
    "AmazonEC2": "EC2 Resource",
    "AmazonVPC": "VPC Resource",
}

_TIME_PLURALS: dict[str, tuple[str, ...]] = {
    "Hours": ("Hrs", "Hr", "Hour", "hours", "hour", "hrs", "hr", "Hours"),
    "Months": ("Mo", "Mos", "Month", "month", "months", "Months"),
    "Days": ("Day", "day", "days", "Days"),
    "Seconds": ("Second", "Sec", "Secs", "second", "seconds", "sec", "secs", "Seconds"),
    "Minutes": ("Minute", "Min", "Mins", "minute", "minutes", "min", "mins", "Minutes"),
    "Years": ("Year", "Yr", "Yrs", "year", "years", "Years"),
}
_STANDALONE: dict[str, str] = {"Hrs": "Hours", "Hr": "Hours", "hrs": "Hours", "hours": "Hours", "Mo": "Months"}


def service_code(product_code: pl.Expr, servicecode: pl.Expr, product_name: pl.Expr) -> pl.Expr:
    """The code the FOCUS service columns are keyed on: the line item's product code first."""
    by_name = lookup(product_name, {**{name: code for code, (_, _, name) in SERVICES.items()}, **SERVICE_NAME_ALIASES})
    return pl.coalesce(product_code, servicecode, by_name)


def service_category(code: pl.Expr) -> pl.Expr:
    return lookup(code, {c: v[0] for c, v in SERVICES.items()}, default=OTHER_CATEGORY[0])


def service_subcategory(code: pl.Expr) -> pl.Expr:
    return lookup(code, {c: v[1] for c, v in SERVICES.items()}, default=OTHER_CATEGORY[1])


def service_name(code: pl.Expr) -> pl.Expr:
    """The product name CUR uses for a code (rows without `product_product_name`, e.g. taxes)."""
    return lookup(code, {c: v[2] for c, v in SERVICES.items()})


def subcategory_for_name(name: pl.Expr, category: pl.Expr) -> pl.Expr:
    """ServiceSubcategory of a known AWS product name, only where it belongs to the row's category."""
    by_name = {
        **{v[2]: v[1] for v in SERVICES.values()},
        **{alias: SERVICES[code][1] for alias, code in SERVICE_NAME_ALIASES.items()},
    }
    parents = {v[1]: v[0] for v in SERVICES.values()}
    subcategory = lookup(name, by_name)
    parent = lookup(subcategory, parents)
    return pl.when(parent == category).then(subcategory)


def region_id(*candidates: pl.Expr) -> pl.Expr:
    """The first candidate that is an AWS region code (`product_region` also holds `global`)."""
    return pl.coalesce([pl.when(c.str.contains(REGION_CODE)).then(c) for c in candidates])


def region_name(region: pl.Expr, location: pl.Expr) -> pl.Expr:
    """FOCUS RegionName: null exactly when RegionId is; CUR's location name, else the known name."""
    known = lookup(region, REGION_NAMES)
    return pl.when(region.is_not_null()).then(pl.coalesce(location, known, region))


def sku_meter(usage_type: pl.Expr) -> pl.Expr:
    """`USE1-BoxUsage:m5.large` -> `BoxUsage`: the metered functionality without region and size.

    `USE1-USW2-AWS-Out-Bytes` -> `AWS-Out-Bytes`; `EBS:VolumeUsage.gp2` keeps its volume type (only
    a lowercase instance size like `m5.large` or `db.r5.large` after the colon is dropped).
    """
    prefixes = "|".join(sorted(USAGE_TYPE_REGION_PREFIXES, key=len, reverse=True))
    meter = usage_type.str.replace(rf"^(?:(?:{prefixes})-){{1,2}}", "")  # inter-region: both ends
    return meter.str.replace(r":[a-z0-9-]+(?:\.[a-z0-9-]+)+$", "")


def resource_type(resource_id: pl.Expr, code: pl.Expr) -> pl.Expr:
    """A readable ResourceType for every ResourceId: ARN type, id prefix, then the service's own kind."""
    arn_pattern = r"^arn:aws[a-z-]*:([a-z0-9-]+):[^:]*:[^:]*:([A-Za-z0-9-]+)[/:]"
    service = resource_id.str.extract(r"^arn:aws[a-z-]*:([a-z0-9-]+):", 1)
    typed = resource_id.str.extract(arn_pattern, 2)
    by_arn = lookup(pl.concat_str([service, pl.lit(":"), typed]), ARN_RESOURCE_TYPES)
    by_arn_service = lookup(service, ARN_RESOURCE_TYPES)
    prefix = resource_id.str.extract(r"^((?:tgw-attach)|[a-z]+)-[0-9a-f]{8,}$", 1)
    by_prefix = lookup(prefix, ID_PREFIX_RESOURCE_TYPES)
    by_service = lookup(code, SERVICE_RESOURCE_TYPES)
    arn_fallback = pl.concat_str([service, pl.lit(" "), typed])  # null unless a typed ARN
    found = pl.coalesce(by_arn, by_prefix, by_arn_service, arn_fallback, by_service, pl.lit("Other"))
    return pl.when(resource_id.is_not_null()).then(found)


def focus_unit(unit: pl.Expr) -> pl.Expr:
    """A unit in the FOCUS Unit Format, where the delivered spelling is an unambiguous variant of one.

    `Hrs` -> `Hours`, `GB-Mo` -> `GB-Months`, `ReadCapacityUnit-Hrs` -> `ReadCapacityUnit-Hours`,
    `GB Months` -> `GB-Months`, `Lambda-GB-Second` -> `GB-Seconds`, `1K Requests` -> `1000 Requests`.
    A rate written `X Per Hour` is left alone: it may mean X/Hour or X-Hours.
    """
    value = unit.str.strip_chars()
    value = lookup(value, _STANDALONE, default=value)
    value = value.str.replace(r"^Lambda-GB-", "GB-")
    for plural, spellings in _TIME_PLURALS.items():
        alternatives = "|".join(sorted(set(spellings), key=len, reverse=True))
        value = value.str.replace(rf"^([A-Za-z][^ ]*(?: [^ ]+)*?)[- ](?:{alternatives})$", rf"${{1}}-{plural}")
    value = value.str.replace(r"^(\d+)K ", "${1}000 ").str.replace(r"^(\d+)M ", "${1}000000 ")
    is_rate = unit.str.contains(r"(?i) per ")
    return pl.when(is_rate).then(unit.str.strip_chars()).otherwise(value)
