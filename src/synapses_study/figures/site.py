"""The study as a site: the write-up, docs/ and the executed notebooks, built by Jupyter Book.

``make site`` (configured in the repository's ``_config.yml``) runs::

    python -m synapses_study.figures.site runs                      # each notebook's first figure run
    python -m synapses_study.figures.site build --executed DIR --profile PROFILE

``build`` writes, under ``_site_sources/`` (never committed), the table of contents and a
page of sources generated from the repository's own files, then builds the site into
``_build/site/`` with every warning an error. This module is also the Sphinx extension that
the build loads: it reads the Markdown as the repository holds it and, in memory only, turns
each marked number (``<!--v NAME -->value<!--/v-->``) into its value linked to the sweep it
comes from, adds that link below each marked table, and gives each figure a numbered caption
that ends with its provenance: the notebook run that drew it and its parameters, the sweep
files it read and the commit that last changed the file.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..setup.paths import REPO_ROOT
from ..setup.sweep_file import sweep_names
from .figure_runs import FigureRun, figure_runs

SITE = REPO_ROOT / "_build" / "site"
# generated pages must lie in the source tree, outside _build/ (which Jupyter Book never reads)
SOURCES = REPO_ROOT / "_site_sources"
CONFIG = REPO_ROOT / "_config.yml"
BUILD_INFO = SOURCES / "build.json"  # what `build` tells the extension: profile, executed copies
SOURCES_PAGE = "sources"  # the generated page: one section per sweep file
FIGURE = re.compile(
    r"^!\[(?P<alt>[^\]]*)\]\((?P<path>(?:\.\./)?figures/(?P<name>[^)\s]+))\)[ \t]*\n"
    r"(?:[ \t]*\n\*(?P<caption>(?:(?!\n[ \t]*\n).)+?)\*[ \t]*(?=\n|$))?",
    re.MULTILINE | re.DOTALL,
)
APPENDIX_HEADING = re.compile(r"^### ([A-Z])\. .+$", re.MULTILINE)
APPENDIX = re.compile(r"(?<![\[\w])([Aa]ppendix) ([A-Z])\b(?!\])")
# the text chunks of a committed screenshot: what it shows and how it was taken
SHOT_NOTEBOOK, SHOT_TAKEN_BY, SHOT_CODE = "synapses:notebook", "synapses:taken-by", "synapses:code-sha256"


def site_runs(runs: list[FigureRun] | None = None) -> list[FigureRun]:
    """Each notebook's first figure run (by name): the executed copy its page shows."""
    first: dict[str, FigureRun] = {}
    for run in runs if runs is not None else figure_runs():
        first.setdefault(run.notebook, run)
    return list(first.values())


@cache
def declared_run_sets() -> dict[str, dict[str, tuple[str, ...]]]:
    """The run sets the study declares by name (:class:`~synapses_study.mechanism.account.RunSet`
    constants and dicts of them in :mod:`~synapses_study.mechanism.account` and
    :mod:`~synapses_study.mechanism.protocol`): name -> key (``""`` for a constant) -> the
    sweep files that key's sets read."""
    from ..mechanism import account, protocol

    declared: dict[str, dict[str, tuple[str, ...]]] = {}
    for module in (account, protocol):
        for name, value in vars(module).items():
            if isinstance(value, account.RunSet):
                declared[name] = {"": (value.sweep,)}
            elif isinstance(value, dict) and value and all(isinstance(v, account.RunSet) for v in value.values()):
                declared[name] = {str(key): (run_set.sweep,) for key, run_set in value.items()}
    return declared


class _SweepNames(ast.NodeVisitor):
    """Sweep names in source order: string literals, and the declared run sets the code
    uses by name (``E5_SHIFTS``, ``mechanism.BASELINES``, ``RUN_SETS["demo"]``: that key's
    set only)."""

    def __init__(self, declared: dict[str, dict[str, tuple[str, ...]]]) -> None:
        self.declared = declared
        self.found: list[str] = []

    def _named(self, node: ast.AST) -> str | None:
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        return name if name in self.declared else None

    def visit_Subscript(self, node: ast.Subscript) -> None:
        name = self._named(node.value)
        if name is not None and isinstance(node.slice, ast.Constant) and str(node.slice.value) in self.declared[name]:
            self.found += self.declared[name][str(node.slice.value)]
            return
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if (name := self._named(node)) is not None:
            self.found += [sweep for sweeps in self.declared[name].values() for sweep in sweeps]

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if (name := self._named(node)) is not None:
            self.found += [sweep for sweeps in self.declared[name].values() for sweep in sweeps]
            return
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            self.found.append(node.value.partition("/")[0])


