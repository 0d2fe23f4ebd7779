"""The figure runs: every executed notebook that makes the study's figures, declared once.

Each file ``notebooks/runs/<notebook>[@<variant>].yaml`` is one papermill run of
``notebooks/<notebook>.ipynb``::

    # what it is for
    parameters: {sweep: mechanism, blank_below: 1.0e-6, prefix: mechanism_blank1e-06}
    figures:
      mechanism_blank1e-06_pruning.png: what the figure shows
    reads: [results/feature_selection.csv]   # optional: files it reads beside the runs

The run sets themselves stay in ``configs/`` (a notebook takes a ``sweep`` parameter); this
list is what ``make figures`` executes, what docs/figures.md's figure table is generated from and
what the notebook tests run with the smoke profile. Commands::

    python -m synapses_study.figures.figure_runs list
    python -m synapses_study.figures.figure_runs execute NAME [--profile smoke] --output OUT.ipynb
    python -m synapses_study.figures.figure_runs digests --executed DIR   # what each run read (for make)
    python -m synapses_study.figures.figure_runs table docs/figures.md [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..runs.run_dir import RunDir
from ..runs.run_files import file_digest, write_atomic
from ..setup.config import ConfigError
from ..setup.paths import CONFIGS, NOTEBOOKS, REPO_ROOT, RESULTS
from ..setup.sweep_file import load_sweep_spec, sweep_names

RUNS_DIR = NOTEBOOKS / "runs"
RUN_KEYS = {"parameters", "figures", "reads"}
TABLE = re.compile(r"(<!-- figure table: [^>]*-->\n)(.*?)(<!-- /figure table -->)", re.DOTALL)


@dataclass(frozen=True)
class FigureRun:
    """One executed notebook: ``name`` is the file's stem (``"pruning_mechanism@unit"``)."""

    name: str
    notebook: str
    parameters: dict[str, Any]
    figures: dict[str, str]  # file name -> what it shows
    description: str
    reads: tuple[str, ...] = ()  # other files it reads, relative to the repository

    @property
    def notebook_path(self) -> Path:
        return NOTEBOOKS / f"{self.notebook}.ipynb"

    def sweeps(self) -> list[str] | None:
        """The sweep files it reads (``None``: it does not say, so any of them)."""
        spec = self.parameters.get("sweep")
        return [str(spec).partition("/")[0]] if spec is not None else None


