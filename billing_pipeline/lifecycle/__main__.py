"""Render the lifecycle policy for the store: `python -m billing_pipeline.lifecycle s3-lifecycle|iam billing.yaml`.

- `s3-lifecycle billing.yaml [--bucket B]`: S3 lifecycle rules JSON (stdout, or `--out FILE`) for the lake's
  bucket, or for bucket B (the raw lake's, when `raw_lake_url` is in another bucket);
- `iam billing.yaml --out DIR`: the three IAM policy documents (`deploy/iam/` holds the example's).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from billing_pipeline.lifecycle.iam import iam_policies
from billing_pipeline.lifecycle.s3_rules import s3_lifecycle_rules
from billing_pipeline.platform.config import load_config


def render(document: object) -> str:
    return json.dumps(document, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billing_pipeline.lifecycle", description=__doc__)
    parser.add_argument("what", choices=["s3-lifecycle", "iam"])
    parser.add_argument("config", help="path of billing.yaml")
    parser.add_argument("--out", help="a file (s3-lifecycle) or a folder (iam); default: stdout")
    parser.add_argument("--bucket", help="s3-lifecycle: the bucket to render rules for (default: the lake's)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    if args.what == "s3-lifecycle":
        text = render(s3_lifecycle_rules(config, args.bucket))
        if args.out:
            Path(args.out).write_text(text)
        else:
            sys.stdout.write(text)
        return 0
    policies = iam_policies(config)
    if not args.out:
        sys.stdout.write(render(policies))
        return 0
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for name, policy in policies.items():
        (Path(args.out) / name).write_text(render(policy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