def sweeps_in_code(code: str, known: list[str] | None = None) -> list[str]:
    """The sweep files (``configs/NAME.yaml``) that ``code`` names, in order of first
    mention: in a string literal (``"NAME"`` or ``"NAME/entry"``) or through a run set the
    study declares (:func:`declared_run_sets`). Lines of IPython magics (``%``, ``!``) are
    skipped; code that does not parse names none."""
    names = set(known if known is not None else sweep_names())
    try:
        tree = ast.parse("\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))))
    except SyntaxError:
        return []
    visitor = _SweepNames(declared_run_sets())
    visitor.visit(tree)
    return list(dict.fromkeys(name for name in visitor.found if name in names))


def notebook_code(path: Path) -> str:
    """The code cells of a notebook, joined."""
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def run_sweeps(run: FigureRun) -> list[str]:
    """The sweep files a figure run reads: its ``sweep`` parameter and the sweeps its
    notebook's code names."""
    return list(dict.fromkeys([*(run.sweeps() or []), *sweeps_in_code(notebook_code(run.notebook_path))]))


def _module_function_sweeps(module: Any, function: Any) -> list[str]:
    """Sweeps named in ``function``'s source and in the module's functions it calls (transitively)."""
    found: list[str] = []
    seen: set[str] = set()
    todo = [function]
    while todo:
        current = todo.pop(0)
        if current.__name__ in seen:
            continue
        seen.add(current.__name__)
        source = inspect.getsource(current)
        found += sweeps_in_code(source)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called = getattr(module, node.func.id, None)
                if inspect.isfunction(called) and called.__module__ == module.__name__:
                    todo.append(called)
    return list(dict.fromkeys(found))


STUDY_WINGS = (
    "measures",
    "setup",
    "runs",
    "training",
    "reading",
    "mechanism",
    "forecast",
    "writeup",
    "figures",
    "bench",
)


@cache
def marker_sweeps(name: str) -> tuple[str, ...]:
    """The sweep files a marker's table or number is computed from (empty: every sweep file).

    ``reproduction+extensions_1000:verdict`` names its sweeps; ``fact:NAME`` reads those its
    function in :mod:`.facts` names; a table named after a study module (``protocol``,
    ``selection``) reads those that module names.
    """
    import importlib

    known = sweep_names()
    if name.startswith("fact:"):
        from ..writeup import facts

        function = facts.FACTS.get(name.removeprefix("fact:"))
        if function is None:  # a misspelt or removed fact is an error, never "every sweep file"
            raise ValueError(f"marker {name!r}: no such fact; known: {', '.join(sorted(facts.FACTS))}")
        return tuple(_module_function_sweeps(facts, function))
    table = name.partition("|")[0].strip()
    parts = [part.partition("/")[0] for part in table.partition(":")[0].split("+")]
    if all(part in known for part in parts):
        return tuple(dict.fromkeys(parts))
    # a table named after a study module, in whichever wing it lives
    for wing in STUDY_WINGS:
        try:
            module = importlib.import_module(f"synapses_study.{wing}.{parts[0]}")
        except ImportError:
            continue
        return tuple(sweeps_in_code(inspect.getsource(module)))
    return ()


def last_commit(path: Path) -> str:
    """The short hash of the last commit that changed ``path`` (``"uncommitted"`` when none has)."""
    out = subprocess.run(
        ["git", "log", "-1", "--format=%h", "--", str(path.relative_to(REPO_ROOT))],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "uncommitted"


@dataclass(frozen=True)
class Provenance:
    """What drew a committed figure: a command, its parameters and the sweep files it read."""

    drawn_by: str  # Markdown: the notebook run or the command
    sweeps: tuple[str, ...]
    commit: str
    reads: tuple[str, ...] = ()  # other files it reads (a run file's ``reads:``)


@cache
def figure_provenance(name: str) -> Provenance:
    """The provenance of ``figures/NAME``: its figure run (notebooks/runs/) or, for the
    topology GIFs, ``python -m synapses_study.figures.animate``; the sweep files it read; the commit
    of its last regeneration.

    Raises:
        ValueError: no figure run lists it and it is not an animation.
    """
    commit = last_commit(REPO_ROOT / "figures" / name)
    for run in figure_runs():
        if name in run.figures:
            shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in run.parameters.items())
            drawn = (
                f"notebook run `{run.name}` (`notebooks/runs/{run.name}.yaml`: `notebooks/{run.notebook}.ipynb`, "
                + (f"parameters {shown})" if shown else "its default parameters)")
            )
            return Provenance(drawn, tuple(run_sweeps(run)), commit, run.reads)
    screenshot = screenshot_source(REPO_ROOT / "figures" / name)
    if screenshot is not None:
        notebook, taken_by, _ = screenshot
        return Provenance(
            f"a screenshot of `{notebook}` in JupyterLab, taken by `{taken_by}`",
            tuple(sweeps_in_code(notebook_code(REPO_ROOT / notebook))),
            commit,
        )
    if name.endswith(".gif"):
        from . import animate

        return Provenance(
            "`python -m synapses_study.figures.animate` (`make animations`)",
            tuple(sweeps_in_code(inspect.getsource(animate))),
            commit,
        )
    raise ValueError(
        f"figures/{name}: no run of notebooks/runs/ lists it and it carries no screenshot stamp; add it to the "
        "figures: of the run that draws it, or retake the screenshot (SYNAPSES_RETAKE_SCREENSHOTS=1)"
    )


def code_hash(notebook: Path) -> str:
    """The SHA-256 of a notebook's code cells (what a screenshot of it shows running)."""
    import hashlib

    return hashlib.sha256(notebook_code(notebook).encode()).hexdigest()


def screenshot_source(png: Path) -> tuple[str, str, str] | None:
    """The notebook (relative to the repository), the test and the code hash that a screenshot
    records in its PNG text chunks (see :func:`stamp_screenshot`); ``None`` for another image."""
    if png.suffix != ".png" or not png.exists():
        return None
    from PIL import Image

    with Image.open(png) as image:
        text = dict(getattr(image, "text", {}))
    if not {SHOT_NOTEBOOK, SHOT_TAKEN_BY, SHOT_CODE} <= set(text):
        return None
    return text[SHOT_NOTEBOOK], text[SHOT_TAKEN_BY], text[SHOT_CODE]


def stamp_screenshot(image: bytes, png: Path, notebook: Path, taken_by: str) -> None:
    """Write the screenshot ``image`` (PNG bytes) to ``png`` with the notebook it shows, the
    test that took it and the hash of the notebook's code cells in its text chunks."""
    import io

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(SHOT_NOTEBOOK, str(notebook.relative_to(REPO_ROOT)))
    info.add_text(SHOT_TAKEN_BY, taken_by)
    info.add_text(SHOT_CODE, code_hash(notebook))
    with Image.open(io.BytesIO(image)) as shot:
        shot.save(png, pnginfo=info, optimize=True)


def _link(target_doc: str, from_doc: str, anchor: str) -> str:
    """A Markdown link target from document ``from_doc`` to ``target_doc#anchor``."""
    relative = os.path.relpath(target_doc, os.path.dirname(from_doc) or ".")
    return f"{relative}.md#{anchor}"


def sweep_links(sweeps: tuple[str, ...] | list[str], docname: str) -> str:
    """``sweeps`` as links to their sections of the sources page (none: every sweep file)."""
    page = f"{SOURCES.relative_to(REPO_ROOT)}/{SOURCES_PAGE}"
    if not sweeps:
        return f"[every sweep file]({_link(page, docname, 'every-sweep-file')})"
    return ", ".join(f"[{s}]({_link(page, docname, 'sweep-' + s)})" for s in sweeps)


def site_markdown(text: str, docname: str) -> str:
    """The Markdown of ``docname`` as the site shows it: each marked number its value linked to
    its sweep, each marked table followed by its sweeps, each committed figure a numbered
    figure whose caption ends with its provenance. The markers themselves are dropped."""
    from ..writeup.markers import parse_markers

    spans = parse_markers(text, docname)
    pieces: list[str] = []
    position = 0
    for span in spans:
        opening = text.rfind("<!--", 0, span.body_start)
        closing = text.index("-->", span.body_end) + 3
        body = text[span.body_start : span.body_end]
        sweeps = marker_sweeps(span.name)
        if span.kind == "value":
            title = span.name.replace('"', "'")
            first = f"sweep-{sweeps[0]}" if sweeps else "every-sweep-file"
            page = f"{SOURCES.relative_to(REPO_ROOT)}/{SOURCES_PAGE}"
            pieces += [text[position:opening], f'[{body}]({_link(page, docname, first)} "{title}")']
        else:
            note = f"\n*Table `{span.name}` (`make report`), from {sweep_links(sweeps, docname)}.*\n"
            pieces += [text[position:opening], body.strip("\n") + "\n" + note]
        position = closing
    pieces.append(text[position:])
    text = "".join(pieces)

    def figure(match: re.Match[str]) -> str:
        name = match.group("name")
        found = figure_provenance(name)
        caption = " ".join((match.group("caption") or match.group("alt")).split())
        # unique over the site: a figure shown on two pages gets a label on each
        where = "" if docname == "regularization" else docname + "-"
        label = "fig-" + re.sub(r"[^a-z0-9]+", "-", (where + name.rsplit(".", 1)[0]).lower())
        provenance = (
            f"Drawn by {found.drawn_by}; read {sweep_links(found.sweeps, docname)}"
            + "".join(f" and `{r}`" for r in found.reads)
            + "; "
            f"last regenerated in commit `{found.commit}`."
        )
        return (
            f":::{{figure}} {match.group('path')}\n:name: {label}\n:alt: {match.group('alt')}\n\n"
            f"{caption} {provenance}\n:::"
        )

    return link_appendices(FIGURE.sub(figure, text))


def link_appendices(text: str) -> str:
    """``text`` with each mention of "appendix X" outside code a link to the section headed
    ``### X. ...`` of the same page (a letter without such a section stays text)."""
    from myst_parser.mdit_to_docutils.base import default_slugify

    sections = {m.group(1): default_slugify(m.group(0).lstrip("# ")) for m in APPENDIX_HEADING.finditer(text)}

    def link(match: re.Match[str]) -> str:
        line_start = text.rfind("\n", 0, match.start()) + 1
        in_code = text.count("`", line_start, match.start()) % 2 == 1
        letter = match.group(2)
        if in_code or letter not in sections:
            return match.group(0)
        return f"[{match.group(0)}](#{sections[letter]})"

    return APPENDIX.sub(link, text)


def notebook_note(run: FigureRun, profile: str) -> str:
    """What a notebook page says above its outputs: which run and profile executed them."""
    shown = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in run.parameters.items()) or "its default parameters"
    where = (
        "the **smoke** profile (tiny stand-in runs: a few epochs on a slice of MNIST, not the study's runs), "
        "as CI builds this site; `make site` shows the study's own"
        if profile == "smoke"
        else "the default profile (the committed runs of `results/`)"
    )
    return (
        f"```{{note}}\nThe outputs below are those of figure run `{run.name}` (`notebooks/runs/{run.name}.yaml`, "
        f"{shown}), executed headlessly by the figure pipeline (`make figures`' rule) with {where}.\n```\n"
    )


