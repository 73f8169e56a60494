"""The app in real headless chromium (Playwright) against `streamlit run app.py` on a copy of the tiny workspace.

Upload a query and see matches (the first upload's and a later upload's query->matches times are printed,
not asserted), move the cutoff slider and see the grid update, open every page and see its Vega charts
render, run 8 sessions searching at once with one index opened by the server; a deep link restores the
query and the hash length and a control change updates the URL; "More like this" changes the query; the
map draws and a brush selection shows images; the Evaluation page's second visit (from a new server
process) is timed and printed, its worst query opens in Search, and its downloaded submission scores with
`eproduct evaluate --submission` exactly as the page says; Compare shows both indexes; the sidebar builds
a small Fashion-MNIST workspace with progress (last: it adds a workspace). Screenshots go to test-artifacts/ (gitignored);
with EPRODUCT_UPDATE_SCREENSHOT=1 the Search and Map screenshots are also copied to assets/.
EPRODUCT_BROWSER_HOME points the tests at another workspace root (e.g. the full demo, for timing).

Fails (never skips) when /usr/bin/chromium or the playwright package is missing: .ci/run installs chromium
with apt and playwright comes with the `test` extra. Never runs `playwright install`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
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
PAGES = {"catalog": "Catalog", "model": "Model", "evaluation": "Evaluation", "index-info": "Index"}
NAV = ["Search", "Catalog", "Model", "Evaluation", "Map", "Compare", "Index"]  # in nav order

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    require_system_file(Path(CHROMIUM), "chromium")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def browser_home(tiny_workspace, tmp_path_factory) -> Path:
    """A copy of the tiny workspace root: these tests write caches, maps and a new workspace into it."""
    if os.environ.get("EPRODUCT_BROWSER_HOME"):
        return Path(os.environ["EPRODUCT_BROWSER_HOME"])
    home = tmp_path_factory.mktemp("browser_home")
    shutil.copytree(tiny_workspace / "demo", home / "demo", symlinks=True)
    return home


@contextlib.contextmanager
def _streamlit(home: Path, log_path: Path, **env_extra: str):
    """`streamlit run app.py` on 127.0.0.1 and a free port serving `home`; yields its URL; stopped afterwards."""
    port = _free_port()
    env = dict(os.environ, EPRODUCT_HOME=str(home), OMP_NUM_THREADS="1", **env_extra)
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
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def server(browser_home, tmp_path_factory):
    """(url, log file) of `streamlit run app.py` serving the copied workspace; one server for the module."""
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    with _streamlit(browser_home, log_path) as url:
        yield url, log_path


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


def _save_readme_screenshot(shot: Path, name: str = "search") -> None:
    """A small copy for README (assets/screenshot-NAME.png): 1100 px wide, 256 colours."""
    from PIL import Image

    with Image.open(shot) as image:
        small = image.convert("RGB").resize((1100, round(image.height * 1100 / image.width)), Image.LANCZOS)
        small.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            ROOT / "assets" / f"screenshot-{name}.png", optimize=True
        )


def _wait_text(page, text: str, log_path: Path, name: str) -> None:
    """Wait for `text`; on a timeout fail with a screenshot, the page's text and the server log's tail."""
    try:
        page.get_by_text(text).wait_for(timeout=WAIT_MS)
    except sync_api.TimeoutError:
        shot = _shot(page, f"{name}-timeout")
        body = page.locator("body").inner_text()[-3000:]
        pytest.fail(
            f"{text!r} not shown (screenshot {shot}). Page text:\n{body}\nServer log:\n{log_path.read_text()[-3000:]}"
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


def _new_page(browser, width: int = 1400, height: int = 1000):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(WAIT_MS)  # a loaded 2-core machine can take long to rerun
    return page


def _upload_and_wait(page, file: dict) -> float:
    """Upload `file`; seconds until its matches (images included) are on screen."""
    started = time.perf_counter()
    page.locator('input[type="file"]').set_input_files(files=[file])
    page.get_by_text(f"query: {file['name']}").wait_for(timeout=WAIT_MS)
    _metric(page, "Matches").wait_for(timeout=WAIT_MS)
    _images_loaded(page)
    return time.perf_counter() - started


def test_upload_then_cutoff_slider_updates_the_grid(server, browser, browser_home):
    url, _ = server
    page = _new_page(browser)
    page.goto(url)
    _metric(page, "Matches").wait_for(timeout=WAIT_MS)
    _settled(page)
    home = browser_home
    first = _upload_and_wait(page, _query_file(home, 2))  # the model was loading in the background since the start
    _settled(page)
    seconds = _upload_and_wait(page, _query_file(home, 3))
    _settled(page)
    print(f"\nfirst upload on a fresh server -> matches on screen: {first * 1000:.0f} ms (browser, {home})")
    print(f"later upload -> matches on screen: {seconds * 1000:.0f} ms; load average {os.getloadavg()}")
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
    page = _new_page(browser)
    page.goto(f"{url}/{path}")
    page.get_by_role("heading", name=PAGES[path]).first.wait_for(timeout=WAIT_MS)
    page.locator(CHART).first.wait_for(timeout=WAIT_MS)
    _settled(page)
    assert page.locator(CHART).count() >= 1
    nav = page.locator('[data-testid="stSidebarNav"]')
    assert [t.split("\n")[-1] for t in nav.locator("a").all_inner_texts()] == NAV
    assert page.get_by_text("Page not found").count() == 0
    _no_errors(page)
    _shot(page, path)
    page.close()


def test_eight_sessions_search_at_once_with_one_index(server, browser, browser_home):
    url, log_path = server
    home = browser_home
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


def _query_ids(home: Path) -> list[str]:
    import pandas as pd

    return list(pd.read_csv(home / "demo" / "catalog" / "query.csv", dtype=str)["image_id"])


def _url_params(page) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(page.url).query))


def _slider_value(page, label: str) -> str:
    slider = page.locator('[data-testid="stSlider"]').filter(has_text=label)
    return slider.locator('[data-testid="stSliderThumbValue"]').first.inner_text()


def test_deep_link_restores_the_view_and_a_control_updates_the_url(server, browser, browser_home):
    url, _ = server
    query = _query_ids(browser_home)[4]
    page = _new_page(browser)
    page.goto(f"{url}/?workspace=demo&index=seed-20bit&query={query}&mode=cutoff&bits=16&cutoff=0.3")
    page.get_by_text(f"query: {query}").wait_for(timeout=WAIT_MS)
    _metric(page, "Matches").wait_for(timeout=WAIT_MS)
    _settled(page)
    assert _slider_value(page, "Hash length") == "16"
    assert "0.30" in _slider_value(page, "Distance cutoff")
    assert _metric(page, "Hamming radius").inner_text() == "4"  # d / 16 < 0.3 <=> d <= 4: 16 bits and 0.3 applied
    params = _url_params(page)
    assert params["query"] == query and params["bits"] == "16" and params["index"] == "seed-20bit"
    assert params["mode"] == "cutoff" and float(params["cutoff"]) == pytest.approx(0.3)
    _no_errors(page)
    slider = page.locator('input[type="range"][aria-label="Distance cutoff (code cosine)"]')
    slider.focus()
    page.keyboard.press("ArrowRight")  # 0.30 -> 0.31: the URL follows
    page.wait_for_function(
        "() => (new URLSearchParams(location.search).get('cutoff') || '').startsWith('0.31')", timeout=WAIT_MS
    )
    _settled(page)
    assert _url_params(page)["query"] == query
    # The link opened in another session shows the same view
    other = _new_page(browser)
    other.goto(page.url)
    other.get_by_text(f"query: {query}").wait_for(timeout=WAIT_MS)
    _settled(other)
    assert "0.31" in _slider_value(other, "Distance cutoff") and _slider_value(other, "Hash length") == "16"
    _no_errors(other)
    other.close()
    page.close()


def test_more_like_this_makes_a_match_the_query(server, browser):
    url, _ = server
    page = _new_page(browser)
    page.goto(url)
    _metric(page, "Matches").wait_for(timeout=WAIT_MS)
    _settled(page)
    _images_loaded(page)  # no thumbnail still arriving moves the buttons while one is clicked
    caption = page.locator('[data-testid="stImage"]').nth(1).inner_text()  # the first match (0 is the query)
    item = caption.replace("✓ match · ", "").split(" · ")[0].strip()
    page.get_by_role("button", name="More like this").first.click()
    _wait_text(page, f"query: {item} (index item)", server[1], "more-like-this")
    _settled(page)
    assert _url_params(page)["like"] == item
    assert _metric(page, "Matches").inner_text() == "10"
    captions = [page.locator('[data-testid="stImage"]').nth(n).inner_text() for n in range(1, 6)]
    mine = [c for c in captions if c.replace("✓ match · ", "").startswith(f"{item} ")]
    assert mine and "cos 0.000" in mine[0]  # searched with its own stored vector: itself at distance 0
    _no_errors(page)
    page.close()


def test_map_draws_and_a_selection_shows_images(server, browser):
    url, _ = server
    page = _new_page(browser, 1400, 1100)
    page.goto(f"{url}/map")
    page.get_by_role("heading", name="Map").first.wait_for(timeout=WAIT_MS)
    canvas = page.locator(CHART).first
    canvas.wait_for(timeout=WAIT_MS)
    _settled(page)
    assert page.get_by_text("No selection yet.").count() == 1
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.1)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.85, box["y"] + box["height"] * 0.85, steps=8)
    page.mouse.up()
    page.get_by_text(re.compile(r"selected \(the first")).wait_for(timeout=WAIT_MS)
    page.locator('[data-testid="stImageContainer"] img').first.wait_for(timeout=WAIT_MS)  # the selected images
    _settled(page)
    _images_loaded(page)
    assert page.locator('[data-testid="stImageContainer"] img').count() >= 1
    _no_errors(page)
    shot = _shot(page, "map")
    if os.environ.get("EPRODUCT_UPDATE_SCREENSHOT") == "1":
        _save_readme_screenshot(shot, "map")
    page.close()


def _evaluation_ready(page) -> None:
    page.get_by_role("heading", name="Evaluation").first.wait_for(timeout=WAIT_MS)
    page.get_by_text("Downloads").wait_for(timeout=WAIT_MS)
    page.locator(CHART).first.wait_for(timeout=WAIT_MS)
    _settled(page)


def test_evaluation_cached_download_scores_and_worst_query_link(server, browser, browser_home, tmp_path):
    url, _ = server
    page = _new_page(browser)
    started = time.perf_counter()
    page.goto(f"{url}/evaluation")
    _evaluation_ready(page)
    first = time.perf_counter() - started
    shown = float(_metric(page, "MAR@10").last.inner_text())
    with page.expect_download() as info:
        page.get_by_role("button", name="Submission CSV (these settings)").click()
    submission = tmp_path / "submission.csv"
    info.value.save_as(submission)
    scored = subprocess.run(
        [
            sys.executable,
            "-m",
            "eproduct_core",
            "evaluate",
            "--catalog",
            str(browser_home / "demo" / "catalog"),
            "--submission",
            str(submission),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scored.returncode == 0, scored.stderr[-2000:]
    summary = json.loads((tmp_path / "submission.csv.eval" / "summary.json").read_text())
    assert f"{summary['mar@10_G']:.3f}" == f"{shown:.3f}"  # the page's MAR@10 is what the CLI scores
    # The worst query opens in Search
    link = page.get_by_role("link", name="Open in Search").first
    query = re.search(r"query=([^&]+)", link.get_attribute("href")).group(1)
    link.click()
    page.get_by_text(f"query: {query}").wait_for(timeout=WAIT_MS)
    _settled(page)
    _no_errors(page)
    page.close()
    # Second visit, from a new server process: everything is read from the workspace's cache
    cached = sorted((browser_home / "demo" / "cache").iterdir())
    with _streamlit(browser_home, tmp_path / "second.log") as second_url:
        warm = _new_page(browser)
        warm.goto(second_url)  # the process's first script run (imports, index) is not the page's doing
        _metric(warm, "Matches").wait_for(timeout=WAIT_MS)
        _settled(warm)
        started = time.perf_counter()
        warm.locator('[data-testid="stSidebarNav"] a', has_text="Evaluation").click()  # as a user opens it
        _evaluation_ready(warm)
        second = time.perf_counter() - started
        assert sorted((browser_home / "demo" / "cache").iterdir()) == cached  # nothing computed again
        _no_errors(warm)
        warm.close()
    print(
        f"\nEvaluation page: first visit {first:.2f} s, second visit (new server process) {second:.2f} s; "
        f"load average {os.getloadavg()}"
    )


def test_compare_shows_both_indexes_and_their_differences(server, browser):
    url, _ = server
    page = _new_page(browser)
    page.goto(f"{url}/compare")
    page.get_by_role("heading", name="Compare").first.wait_for(timeout=WAIT_MS)
    # the page draws in steps: wait for each part, then for the run to finish, then count
    for part in (
        _metric(page, "MAR@10 of seed-20bit"),
        _metric(page, "MAR@10 of metric-256bit"),
        _metric(page, "Found by seed-20bit only"),
        page.get_by_text("Every query"),
    ):
        part.first.wait_for(timeout=WAIT_MS)
    _settled(page)
    assert _metric(page, "MAR@10 of metric-256bit").count() == 1
    assert _metric(page, "Found by seed-20bit only").count() == 1
    assert page.get_by_text("Every query").count() == 1
    _no_errors(page)
    _shot(page, "compare")
    page.close()


def test_sidebar_builds_a_fashion_mnist_workspace_with_progress(server, browser, browser_home):
    """Last in the module: it adds a workspace to the served root."""
    url, _ = server
    page = _new_page(browser)
    page.goto(url)
    _metric(page, "Matches").wait_for(timeout=WAIT_MS)
    _settled(page)
    page.get_by_text("Real photos: Fashion-MNIST").click()
    page.get_by_text("Quick try", exact=False).click()
    _settled(page)
    page.get_by_role("button", name="Build the Fashion-MNIST workspace").click()
    page.get_by_text("Building the Fashion-MNIST workspace...").wait_for(timeout=WAIT_MS)
    page.locator('[data-testid="stProgress"]').first.wait_for(timeout=WAIT_MS)
    # the build switched the session to the new workspace
    page.locator('[data-testid="stSidebar"]').get_by_text("Showing: Fashion-MNIST").wait_for(timeout=600_000)
    _metric(page, "Matches").wait_for(timeout=WAIT_MS)
    _settled(page)
    assert (browser_home / "fashion-mnist" / "workspace.json").is_file()
    assert _metric(page, "Matches").inner_text() == "10"
    _no_errors(page)
    page.close()
