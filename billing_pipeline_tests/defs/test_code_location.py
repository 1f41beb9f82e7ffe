"""Loading the code location imports the data path and the Dagster shell, never a development tool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..conftest import write_config


def _probe_loading(tmp_path: Path, probe: str) -> Any:
    """What `probe` (Python that imports the code location) prints as JSON, run in a fresh process."""
    config = write_config(tmp_path, [{"name": "c", "provider": "aws_cur2", "url": str(tmp_path / "landing")}])
    return json.loads(
        subprocess.run(
            [sys.executable, "-c", probe],
            check=True,
            capture_output=True,
            text=True,
            env={"BILLING_CONFIG": str(config), "PATH": ""},
        ).stdout
    )


def _modules_after_loading(tmp_path: Path, roots: tuple[str, ...]) -> list[str]:
    """The modules under `roots` that a fresh process has imported once it loaded the code location."""
    return _probe_loading(
        tmp_path,
        "import json, sys; import billing_pipeline.definitions; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r})))",
    )


def test_loading_the_code_location_imports_no_tool_module(tmp_path: Path) -> None:
    loaded = _modules_after_loading(tmp_path, ("billing_pipeline",))
    assert "billing_pipeline.definitions" in loaded and "billing_pipeline.defs.assets" in loaded
    assert not [m for m in loaded if m.startswith("billing_pipeline.tools")], loaded


def test_loading_the_code_location_leaves_the_dashboards_plotting_library_to_the_monthly_asset(
    tmp_path: Path,
) -> None:
    """In production every run is a new process that imports the code location: a daily run must not pay for
    plotly, which only the monthly `dashboards` asset uses."""
    loaded = _modules_after_loading(tmp_path, ("plotly", "billing_pipeline"))
    assert "billing_pipeline.defs.dashboard_assets" in loaded
    assert not [m for m in loaded if m.startswith(("plotly", "billing_pipeline.views.dashboards"))], loaded


def test_loading_the_code_location_puts_what_it_imported_out_of_the_collectors_reach(tmp_path: Path) -> None:
    """Every run process walked the ~200,000 objects of the imports at each full collection and at exit
    (`gc.freeze()` at the end of `definitions`): what is frozen is what the loading left alive, and a full
    collection then walks only what came after."""
    before, frozen, tracked = _probe_loading(
        tmp_path,
        "import gc, json; before = len(gc.get_objects()); import billing_pipeline.definitions; "
        "print(json.dumps([before, gc.get_freeze_count(), len(gc.get_objects())]))",
    )
    assert frozen > 10 * before, (before, frozen)  # the imports, not the interpreter's own start-up objects
    assert tracked < frozen / 10, (tracked, frozen)