def toc(executed: Path, profile: str) -> str:
    """The site's table of contents: the write-up, docs/, one page per notebook, the sources."""
    lines = ["format: jb-book", "root: regularization", "parts:", "- caption: Documentation", "  chapters:"]
    lines += [f"  - file: docs/{page.stem}" for page in sorted((REPO_ROOT / "docs").glob("*.md"))]
    lines += [f"- caption: Notebooks ({profile} profile)", "  chapters:"]
    lines += [f"  - file: {(executed / run.name).relative_to(REPO_ROOT)}" for run in site_runs()]
    lines += ["- caption: Sources", "  chapters:", f"  - file: {SOURCES.relative_to(REPO_ROOT)}/{SOURCES_PAGE}"]
    return "\n".join(lines) + "\n"


def sources_page(profile: str) -> str:
    """The generated page of sources: one section per sweep file, with its file, its run
    folders and the committed figures that read it."""
    from ..setup.sweep_file import load_sweep_spec

    figures = sorted(
        set(re.findall(r"!\[[^\]]*\]\((?:\.\./)?figures/([^)\s]+)\)", (REPO_ROOT / "regularization.md").read_text()))
    )
    readers: dict[str, list[str]] = {}
    for name in figures:
        for sweep in figure_provenance(name).sweeps:
            readers.setdefault(sweep, []).append(name)
    out = [
        "# Sources",
        "",
        "Every marked number and table of the write-up links to a section of this page: the sweep",
        "file it is computed from (`make report`, from `results/`). Generated by `make site` at commit "
        f"`{last_commit(REPO_ROOT)}`; notebook pages show the outputs of the {profile} profile.",
        "",
        "## Every sweep file",
        "",
        "A number computed from every finished run that the sweep files of `configs/` name.",
        "",
    ]
    for name in sweep_names():
        spec = load_sweep_spec(name)
        configs = [r.config for r in spec.runs] + [c for cs in spec.baselines.values() for c in cs]
        folders = sorted({c.run_id() for c in configs})
        present = [f for f in folders if (REPO_ROOT / "results" / f).is_dir()]
        out += [f"## Sweep {name}", "", f"`configs/{name}.yaml`: {' '.join(spec.description.split())}", ""]
        out += [f"{len(present)} of its {len(folders)} run folders are in `results/`."]
        if name in readers:
            out += ["Figures that read it: " + ", ".join(f"`{f}`" for f in readers[name]) + "."]
        out += ["", "<details><summary>its run folders</summary>", "", "<pre>"]
        out += [f"results/{f}/" + ("" if f in present else " (not run)") for f in folders]
        out += ["</pre>", "</details>", "", f"```{{literalinclude}} /configs/{name}.yaml", ":language: yaml", "```", ""]
    return "\n".join(out)


