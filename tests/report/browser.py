"""Headless Debian Chromium driven by selenium, for the report tests.

The browser must come from the system (``apt-get install -y chromium chromium-driver``): nothing can be
downloaded at test time. Without it the browser tests are skipped, except under ``CI=true``, where they fail
with one message saying what to install.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# the network is closed here: without the background-networking flags Chromium stalls on start
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
         "--hide-scrollbars")
MISSING = ("headless Chromium is needed for the report tests: apt-get install -y chromium chromium-driver "
           "(and pip install -e '.[test]' for selenium)")


def require_browser() -> None:
    """Skip (locally) or fail (under CI=true) when Chromium, chromedriver or selenium is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{MISSING}; missing: {', '.join(missing)}", pytrace=False)
        pytest.skip(f"{MISSING}; missing: {', '.join(missing)}")


@contextmanager
def chromium(width: int = 1400, height: int = 1000):
    """A selenium driver of headless Chromium with a new empty profile, closed (and its profile removed) after."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hypera-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={width},{height}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_report(driver, path: Path, timeout: float = 60) -> None:
    """Load a report from disk and wait until plotly has drawn every panel (each has its SVG)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(Path(path).resolve().as_uri())
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
        "const g = document.querySelectorAll('.plotly-graph-div');"
        "return document.readyState === 'complete' && g.length > 0 &&"
        " Array.from(g).every(x => x.querySelector('svg.main-svg') !== null);"))


def console_errors(driver) -> list[str]:
    """The page's console messages at level SEVERE (errors), as text."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def dom(driver) -> dict:
    """What the tests check, read from the page's DOM."""
    return driver.execute_script("""
        const q = s => Array.from(document.querySelectorAll(s));
        return {
          title: document.title,
          h1: q('h1').map(x => x.textContent),
          h2: q('h2').map(x => x.textContent),
          panels: q('section.panel').map(x => x.dataset.panel),
          plots: q('.plotly-graph-div').length,
          drawn: q('.plotly-graph-div svg.main-svg').length > 0 ? q('.plotly-graph-div').filter(
                   x => x.querySelector('svg.main-svg')).length : 0,
          plot_titles: q('section.panel').map(x => { const t = x.querySelector('.gtitle');
                                                     return t ? t.textContent : null; }),
          tables: q('table').map(t => t.dataset.table),
          captions: q('table caption').map(x => x.textContent),
          cells: Object.fromEntries(q('table').map(t => [t.dataset.table,
                   Array.from(t.querySelectorAll('tr')).map(r => Array.from(r.children).map(c => c.textContent))])),
          notes: q('p.note').map(x => x.textContent),
        };""")
