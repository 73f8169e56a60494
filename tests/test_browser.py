"""The app in real headless chromium (Playwright) against `streamlit run app.py` on the tiny workspace.

Upload a query and see matches (the query->matches time is printed, not asserted), move the cutoff
slider and see the grid update, open every page and see its Vega charts render, and run 8 sessions
searching at once with one index opened by the server. Screenshots go to test-artifacts/ (gitignored);
with EPRODUCT_UPDATE_SCREENSHOT=1 the Search screenshot is also copied to assets/screenshot-search.png.
EPRODUCT_BROWSER_HOME points the tests at another workspace root (e.g. the full demo, for timing).

Fails (never skips) when /usr/bin/chromium or the playwright package is missing: .ci/run installs chromium
with apt and playwright comes with the `test` extra. Never runs `playwright install`.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import require_system_file
from playwright import sync_api

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 90_000  # the first search imports torch in the server
CHART = '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg.marks'
PAGES = {"catalog": "Catalog", "model": "Model", "evaluation": "Evaluation", "index-info": "Index"}  # in nav order

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    require_system_file(Path(CHROMIUM), "chromium")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_workspace, tmp_path_factory):
    """(url, log file) of `streamlit run app.py` serving the tiny workspace; stopped afterwards."""
    home = os.environ.get("EPRODUCT_BROWSER_HOME") or str(tiny_workspace)
    port = _free_port()
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = dict(os.environ, EPRODUCT_HOME=home, OMP_NUM_THREADS="1")
    env.pop("EPRODUCT_ROOTS", None)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(port),
                "--server.headless",
                "true",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(f"streamlit did not start: {log_path.read_text()[-2000:]}")
        yield url, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        playwright.selectors.set_test_id_attribute("data-testid")
        yield launched
        launched.close()


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"browser-{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def _metric(page, label: str):
    """The value element of the metric whose label is exactly `label`."""
    exact = page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(f"^{re.escape(label)}$"))
    return page.locator('[data-testid="stMetric"]').filter(has=exact).locator('[data-testid="stMetricValue"]')


def _settled(page) -> None:
    """Wait until the script run finished (no running indicator, no stale elements)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]') && "
        "!document.querySelector('[data-stale=\"true\"]')",
        timeout=WAIT_MS,
    )


def _images_loaded(page) -> None:
    page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=WAIT_MS)


def _save_readme_screenshot(shot: Path) -> None:
    """A small copy for README: 1100 px wide, 256 colours."""
    from PIL import Image

    with Image.open(shot) as image:
        small = image.convert("RGB").resize((1100, round(image.height * 1100 / image.width)), Image.LANCZOS)
        small.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            ROOT / "assets" / "screenshot-search.png", optimize=True
        )