def build(executed: Path, profile: str) -> Path:
    """Write the generated sources and build the site into ``_build/site/``.

    Raises:
        FileNotFoundError: an executed copy is missing (``make site`` makes them).
        RuntimeError: the build failed or warned.
    """
    missing = [run.name for run in site_runs() if not (executed / f"{run.name}.ipynb").exists()]
    if missing:
        raise FileNotFoundError(
            f"no executed copy of {', '.join(missing)} in {executed}; run `make site PROFILE={profile}`"
        )
    for run in site_runs():
        copy = executed / f"{run.name}.ipynb"
        cells = json.loads(copy.read_text())["cells"]
        drawn = any("image/png" in out.get("data", {}) for cell in cells for out in cell.get("outputs", []))
        if not drawn and any(name.endswith(".png") for name in run.figures):
            raise FileNotFoundError(
                f"{copy} shows none of its figures (executed with MPLBACKEND={os.environ.get('MPLBACKEND', 'Agg')}?); "
                f"delete it and run `make site PROFILE={profile}`, which executes it with inline figures"
            )
    SOURCES.mkdir(parents=True, exist_ok=True)
    (SOURCES / "_toc.yml").write_text(toc(executed.resolve(), profile))
    (SOURCES / f"{SOURCES_PAGE}.md").write_text(sources_page(profile))
    BUILD_INFO.write_text(json.dumps({"profile": profile, "executed": str(executed.resolve())}))
    work = REPO_ROOT / "_build" / "site-work"
    command = [
        *(str(Path(sys.executable).parent / "jupyter-book"), "build", str(REPO_ROOT)),
        *("--toc", str(SOURCES / "_toc.yml"), "--config", str(CONFIG), "--path-output", str(work)),
        *("--builder", "html", "--warningiserror", "--keep-going", "--all"),
    ]
    if subprocess.run(command, cwd=REPO_ROOT).returncode != 0:
        raise RuntimeError(
            f"the site's build failed or warned (see above); fix it and run `make site PROFILE={profile}`"
        )
    if SITE.exists():
        shutil.rmtree(SITE)
    shutil.move(work / "_build" / "html", SITE)
    return SITE


