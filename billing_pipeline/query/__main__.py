"""Entry point of `python -m billing_pipeline.query`; see `billing_pipeline.platform.catalogue.main`."""

import sys

from billing_pipeline.platform.catalogue import main

if __name__ == "__main__":
    sys.exit(main())