def _no_errors(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("Something went wrong").count() == 0


def _query_file(home: Path, number: int) -> dict:
    import pandas as pd

    catalog = home / "demo" / "catalog"
    query = pd.read_csv(catalog / "query.csv", dtype=str)
    return {
        "name": f"upload-{number}.jpg",
        "mimeType": "image/jpeg",
        "buffer": (catalog / query["path"].iat[number]).read_bytes(),
    }


def _home(tiny_workspace) -> Path:
    return Path(os.environ.get("EPRODUCT_BROWSER_HOME") or tiny_workspace)


def _upload_and_wait(page, file: dict) -> float:
    """Upload `file`; seconds until its matches (images included) are on screen."""
    started = time.perf_counter()
    page.locator('input[type="file"]').set_input_files(files=[file])
    page.get_by_text(f"query: {file['name']}").wait_for(timeout=WAIT_MS)
    _metric(page, "Matches").wait_for(timeout=WAIT_MS)
    _images_loaded(page)
    return time.perf_counter() - started


def test_upload_then_cutoff_slider_updates_the_grid(server, browser, tiny_workspace):
    url, _ = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)  # a loaded 2-core machine can take long to rerun
    page.goto(url)
    _metric(page, "Matches").wait_for(timeout=WAIT_MS)
    _settled(page)
    home = _home(tiny_workspace)
    _upload_and_wait(page, _query_file(home, 2))  # the first upload loads the model in the server
    _settled(page)
    seconds = _upload_and_wait(page, _query_file(home, 3))
    _settled(page)
    print(f"\nquery -> matches on screen: {seconds * 1000:.0f} ms (browser, {home})")
    assert _metric(page, "Matches").inner_text() == "10"
    _no_errors(page)

    page.locator('[data-testid="stRadio"]').get_by_text("cutoff", exact=True).click()
    _settled(page)
    slider = page.locator('input[type="range"][aria-label="Distance cutoff (code cosine)"]')
    slider.wait_for(state="attached", timeout=WAIT_MS)
    page.wait_for_function(
        "() => !document.querySelector('input[aria-label=\"Distance cutoff (code cosine)\"]').disabled", timeout=WAIT_MS
    )
    before = int(_metric(page, "Matches").inner_text().replace(",", ""))
    images_before = page.locator('[data-testid="stImage"]').count()
    slider.focus()
    page.keyboard.press("End")  # one change (cutoff 1.0), so one rerun: every item with a code passes
    page.wait_for_function(
        "(n) => { const m = [...document.querySelectorAll('[data-testid=\"stMetric\"]')].find(e => e.innerText.startsWith('Matches'));"
        " return m && parseInt(m.querySelector('[data-testid=\"stMetricValue\"]').innerText.replace(/,/g, '')) > n; }",
        arg=before,
        timeout=WAIT_MS,
    )
    _settled(page)
    after = int(_metric(page, "Matches").inner_text().replace(",", ""))
    assert after > before
    assert page.locator('[data-testid="stImage"]').count() > images_before or images_before >= 41
    assert "1.00" in page.locator('[data-testid="stSliderThumbValue"]').first.inner_text()
    _no_errors(page)
    _images_loaded(page)
    shot = _shot(page, "search")
    if os.environ.get("EPRODUCT_UPDATE_SCREENSHOT") == "1":
        _save_readme_screenshot(shot)
    page.close()


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders_its_charts(server, browser, path):
    url, _ = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WAIT_MS)  # a loaded 2-core machine can take long to rerun
    page.goto(f"{url}/{path}")
    page.get_by_role("heading", name=PAGES[path]).first.wait_for(timeout=WAIT_MS)
    page.locator(CHART).first.wait_for(timeout=WAIT_MS)
    _settled(page)
    assert page.locator(CHART).count() >= 1
    nav = page.locator('[data-testid="stSidebarNav"]')
    assert [t.split("\n")[-1] for t in nav.locator("a").all_inner_texts()] == ["Search", *PAGES.values()]
    assert page.get_by_text("Page not found").count() == 0
    _no_errors(page)
    _shot(page, path)
    page.close()


def test_eight_sessions_search_at_once_with_one_index(server, browser, tiny_workspace):
    url, log_path = server
    home = _home(tiny_workspace)
    contexts = [browser.new_context(viewport={"width": 1200, "height": 900}) for _ in range(8)]
    pages = [context.new_page() for context in contexts]
    for page in pages:
        page.set_default_timeout(WAIT_MS)
    for page in pages:
        page.goto(url)
    for page in pages:
        _metric(page, "Matches").wait_for(timeout=WAIT_MS)
    files = [_query_file(home, n) for n in range(8)]
    for page, file in zip(pages, files, strict=False):  # all eight uploads in flight together
        page.locator('input[type="file"]').set_input_files(files=[file])
    for page, file in zip(pages, files, strict=False):
        page.get_by_text(f"query: {file['name']}").wait_for(timeout=WAIT_MS)
        _settled(page)
        assert _metric(page, "Matches").inner_text() == "10"
        _no_errors(page)
    _shot(pages[-1], "concurrent-8")
    for context in contexts:
        context.close()
    opened = [line for line in log_path.read_text().splitlines() if "opened index" in line]
    per_index = {line.split("opened index ")[1].split(" ")[0] for line in opened}
    assert len(opened) == len(per_index), f"an index was opened more than once: {opened}"