def _source_read(app: Any, docname: str, source: list[str]) -> None:
    """Sphinx's source-read: rewrite the write-up and docs in memory, note each notebook's run."""
    info = json.loads(BUILD_INFO.read_text())
    path = Path(app.env.doc2path(docname))
    if path.suffix == ".md" and not path.is_relative_to(SOURCES):
        source[0] = site_markdown(source[0], docname)
    elif path.suffix == ".ipynb":
        run = {r.name: r for r in site_runs()}[path.stem]
        notebook = json.loads(source[0])
        note = {"cell_type": "markdown", "metadata": {}, "source": notebook_note(run, info["profile"])}
        notebook["cells"].insert(1, note)
        source[0] = json.dumps(notebook)


def setup(app: Any) -> dict[str, Any]:
    """The Sphinx extension (``_config.yml``'s ``extra_extensions``)."""
    app.connect("source-read", _source_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synapses_study.figures.site", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("runs", help="the figure runs whose executed copies the site shows")
    build_cmd = commands.add_parser("build", help="write the generated sources and build _build/site/")
    build_cmd.add_argument("--executed", type=Path, required=True, help="the folder of the executed copies")
    build_cmd.add_argument("--profile", choices=["smoke", "default"], default="default")
    args = parser.parse_args(argv)
    if args.command == "runs":
        print(" ".join(run.name for run in site_runs()))
        return 0
    try:
        print(f"built {build(args.executed, args.profile)}/index.html")
    except (FileNotFoundError, RuntimeError) as err:
        parser.exit(1, f"error: {err}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
