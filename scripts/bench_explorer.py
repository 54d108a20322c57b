"""The head explorer's weight and speed: `headcoop explore` on a run, then the page opened
from its file in headless Chromium (Debian's chromium and chromedriver, through selenium)
five times, each timed from navigation to the grid being ready and to a head's panel being
drawn. Run on idle cores; the first opening pays the browser's cold start and is shown apart.

    python scripts/bench_explorer.py runs/paper [--out DIR]
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from headcoop.cli import main as headcoop

OPENINGS = 5


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def _open(driver, url: str, head: str) -> tuple[float, float]:
    """Seconds from navigation to the grid being ready, and to draw the panel of ``head``
    once clicked, both by the page's own clock (``performance.now``)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get(url)
    wait = WebDriverWait(driver, 30, poll_frequency=0.05)
    body = driver.find_element(By.TAG_NAME, "body")
    wait.until(lambda d: body.get_attribute("data-ready"))
    driver.find_element(By.CSS_SELECTOR, f'[data-head="{head}"]').click()
    panel = driver.find_element(By.ID, "head-panel")
    wait.until(lambda d: panel.get_attribute("data-head") == head)
    ready, drawn = body.get_attribute("data-ready-ms"), panel.get_attribute("data-drawn-ms")
    return float(ready) / 1000, float(drawn) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a checkpoint or run directory (make train: runs/paper)")
    parser.add_argument("--out", default=None, help="where the page goes (default: a temp dir)")
    args = parser.parse_args()
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        print("needs Debian's chromium and chromium-driver (make test installs them)")
        return 1
    out = Path(args.out or tempfile.mkdtemp(prefix="explorer-"))
    clock = time.perf_counter()
    if headcoop(["explore", args.run, "--out", str(out)]) != 0:
        return 1
    built = time.perf_counter() - clock
    page = out / "explorer.html"
    driver = _driver()
    try:
        timings = [_open(driver, page.resolve().as_uri(), "L0H0") for _ in range(OPENINGS)]
    finally:
        driver.quit()
    ready = [t[0] for t in timings[1:]]
    panel = [t[1] for t in timings[1:]]
    print(f"explorer.html: {page.stat().st_size / 1e6:.2f} MB (everything the page loads)")
    print(f"headcoop explore (analysis included where missing): {built:.1f} s")
    print(f"first opening (cold browser): ready in {timings[0][0]:.3f} s")
    print(
        f"next {len(ready)} openings: ready in median {statistics.median(ready):.3f} s "
        f"(max {max(ready):.3f}); a head's panel drawn in median "
        f"{statistics.median(panel):.3f} s (max {max(panel):.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
