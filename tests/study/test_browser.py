"""The explorer as a person uses it: JupyterLab in a real (headless) Chromium.

JupyterLab starts on localhost with a token, Chromium (Debian's, driven by Playwright; no
browser download) opens a copy of ``notebooks/explore.ipynb``, runs all cells, moves the
epoch slider and checks that the heatmap's pixels change and that no cell shows an error.
A screenshot lands in ``screenshots/`` (ignored by git) for a person to look at; with
SYNAPSES_RETAKE_SCREENSHOTS=1 the slider test also writes the committed figures/explorer.png.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.end_to_end,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyter_lab(tmp_path):
    """JupyterLab serving a copy of the explorer notebook (so no output lands in git)."""
    shutil.copy(ROOT / "notebooks" / "explore.ipynb", tmp_path / "explore.ipynb")
    yield from _serve(tmp_path)


@pytest.fixture
def jupyter_lab_set_mlp_missing_seed(tmp_path):
    """The explorer notebook opening ``set_mlp`` on a results folder whose SET runs lack
    seed 2 (links to the committed run folders of the others)."""
    import json

    from synapses_study.reading.results import select_runs
    from synapses_study.runs.run_dir import RunDir

    results = tmp_path / "results"
    results.mkdir()
    for config in select_runs("set_mlp"):
        if not (config.model != "Dense" and config.seed == 2):
            (results / config.run_id()).symlink_to(RunDir.of(config).path)
    nb = json.loads((ROOT / "notebooks" / "explore.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    cell["source"] = f'sweep = "set_mlp"\nresults_dir = "{results}"\n'
    (tmp_path / "explore.ipynb").write_text(json.dumps(nb))
    yield from _serve(tmp_path)


def _serve(tmp_path: Path):
    """Start JupyterLab on ``tmp_path``; yields the explorer notebook's URL."""
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={tmp_path}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--allow-root",  # CI runs as root
        "--LabApp.extension_manager=readonly",
    ]
    log = open(tmp_path / "jupyter.log", "w")
    # the notebook copy lives outside the checkout: the study finds the checkout through
    # SYNAPSES_ROOT (synapses_study.setup.paths), as a user's copy elsewhere would
    env = os.environ | {"SYNAPSES_ROOT": str(ROOT)}
    # JupyterLab asks whether to fetch its news in a pop-up over the notebook: answered "no"
    # in user settings of its own, outside the folder it shows (news_url=None alone does not
    # stop the question)
    settings_dir = tmp_path.parent / f"{tmp_path.name}-lab-settings"
    settings = settings_dir / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings_dir)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if server.poll() is not None:
                break
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"JupyterLab did not start: {(tmp_path / 'jupyter.log').read_text()[-2000:]}")
        yield f"{base}/lab/tree/explore.ipynb?token={token}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _run_all(page, url: str):
    """Open the notebook at ``url``, run every cell, and return the explorer's image once shown."""
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    select = page.get_by_role("button", name="Select", exact=True)
    try:  # JupyterLab may ask which kernel to start
        select.click(timeout=10_000)
    except playwright.TimeoutError:
        pass
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    image = page.locator(".jp-OutputArea-output img").first
    image.wait_for(state="visible", timeout=120_000)
    page.wait_for_timeout(500)
    return image


@contextlib.contextmanager
def _chromium_page(width: int):
    """A page of headless Chromium (Debian's), and ``screenshots/`` ready for its pictures."""
    (ROOT / "screenshots").mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": 1000})
        finally:
            browser.close()


def _errors(page) -> list[str]:
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    texts = [errors.nth(i).inner_text() for i in range(errors.count())]
    return [t for t in texts if "Error" in t or "Traceback" in t]


def test_compare_mode_in_jupyterlab_with_a_missing_seed(jupyter_lab_set_mlp_missing_seed):
    """Compare mode on set_mlp with seed 2 missing: the seed menus offer the finished seeds
    only and say over how many the mean is, B is a SET net (never the dense baseline), and
    ticking "compare with B" redraws the image (its legibility is checked on the figure's
    bounding boxes in tests/study/test_explorer.py; the screenshot is for a person)."""
    with _chromium_page(1500) as page:
        image = _run_all(page, jupyter_lab_set_mlp_missing_seed)
        before = image.screenshot()
        page.locator(".widget-checkbox input[type=checkbox]").first.check()
        page.wait_for_timeout(2500)
        after = image.screenshot()
        page.screenshot(path=str(ROOT / "screenshots" / "explorer_compare.png"), full_page=True)
        assert before != after, "ticking compare with B did not redraw the image"
        menus = page.locator(".widget-dropdown select")
        texts = [menus.nth(i).inner_text().replace("\xa0", " ") for i in range(menus.count())]
        assert sum("mean over 2 seeds" in t and "seed 2" not in t for t in texts) == 2, texts
        assert not any("dense" in t for t in texts), texts
        assert not _errors(page)


def test_explorer_in_jupyterlab_moves_with_the_slider(jupyter_lab):
    shots = ROOT / "screenshots"
    with _chromium_page(1400) as page:
        try:
            image = _run_all(page, jupyter_lab)
            before = image.screenshot()
            handle = page.locator(".widget-slider .noUi-handle").first
            handle.focus()
            for _ in range(40):
                handle.press("ArrowRight")
            page.wait_for_timeout(1500)
            after = image.screenshot()
            shot = page.screenshot(path=str(shots / "explorer.png"), full_page=True)
            assert before != after, "the heatmap did not change when the slider moved"
            assert not _errors(page)
            if os.environ.get("SYNAPSES_RETAKE_SCREENSHOTS"):
                # README's and docs/figures.md's picture, stamped with the hash of the code it
                # shows running (tests/study/test_site.py fails when the notebook's code moves on)
                from synapses_study.figures.site import stamp_screenshot

                taken_by = "tests/study/test_browser.py::test_explorer_in_jupyterlab_moves_with_the_slider"
                stamp_screenshot(
                    shot, ROOT / "figures" / "explorer.png", ROOT / "notebooks" / "explore.ipynb", taken_by
                )
        finally:
            page.screenshot(path=str(shots / "explorer_last.png"), full_page=True)
