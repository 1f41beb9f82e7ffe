"""billing-pipeline: cloud billing exports to trustworthy FOCUS cost data, as Dagster assets."""

from setuptools import find_packages, setup

DAGSTER_VERSION = "1.13.27"
DAGSTER_LIBRARY_VERSION = "0.29.27"

setup(
    name="billing_pipeline",
    version="0.1.0",
    description="Dagster assets that turn AWS, GCP, Azure and FOCUS billing exports into FOCUS cost data",
    packages=find_packages(exclude=["billing_pipeline_tests", "billing_pipeline_tests.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        f"dagster=={DAGSTER_VERSION}",
        f"dagster-webserver=={DAGSTER_VERSION}",
        f"dagster-aws=={DAGSTER_LIBRARY_VERSION}",
        f"dagster-gcp=={DAGSTER_LIBRARY_VERSION}",
        f"dagster-pandera=={DAGSTER_LIBRARY_VERSION}",
        "polars>=2.1,<3",
        "pandera[polars]>=0.35,<0.36",
        "pyarrow>=20",
        "duckdb>=2.0,<3",
        "s3fs>=2026.9",
        "gcsfs>=2026.9",  # gs:// sources and lakes (dagster-gcp does not bring it)
        "fsspec>=2026.9",
        "boto3",
        "numpy",
        "pyyaml",
        "plotly>=6,<8",  # the dashboards (views/dashboards): self-contained HTML with plotly.js inline
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-timeout",
            "hypothesis>=6.100",
            # moto's S3 backend and the flask app behind `moto_server`; the `server` extra would pull
            # cfn-lint, whose resolution backtracks to Python-2-only packages under pip 26
            "moto[s3]>=5.1",
            "flask",
            "flask-cors",
            # a GCS JSON API on 127.0.0.1 for gs:// tests (billing_pipeline_tests/gcs.py)
            "gcp-storage-emulator>=2026.7,<2027",
            "ruff",
            "requests",
            # import the classes named in deploy/dagster.k8s.yaml, so the test can validate their config
            f"dagster-k8s=={DAGSTER_LIBRARY_VERSION}",
            f"dagster-postgres=={DAGSTER_LIBRARY_VERSION}",
            # lints the IAM policies in deploy/iam (billing_pipeline_tests/lifecycle)
            "parliament==1.6.4",
            # drives the headless Chromium (Debian's `chromium` + `chromium-driver`) of the dashboard tests
            "selenium>=4,<5",
        ],
    },
    entry_points={
        "console_scripts": [
            "billing-generate=billing_pipeline.tools.generator.__main__:main",
        ],
    },
)