def notebook_parameters(path: Path) -> list[str]:
    """Names assigned in the notebook's ``parameters`` cell."""
    cells = json.loads(path.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    return [m.group(1) for m in re.finditer(r"^(\w+)\s*(?::[^=]*)?=", "".join(cell["source"]), re.MULTILINE)]


def load_figure_run(path: Path) -> FigureRun:
    """Read and check one run file: its notebook exists and takes every parameter named."""
    where = f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}"
    text = path.read_text()
    spec = yaml.safe_load(text) or {}
    if not isinstance(spec, dict) or (unknown := set(spec) - RUN_KEYS):
        raise ConfigError(
            f"{where}: expected a mapping with keys {sorted(RUN_KEYS)}"
            + (f", not {sorted(unknown)}" if isinstance(spec, dict) else "")
        )
    notebook = path.stem.partition("@")[0]
    run = FigureRun(
        path.stem,
        notebook,
        dict(spec.get("parameters") or {}),
        dict(spec.get("figures") or {}),
        " ".join(line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")),
        tuple(spec.get("reads") or ()),
    )
    if not run.notebook_path.exists():
        raise ConfigError(f"{where}: no notebook {run.notebook_path.name} for it")
    if foreign := sorted(set(run.parameters) - set(notebook_parameters(run.notebook_path))):
        raise ConfigError(f"{where}: {run.notebook_path.name} has no parameter(s) {foreign}")
    if not run.figures or not all(isinstance(k, str) and k.endswith((".png", ".md")) for k in run.figures):
        raise ConfigError(f"{where}: figures must list the .png/.md files it writes, each with what it shows")
    if not all(isinstance(r, str) for r in run.reads):
        raise ConfigError(f"{where}: reads must list file paths relative to the repository")
    return run


def figure_runs(folder: Path = RUNS_DIR) -> list[FigureRun]:
    """Every run file of ``folder``, sorted by name."""
    return [load_figure_run(path) for path in sorted(folder.glob("*.yaml"))]


def execute(run: FigureRun, output: Path, profile: str = "default", **extra: Any) -> None:
    """Run the notebook headlessly with the run's parameters, ``profile`` and ``extra``.

    Raises:
        ValueError: a parameter the notebook does not have (papermill would only warn, and
            the notebook would run with its default).
    """
    import papermill

    parameters = {**run.parameters, "profile": profile, **extra}
    known = papermill.inspect_notebook(str(run.notebook_path))
    if unknown := sorted(set(parameters) - set(known)):
        raise ValueError(
            f"{run.notebook_path.name} has no parameter(s) {', '.join(unknown)}; its parameters: {', '.join(known)}"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(run.notebook_path),
        str(output),
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        cwd=str(REPO_ROOT),
    )


def inputs(run: FigureRun, with_results: bool = True) -> list[Path]:
    """What an executed copy reads beyond its run file, notebook and the code (the Makefile
    names those): the sweep files it reads and (``with_results``) the metrics and pruning
    files of each of those sweeps' runs that exist and the other files it ``reads``, so that
    a run that finishes or changes makes it out of date."""
    names = run.sweeps() or sweep_names()
    files = [CONFIGS / f"{n}.yaml" for n in names]
    if with_results:
        for name in names:
            sweep = load_sweep_spec(name)
            configs = [r.config for r in sweep.runs] + [c for cs in sweep.baselines.values() for c in cs]
            folders = [RunDir(RESULTS / c.run_id()) for c in configs]
            files += sorted({f.metrics_file for f in folders} | {f.pruning_file for f in folders})
        files += [REPO_ROOT / r for r in run.reads]
    return [f for f in files if f.exists()]


def inputs_digest(run: FigureRun, with_results: bool = True) -> str:
    """One line per input of :func:`inputs`: its SHA-256 and its path in the repository."""
    return "".join(f"{file_digest(f)['sha256']}  {f.relative_to(REPO_ROOT)}\n" for f in inputs(run, with_results))


def write_digests(runs: list[FigureRun], executed: Path, with_results: bool = True) -> None:
    """``<executed>/inputs/<run>.digest`` for each run, rewritten only when what it reads
    changed: the Makefile's rule for each executed copy depends on it, so make re-executes
    a notebook when a run it reads finishes or changes, and only then."""
    for run in runs:
        _write_if_changed(executed / "inputs" / f"{run.name}.digest", inputs_digest(run, with_results))


def figure_table(runs: list[FigureRun]) -> str:
    """The figure table of docs/figures.md: each figure, the run that makes it and what it shows."""
    rows = ["| figure | notebook run (`notebooks/runs/`) | what it shows |", "|---|---|---|"]
    for run in runs:
        shown = ", ".join(f"`{k}` {json.dumps(v)}" for k, v in run.parameters.items() if k != "prefix")
        source = f"`{run.name}`" + (f" ({shown})" if shown else "")
        rows += [f"| `{figure}` | {source} | {what} |" for figure, what in run.figures.items()]
    return "\n".join(rows) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    # an unchanged file keeps its time stamp, so make does not re-execute what depends on it
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m synapses_study.figures.figure_runs",
        description="The notebook runs that make the figures (notebooks/runs/).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="name, notebook, parameters and figures of each run")
    run_cmd = commands.add_parser("execute", help="execute one run's notebook with papermill")
    run_cmd.add_argument("name")
    run_cmd.add_argument("--profile", default="default", choices=["smoke", "default"])
    run_cmd.add_argument("--output", type=Path, required=True)
    digests = commands.add_parser("digests", help="write the digest of what each run reads, where it changed")
    digests.add_argument("--executed", type=Path, required=True, help="folder of the executed copies")
    digests.add_argument(
        "--no-results", action="store_true", help="leave results/ out (the smoke profile trains its own runs)"
    )
    table = commands.add_parser("table", help="regenerate the figure table of a Markdown file")
    table.add_argument("markdown", type=Path)
    table.add_argument("--check", action="store_true", help="exit 1 if the table is stale, change nothing")
    args = parser.parse_args(argv)
    try:
        runs = figure_runs()
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")
    if args.command == "list":
        for run in runs:
            print(f"{run.name}: {run.notebook}.ipynb {run.parameters} -> {', '.join(run.figures)}")
    elif args.command == "execute":
        chosen = {run.name: run for run in runs}.get(args.name)
        if chosen is None:
            parser.exit(2, f"error: no run {args.name!r} in {RUNS_DIR} (runs: {', '.join(r.name for r in runs)})\n")
        try:
            execute(chosen, args.output, args.profile)
        except ValueError as err:  # a parameter the notebook does not have
            parser.exit(2, f"error: {err}\n")
    elif args.command == "digests":
        write_digests(runs, args.executed, with_results=not args.no_results)
    else:
        text = args.markdown.read_text()
        if not TABLE.search(text):
            parser.exit(
                2, f"error: {args.markdown} has no '<!-- figure table: ... -->' ... '<!-- /figure table -->' block\n"
            )
        updated = TABLE.sub(lambda m: m.group(1) + figure_table(runs) + m.group(3), text, count=1)
        if args.check:
            if updated != text:
                print(
                    f"{args.markdown}: the figure table is stale (python -m synapses_study.figures.figure_runs table "
                    f"{args.markdown})",
                    file=sys.stderr,
                )
                return 1
            return 0
        _write_if_changed(args.markdown, updated)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
