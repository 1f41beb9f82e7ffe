"""Write a PNG screenshot of each dashboard page of a month, with headless Chromium (Debian's `chromium`
and `chromium-driver` packages) driven by selenium. The README's pictures come from here.

    python -m billing_pipeline.tools.screenshots --lake data/lake --month 2026-10 --out docs/screenshots

Pages on an s3:// or gs:// lake are copied to a local folder first (they are self-contained: plotly.js is
inline, so nothing is fetched). Never imported by the code location.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from billing_pipeline.platform.storage import Store
from billing_pipeline.views.dashboards.publish import PAGES, page_url

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH = 1280
MAX_HEIGHT = 2000  # the first screens of a page: enough to show it, small enough for the README
# true once every plotly div has been drawn (plotly adds `.main-svg` when it has rendered a chart)
CHARTS_DRAWN = (
    "const plots = document.querySelectorAll('.js-plotly-plot');"
    "return Array.from(plots).every(p => p.querySelector('.main-svg') !== null);"
)


def browser_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) when both are installed, else None."""
    chromium = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    driver = shutil.which("chromedriver") or (CHROMEDRIVER if Path(CHROMEDRIVER).exists() else None)
    return (chromium, driver) if chromium and driver else None


@contextlib.contextmanager
def headless_chromium(width: int = WIDTH, height: int = 900) -> Iterator[Any]:
    """A selenium WebDriver on headless Chromium, through the chromedriver on disk (no Selenium Manager
    download), with the browser console log readable (`driver.get_log('browser')`)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
    chromium, chromedriver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
        "--allow-file-access-from-files",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: Any, path: Path, timeout: float = 60.0) -> None:
    """Load a local page by file:// and wait until every chart is drawn."""
    driver.get(path.resolve().as_uri())
    deadline = time.monotonic() + timeout
    while not driver.execute_script(CHARTS_DRAWN):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: charts not drawn after {timeout:.0f} s")
        time.sleep(0.2)


def screenshot(driver: Any, page: Path, png: Path, width: int = WIDTH) -> Path:
    """A PNG of the whole page (up to MAX_HEIGHT pixels tall)."""
    open_page(driver, page)
    height = min(int(driver.execute_script("return document.documentElement.scrollHeight")), MAX_HEIGHT)
    driver.set_window_size(width, height)
    open_page(driver, page)  # re-laid out at the final size
    png.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(png))
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True, help="the lake URL (a folder, s3:// or gs://)")
    parser.add_argument("--month", required=True, help="YYYY-MM")
    parser.add_argument("--out", default="docs/screenshots", help="where the PNGs go")
    parser.add_argument("--width", type=int, default=WIDTH)
    args = parser.parse_args(argv)
    month = dt.date.fromisoformat(f"{args.month}-01")
    store = Store()
    lake = str(Path(args.lake).resolve()) if "://" not in args.lake else args.lake
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="billing-screenshots-") as tmp, headless_chromium(args.width) as driver:
        for name in PAGES:
            url = page_url(lake, month, name)
            if not store.exists(url):
                print(f"{url}: no such page (materialize the month's dashboards first)", file=sys.stderr)
                return 1
            local = Path(tmp) / f"{name}.html"
            local.write_bytes(store.read_bytes(url))
            png = screenshot(driver, local, out / f"{name}.png", args.width)
            print(f"{png} ({png.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
