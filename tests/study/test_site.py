"""The study as a site (``make site``): the generated provenance, the committed screenshots,
and the built site opened in a real (headless) Chromium.

The browser tests read ``_build/site/``, which ``make site`` builds (``.ci/run`` builds it with
the smoke profile before ``make test``); without it they skip, except under CI, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from synapses_study.figures import site
from synapses_study.figures.figure_runs import figure_runs

ROOT = Path(__file__).parents[2]
BUILT = ROOT / "_build" / "site"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOWN = re.compile(r"!\[[^\]]*\]\((?:\.\./)?figures/([^)\s]+)\)")
PAGES = [ROOT / "regularization.md", *sorted((ROOT / "docs").glob("*.md"))]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


needs_git = pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)


def test_a_marked_number_becomes_its_value_linked_to_its_sweep():
    text = "ρ = <!--v reproduction:topology | weight_decay=0.0 | ink ρ -->-0.231 ± 0.028<!--/v-->, n = 3.\n"
    out = site.site_markdown(text, "regularization")
    assert out == (
        "ρ = [-0.231 ± 0.028](_site_sources/sources.md#sweep-reproduction "
        '"reproduction:topology | weight_decay=0.0 | ink ρ"), n = 3.\n'
    )
    # from docs/, the same link climbs one folder
    assert "(../_site_sources/sources.md#sweep-reproduction " in site.site_markdown(text, "docs/figures")


def test_a_marked_table_keeps_its_rows_and_names_its_sweeps():
    text = "<!-- table: reproduction+extensions_1000:verdict -->\n| a | b |\n|---|---|\n| 1 | 2 |\n<!-- /table -->\n"
    out = site.site_markdown(text, "regularization")
    assert "<!--" not in out and "| 1 | 2 |" in out
    assert "[reproduction](_site_sources/sources.md#sweep-reproduction)" in out
    assert "[extensions_1000](_site_sources/sources.md#sweep-extensions_1000)" in out


@needs_git
def test_a_figure_gets_a_numbered_caption_ending_with_its_provenance():
    text = "![ink ρ](figures/summary_topology.png)\n\n*Ink ρ of the first layer,\nmean over seeds.*\n\nNext.\n"
    out = site.site_markdown(text, "regularization")
    commit = _git("log", "-1", "--format=%h", "--", "figures/summary_topology.png")
    assert out.startswith(":::{figure} figures/summary_topology.png\n:name: fig-summary-topology\n")
    caption = out.split("\n\n")[1]
    assert caption.startswith("Ink ρ of the first layer, mean over seeds. Drawn by notebook run `summary`")
    # the sweeps the notebook reads, linked (the headline conditions come from headline_seeds)
    assert "`notebooks/runs/summary.yaml`" in caption and "[headline_seeds](" in caption
    assert caption.endswith(f"last regenerated in commit `{commit}`.\n:::")
    assert out.endswith("\n\nNext.\n")


def test_appendix_mentions_link_to_their_sections_outside_code():
    text = "See appendix B) and `appendix B` and appendix Z.\n\n### B. Where the test loss comes from\n"
    out = site.link_appendices(text)
    assert out.startswith("See [appendix B](#b-where-the-test-loss-comes-from)) and `appendix B` and appendix Z.")


def test_a_run_with_parameters_names_them_and_its_sweep():
    found = site.figure_provenance("mechanism_e1000_pruning.png")
    assert "`pruning_mechanism@mechanism_1000`" in found.drawn_by
    assert 'sweep="mechanism_1000"' in found.drawn_by and 'prefix="mechanism_e1000"' in found.drawn_by
    assert found.sweeps[0] == "mechanism_1000"


def test_every_figure_the_site_shows_has_provenance_and_every_marker_a_sweep():
    known = set(site.sweep_names())
    for page in PAGES:
        for name in SHOWN.findall(page.read_text()):
            found = site.figure_provenance(name)
            assert found.drawn_by and set(found.sweeps) <= known, name
    for name in re.findall(r"<!--v (.+?) -->|<!-- table: (\S+) -->", (ROOT / "regularization.md").read_text()):
        assert set(site.marker_sweeps(name[0] or name[1])) <= known


def test_a_figure_no_run_draws_is_refused_with_the_fix():
    with pytest.raises(
        ValueError,
        match=r"^figures/nowhere\.png: no run of notebooks/runs/ lists it and it carries no screenshot stamp",
    ):
        site.figure_provenance("nowhere.png")


def test_sweeps_are_read_from_string_literals_and_declared_run_sets_only():
    code = '%matplotlib inline\nsweeps = ["reproduction", "set_mlp/set", "not_a_sweep"]\n# "sweep155"\n'
    assert site.sweeps_in_code(code) == ["reproduction", "set_mlp"]
    # a declared run set by name reads its sweeps; one key of a dict of them, that key's only
    assert site.sweeps_in_code("runs = mechanism.E5_SHIFTS.finished(results)") == ["why_it_inverts"]
    assert site.sweeps_in_code('demo = BASELINES["standardised"]') == ["mechanism_1000"]
    assert site.sweeps_in_code("every = {**BASELINES}") == ["mechanism_1000", "extensions_1000"]


def test_a_table_named_after_a_study_module_reads_the_sweeps_that_module_names():
    """The modules live in wings; the table's name is the module's, in whichever wing."""
    assert site.marker_sweeps("protocol") == ("mechanism_1000", "set_mlp", "protocol_matched")
    assert site.marker_sweeps("selection") == ("reproduction",)


def test_a_notebook_that_reads_the_declared_run_sets_reads_their_sweeps():
    run = next(r for r in site.figure_runs() if r.name == "why_it_inverts")
    assert site.run_sweeps(run) == [
        "mechanism_1000",
        "extensions_1000",
        "why_it_inverts",
        "set_mlp",
        "protocol_matched",
    ]


def test_the_toc_lists_every_doc_and_one_page_per_notebook():
    toc = site.toc(ROOT / "notebooks" / "executed" / "smoke", "smoke")
    assert toc.startswith("format: jb-book\nroot: regularization\n")
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"  - file: docs/{page.stem}\n" in toc
    notebooks = {run.notebook for run in figure_runs()}
    assert len(site.site_runs()) == len(notebooks)
    for run in site.site_runs():
        assert f"  - file: notebooks/executed/smoke/{run.name}\n" in toc


@needs_git
def test_committed_screenshots_show_the_notebook_code_of_today():
    """A committed screenshot records the hash of the code cells it shows running; the
    notebook's code moving on makes it stale. Retake: SYNAPSES_RETAKE_SCREENSHOTS=1 pytest
    tests/study/test_browser.py -k slider."""
    stamped = 0
    for name in _git("ls-files", "figures").split():
        found = site.screenshot_source(ROOT / name)
        if found is None:
            continue
        notebook, taken_by, recorded = found
        stamped += 1
        assert recorded == site.code_hash(ROOT / notebook), (
            f"{name} shows an older {notebook}; retake it: SYNAPSES_RETAKE_SCREENSHOTS=1 pytest "
            f"{taken_by.partition('::')[0]} -k slider"
        )
    assert site.screenshot_source(ROOT / "figures" / "explorer.png") is not None, "figures/explorer.png is unstamped"
    assert stamped >= 1


def test_a_stamp_is_read_back_and_a_changed_notebook_differs(tmp_path, monkeypatch):
    from PIL import Image

    notebook = tmp_path / "n.ipynb"
    cells = [{"cell_type": "code", "source": ["x = 1\n"], "metadata": {}, "outputs": [], "execution_count": None}]
    notebook.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    monkeypatch.setattr(site, "REPO_ROOT", tmp_path)
    raw = tmp_path / "raw.png"
    Image.new("RGB", (4, 3), "white").save(raw)
    site.stamp_screenshot(raw.read_bytes(), tmp_path / "shot.png", notebook, "tests/x.py::test_y")
    assert site.screenshot_source(tmp_path / "shot.png") == ("n.ipynb", "tests/x.py::test_y", site.code_hash(notebook))
    before = site.code_hash(notebook)
    cells.append({"cell_type": "markdown", "source": ["prose only"], "metadata": {}})
    notebook.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert site.code_hash(notebook) == before  # prose does not change what runs
    cells[0]["source"] = ["x = 2\n"]
    notebook.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert site.code_hash(notebook) != before
    assert site.screenshot_source(raw) is None


def test_the_build_refuses_missing_or_figureless_executed_copies(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^no executed copy of benchmark, .* run `make site PROFILE=smoke`$"):
        site.build(tmp_path, "smoke")
    empty = {"cells": [{"cell_type": "code", "source": "plt.show()", "outputs": [], "metadata": {}}], "metadata": {}}
    for run in site.site_runs():
        (tmp_path / f"{run.name}.ipynb").write_text(json.dumps(empty))
    with pytest.raises(FileNotFoundError, match=r"benchmark\.ipynb shows none of its figures .* inline figures$"):
        site.build(tmp_path, "smoke")


# --- the built site in Chromium ---------------------------------------------------------


@pytest.fixture(scope="module")
def crawled():
    """Every page reachable from the write-up (where index.html leads), opened in Chromium: per page its text, its
    images' natural widths, its ids, its links and its figure captions; and every request
    that left the site."""
    if not (BUILT / "index.html").exists():
        if os.environ.get("CI"):
            pytest.fail("no _build/site/index.html: .ci/run builds it with `make site PROFILE=smoke` first")
        pytest.skip("no built site: run `make site` (or `make site PROFILE=smoke`)")
    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    pages: dict[Path, dict] = {}
    outside: list[str] = []
    todo = [(BUILT / "regularization.html").resolve()]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto((BUILT / "index.html").as_uri())  # the site's door: a redirect to the write-up
            page.wait_for_url("**/regularization.html", timeout=10_000)
            while todo:
                path = todo.pop()
                if path in pages:
                    continue
                response = page.goto(path.as_uri(), wait_until="load")
                page.wait_for_timeout(50)
                info = page.evaluate(
                    """() => ({
                        text: document.body.innerText,
                        prose: (() => {  // the text outside code, where a quoted marker is prose
                            const body = document.body.cloneNode(true);
                            body.querySelectorAll('code, pre').forEach(e => e.remove());
                            return body.textContent;
                        })(),
                        images: [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth]),
                        ids: [...document.querySelectorAll('[id]')].map(e => e.id),
                        links: [...document.querySelectorAll('a[href]')].map(a => a.href),
                        captions: [...document.querySelectorAll('figure figcaption')].map(c => c.innerText),
                    })"""
                )
                info["loaded"] = response is not None and response.ok
                pages[path] = info
                for href in info["links"]:
                    parts = urlsplit(href)
                    target = Path(unquote(parts.path))
                    if parts.scheme == "file" and target.suffix == ".html" and target not in pages:
                        todo.append(target)
            page.goto((BUILT / "regularization.html").as_uri(), wait_until="load")
            page.wait_for_timeout(300)
            shots = ROOT / "screenshots"
            shots.mkdir(exist_ok=True)
            shot = page.screenshot(path=str(shots / "site.png"))
            if os.environ.get("SYNAPSES_RETAKE_SCREENSHOTS"):
                (ROOT / "figures" / "site.png").write_bytes(shot)  # README's picture of the site
        finally:
            browser.close()
    return pages, outside


def test_every_page_loads_and_every_image_shows(crawled):
    pages, outside = crawled
    names = {p.relative_to(BUILT.resolve()).as_posix() for p in pages}
    assert {"regularization.html", "_site_sources/sources.html"} <= names
    assert sum(n.startswith("docs/") for n in names) == len(list((ROOT / "docs").glob("*.md")))
    assert sum(n.startswith("notebooks/executed/") for n in names) == len(site.site_runs())
    for path, info in pages.items():
        assert info["loaded"], path
        empty = [src for src, width in info["images"] if width <= 0]
        assert not empty, f"{path.name}: images that did not load: {empty}"
        if "notebooks/executed/" in path.as_posix():  # the code beside its figures
            assert info["images"], f"{path.name} shows no figure"
    assert not outside, f"the site asked outside itself: {sorted(set(outside))[:5]}"


def test_every_internal_link_and_anchor_resolves(crawled):
    pages, _ = crawled
    broken = []
    for path, info in pages.items():
        for href in info["links"]:
            parts = urlsplit(href)
            if parts.scheme != "file":
                continue
            target = Path(unquote(parts.path))
            if not target.exists():
                broken.append(f"{path.name} -> {href}")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in pages[target]["ids"]:
                    broken.append(f"{path.name} -> {href} (no such anchor)")
    assert not broken, broken[:10]


def test_no_marker_shows_and_every_number_links_to_its_sweep(crawled):
    pages, _ = crawled
    for path, info in pages.items():
        shown = [m for m in ("<!--", "-->") if m in info["prose"]]
        assert not shown, f"{path.name} shows {shown} outside code"
    main = pages[(BUILT / "regularization.html").resolve()]
    assert "-0.231 ± 0.028" in main["text"] or re.search(r"ρ = -?\d\.\d{3} ± \d\.\d{3}", main["text"])
    sweep_links = [h for h in main["links"] if "sources.html#sweep-" in h]
    assert len(sweep_links) >= (ROOT / "regularization.md").read_text().count("<!--v ")


def test_every_figure_caption_ends_with_its_provenance(crawled):
    pages, _ = crawled
    main = pages[(BUILT / "regularization.html").resolve()]
    expected = len(SHOWN.findall((ROOT / "regularization.md").read_text()))
    assert len(main["captions"]) == expected
    for caption in main["captions"]:
        assert caption.startswith("Fig. "), caption[:80]
        assert "Drawn by " in caption and " read " in caption, caption[:200]
        assert re.search(r"last regenerated in commit ([0-9a-f]{7,}|uncommitted)\.$", caption.strip()), caption[-120:]


def test_a_marker_naming_no_fact_is_an_error_not_every_sweep():
    from synapses_study.figures.site import marker_sweeps

    with pytest.raises(ValueError, match=r"marker 'fact:no_such_fact': no such fact; known: "):
        marker_sweeps("fact:no_such_fact")


def test_every_page_the_site_builds_has_well_formed_markers():
    """The site's build parses each page's markers strictly (a marker among other text in
    one code span is refused there): caught here, in seconds, rather than by the build."""
    from synapses_study.writeup.markers import parse_markers

    for page in PAGES:
        parse_markers(page.read_text())
