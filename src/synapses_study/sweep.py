"""Sweeps: many runs from one file, on this machine or on a Slurm cluster, through submitit.

    python -m synapses_study.sweep configs/sweep155.yaml --jobs 2
    python -m synapses_study.sweep configs/sweep155.yaml --dry-run
    python -m synapses_study.sweep configs/reproduction.yaml --executor slurm --partition gpu --time 720

A sweep file (YAML or JSON) holds a ``base`` config, an optional ``grid`` of axes to expand
(their product) and an optional list of ``runs``, each a set of overrides that may carry its
own ``grid`` and ``zip`` (axes taken in lockstep, such as each seed with the run it takes
its topology from). A run may name another entry of the same file with ``after: <name>``:
it then starts from that entry's final network (same grid values; see ``init_from``) and
runs once that one is done; ``compare_with:`` names plain runs drawn beside an entry. Every run lands in ``results/<run_id>/`` whatever the executor, finished
runs are skipped and interrupted ones resume from their checkpoints.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, ExperimentConfig
from .paths import CONFIGS  # the study's sweep files
from .run_dir import RunDir
from .run_files import DamagedFileError

SWEEP_KEYS = {"description", "base", "grid", "runs"}
ENTRY_KEYS = {"name", "grid", "zip", "after", "compare_with"}


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its config and the run it starts after (if any)."""

    config: ExperimentConfig
    entry: str
    after: str | None = None  # run_id of the run whose final network it starts from


@dataclass
class Sweep:
    """A sweep file, expanded: its runs in file order, and per entry the plain runs it is
    compared with (``compare_with:``, runs of other sweep files; not run by this one)."""

    path: Path
    description: str
    runs: list[SweepRun] = field(default_factory=list)
    baselines: dict[str, list[ExperimentConfig]] = field(default_factory=dict)

    def entries(self) -> list[str]:
        return list(dict.fromkeys(run.entry for run in self.runs))

    def only(self, entry: str) -> Sweep:
        """The runs of one entry (and its baselines)."""
        if entry not in self.entries():
            raise ConfigError(f"{self.path.name} has no entry {entry!r} (entries: {', '.join(self.entries())})")
        return Sweep(self.path, self.description, [r for r in self.runs if r.entry == entry], {entry: self.baselines.get(entry, [])})


# What a notebook's smoke profile changes in the sweep files it reads: every run for three
# epochs on 2,000 training and 500 test images, seeds 0 and 1 only.
SMOKE_OVERRIDE: dict[str, Any] = {"epochs": 3, "train_size": 2000, "test_size": 500, "seed": [0, 1]}


def load_sweep_spec(spec: str, override: dict[str, Any] | None = None, configs_dir: Path | None = None) -> Sweep:
    """The sweep ``"name"`` (``configs/<name>.yaml``) or one entry of it, ``"name/entry"``."""
    name, _, entry = spec.partition("/")
    folder = configs_dir if configs_dir is not None else CONFIGS
    if name not in sweep_names(folder):
        raise ConfigError(f"no sweep file {name!r} in {folder} (known: {', '.join(sweep_names(folder))})")
    sweep = load_sweep(folder / f"{name}.yaml", override=override)
    return sweep.only(entry) if entry else sweep


def sweep_spec(value: Any) -> str | None:
    """Rule for a notebook parameter naming a sweep (``"name"`` or ``"name/entry"``), for
    :func:`synapses_study.params.check_parameters`."""
    expected = f'a sweep of configs/ as "name" or "name/entry" (names: {", ".join(sweep_names())})'
    if not isinstance(value, str):
        return expected
    try:
        load_sweep_spec(value)
    except ConfigError as err:
        return f"{expected}; {err}"
    return None


def sweep_names(configs_dir: Path = CONFIGS) -> list[str]:
    """The study's sweep files, by name (``configs/<name>.yaml``)."""
    return sorted(path.stem for path in configs_dir.glob("*.yaml"))


class _SweepLoader(yaml.SafeLoader):
    """Safe YAML with three of YAML 1.1's surprises taken out: ``1e-3`` (no dot) is the
    number, not a string; a key given twice in one mapping is refused (YAML keeps the last
    silently); an integer with a leading zero (``010``, which YAML reads as octal 8) is
    refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping; keep one", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value).replace("_", "").lstrip("+-")
        if len(text) > 1 and text.startswith("0") and text[1:2].isdigit():
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} has a leading zero, which YAML reads as octal; write {int(text, 10)} (or quote it)", node.start_mark
            )
        return super().construct_yaml_int(node)


_SweepLoader.add_constructor("tag:yaml.org,2002:int", _SweepLoader.construct_yaml_int)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict, refusing a key given twice (JSON keeps the last)."""
    keys = [key for key, _ in pairs]
    if twice := sorted({key for key in keys if keys.count(key) > 1}):
        raise json.JSONDecodeError(f"key(s) {twice} appear twice in one object; keep one", "", 0)
    return dict(pairs)


_SweepLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


# ---------------------------------------------------------------------------- loading
def load_sweep(path: str | Path, override: dict[str, Any] | None = None) -> Sweep:
    """Read and validate a sweep file; every config is checked before anything runs.

    ``override`` changes the file's runs without editing it, for a scaled-down check of a
    sweep: a list replaces the grid axis of that name wherever it appears (``{"seed": [0]}``),
    any other value replaces that field in every run (``{"epochs": 2}``). ``after:`` links
    follow, so a chained run starts from the overridden run before it.

    Raises:
        ConfigError: naming the file, the entry and the key of the first problem.
    """
    path = Path(path)
    try:
        text = path.read_text()
        spec = yaml.load(text, Loader=_SweepLoader) if path.suffix in (".yaml", ".yml") else json.loads(text, object_pairs_hook=_unique_keys)
    except yaml.MarkedYAMLError as err:  # one line: the problem and where (YAML's own text spans several)
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: cannot read the sweep file: {err.problem or err.context}{where}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the sweep file ({err})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {sorted(SWEEP_KEYS)}")
    if unknown := sorted(set(spec) - SWEEP_KEYS):
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}; expected {sorted(SWEEP_KEYS)}")
    base = _mapping(spec.get("base", {}), f"{path}: base")
    top_grid = _grid(spec.get("grid", {}), f"{path}: grid")
    override = dict(override or {})
    axis_override = {k: v for k, v in override.items() if isinstance(v, list)}
    field_override = {k: v for k, v in override.items() if not isinstance(v, list)}
    entries = spec.get("runs", [{}])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: runs must be a non-empty list of mappings")

    sweep = Sweep(path, str(spec.get("description", "")))
    names: dict[str, dict[tuple, str]] = {}
    for number, raw in enumerate(entries):
        entry = _mapping(raw, f"{path}: runs[{number}]")
        name = str(entry.get("name", f"runs[{number}]"))
        where = f"{path}: {name}"
        if name in names:
            raise ConfigError(f"{path}: two entries are named {name!r}; entry names must be unique (after: refers to them)")
        grid = {**top_grid, **_grid(entry.get("grid", {}), f"{where}: grid")}
        grid = {k: axis_override.get(k, v) for k, v in grid.items() if k not in field_override}
        after = entry.get("after")
        if after is not None and after not in names:
            raise ConfigError(f"{where}: after={after!r} names no earlier entry (known: {sorted(names)})")
        zipped = _zipped(entry.get("zip", {}), f"{where}: zip", set(grid))
        zipped = [
            {k: v for k, v in z.items() if k not in field_override} for z in zipped
            if all(v in axis_override[k] for k, v in z.items() if k in axis_override)
        ]
        overrides = {k: v for k, v in entry.items() if k not in ENTRY_KEYS}
        names[name] = {}
        for values, linked in itertools.product(itertools.product(*grid.values()), zipped):
            point = {**dict(zip(grid, values)), **linked}
            fields = {**base, **overrides, **point, **field_override}
            after_id = None
            if after is not None:
                after_id = names[after].get(tuple(sorted(point.items())))
                if after_id is None:
                    raise ConfigError(f"{where}: entry {after!r} has no run with grid values {point}")
                fields["init_from"] = after_id
            config = ExperimentConfig.from_dict(fields, where=f"{where} {point}" if point else where)
            names[name][tuple(sorted(point.items()))] = config.run_id()
            sweep.runs.append(SweepRun(config, name, after_id))
        if "compare_with" in entry:
            sweep.baselines[name] = _baselines(entry["compare_with"], [r.config for r in sweep.runs if r.entry == name], f"{where}: compare_with")
    ids = [r.config.run_id() for r in sweep.runs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: some entries expand to the same config twice")
    return sweep


def _zipped(value: Any, where: str, grid_keys: set[str]) -> list[dict[str, Any]]:
    """An entry's ``zip:`` axes, taken in lockstep: ``{seed: [0, 1], topology_from: [a, b]}``
    gives ``[{seed: 0, topology_from: a}, {seed: 1, topology_from: b}]`` (``[{}]`` without one)."""
    axes = _grid(value, where) if value else {}
    if clash := sorted(set(axes) & grid_keys):
        raise ConfigError(f"{where}: {clash} also in grid; an axis is either zipped or crossed")
    if len({len(v) for v in axes.values()}) > 1:
        raise ConfigError(f"{where}: zipped axes must have equal lengths, got " + ", ".join(f"{k}: {len(v)}" for k, v in axes.items()))
    return [dict(zip(axes, values)) for values in zip(*axes.values())] if axes else [{}]


def _baselines(value: Any, members: list[ExperimentConfig], where: str) -> list[ExperimentConfig]:
    """The plain runs an entry is compared with: each point of the ``compare_with`` grid at
    the entry's epochs, data subset and seeds, every other field at its default."""
    grid = _grid(value, where)
    first = members[0]
    return [
        ExperimentConfig.from_dict({"epochs": first.epochs, "train_size": first.train_size, "test_size": first.test_size, "seed": seed, **dict(zip(grid, values))}, where=where)
        for values in itertools.product(*grid.values())
        for seed in sorted({c.seed for c in members})
    ]


# Fields that tell seeds apart rather than configurations: the seed and the links to the
# run a run starts from (its network, or its topology), which follow the seed.
RUN_LINKS = ("seed", "init_from", "topology_from")


def varying_fields(configs: list[ExperimentConfig]) -> list[str]:
    """Config fields other than :data:`RUN_LINKS` that differ between ``configs``, in the
    config's field order."""
    return [f.name for f in dataclass_fields(ExperimentConfig) if f.name not in RUN_LINKS and len({getattr(c, f.name) for c in configs}) > 1]


def grouping(sweep: Sweep) -> str:
    """The column that groups a sweep's runs into configurations, seeds pooled: the one
    field that varies (``"weight_decay"`` for a decay sweep), else ``"label"``."""
    varying = varying_fields([run.config for run in sweep.runs])
    return varying[0] if len(varying) == 1 else "label"


def run_labels(sweep: Sweep) -> dict[str, str]:
    """A short label per run id, seeds pooled: the entry's name when the file has several
    entries, followed by the fields that vary within the entry (``"l1 (l1=1e-05)"``); the
    varying fields alone for a file with one entry (``"weight_decay=0.001"``; its name, or
    ``"all"`` for an unnamed one, when nothing varies)."""
    entries: dict[str, list[SweepRun]] = {}
    for run in sweep.runs:
        entries.setdefault(run.entry, []).append(run)
    labels = {}
    for entry, runs in entries.items():
        configs = [run.config for run in runs]
        varying = varying_fields(configs)
        for config in configs:
            values = ", ".join(f"{name}={getattr(config, name)}" for name in varying)
            if len(entries) == 1:
                labels[config.run_id()] = values or ("all" if entry.startswith("runs[") else entry)
            else:
                labels[config.run_id()] = f"{entry} ({values})" if values else entry
    return labels


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


def _grid(value: Any, where: str) -> dict[str, list[Any]]:
    grid = _mapping(value, where)
    for key, axis in grid.items():
        if not isinstance(axis, list) or not axis:
            raise ConfigError(f"{where}: axis {key!r} must be a non-empty list, got {axis!r}")
    return grid


# ---------------------------------------------------------------------------- state
def run_state(run: SweepRun, results_dir: Path, sweep: Sweep | None = None) -> str:
    """``"done"``, ``"partial"`` (a checkpoint to resume from), ``"new"``, ``"damaged"``
    (a finished run whose files do not verify) or ``"blocked"`` (its ``init_from`` or
    ``topology_from`` run is neither finished nor in ``sweep``)."""
    state = RunDir.of(run.config, results_dir).state(run.config)
    if state in ("new", "partial") and missing_source(run, results_dir, sweep) is not None:
        return "blocked"
    return state


def missing_source(run: SweepRun, results_dir: Path, sweep: Sweep | None = None) -> str | None:
    """The run id of ``run``'s ``init_from``/``topology_from`` source when that run is not
    finished in ``results_dir`` and ``sweep`` does not make it (``None`` otherwise)."""
    made_here = {r.config.run_id() for r in sweep.runs} if sweep is not None else set()
    for source in (run.config.init_from, run.config.topology_from):
        if source is None or source in made_here:
            continue
        folder = RunDir(results_dir / source)
        try:
            if folder.config_file.exists() and folder.is_finished(folder.config()):
                continue
        except (ConfigError, ValueError, OSError):  # an unreadable config.json: not a finished run
            pass
        return source
    return None


def state_note(run: SweepRun, results_dir: Path, state: str, sweep: Sweep | None = None) -> str:
    """Why a run is in ``state``, for the states that need a reason."""
    if state in ("damaged", "diverged"):
        return RunDir.of(run.config, results_dir).problem(run.config) or ""
    if state == "blocked":
        return f"needs {missing_source(run, results_dir, sweep)}, which is not a finished run there"
    return f"after {run.after}" if run.after else ""


def run_job(config: dict[str, Any], results_dir: str, cores: list[int] | None = None) -> str:
    """What each submitit job executes: one run, pinned to ``cores`` when given."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    from .engine import run_experiment

    return str(run_experiment(ExperimentConfig.from_dict(config), results_dir, progress=False))


# ---------------------------------------------------------------------------- execution
@dataclass
class Outcome:
    run_id: str
    state: str  # done (before), finished, resumed, failed, waiting, damaged, blocked
    log: str = ""


def _executor(args: argparse.Namespace, log_dir: Path):
    import submitit

    executor = submitit.AutoExecutor(folder=log_dir, cluster="local" if args.executor == "local" else "slurm")
    if args.executor == "local":
        executor.update_parameters(timeout_min=args.time)
    else:
        params: dict[str, Any] = dict(timeout_min=args.time, cpus_per_task=args.cpus_per_task, slurm_array_parallelism=args.jobs)
        if args.partition:
            params["slurm_partition"] = args.partition
        if args.gpus:
            params["gpus_per_node"] = args.gpus
        executor.update_parameters(**params)
    return executor


def execute(sweep: Sweep, results_dir: Path, args: argparse.Namespace) -> list[Outcome]:
    """Run every unfinished run of ``sweep``; a failing run does not stop the others.

    Runs whose ``after`` run is not done yet wait for the next wave.
    """
    from tqdm.auto import tqdm

    log_dir = results_dir / ".sweep-logs" / sweep.path.stem
    executor = _executor(args, log_dir)
    outcomes: dict[str, Outcome] = {}
    todo = []
    for run in sweep.runs:
        state = run_state(run, results_dir, sweep)
        if state == "done":
            outcomes[run.config.run_id()] = Outcome(run.config.run_id(), "done")
        elif state in ("damaged", "blocked", "diverged"):  # reported, never trained over
            outcomes[run.config.run_id()] = Outcome(run.config.run_id(), state, state_note(run, results_dir, state, sweep))
        else:
            todo.append((run, state))
    bar = tqdm(total=len(sweep.runs), initial=len(outcomes), desc=sweep.path.stem, unit="run", dynamic_ncols=True)
    try:
        while todo:
            ready = [(r, s) for r, s in todo if r.after is None or outcomes.get(r.after, Outcome("", "")).state in ("done", "finished", "resumed")]
            if not ready:
                break
            todo = [item for item in todo if item not in ready]
            for run, state, job in _submit_wave(executor, ready, results_dir, args):
                run_id = run.config.run_id()
                try:
                    job.result()
                    outcomes[run_id] = Outcome(run_id, "resumed" if state == "partial" else "finished")
                except Exception as err:  # noqa: BLE001 - any failure of one run is reported, not raised
                    outcomes[run_id] = Outcome(run_id, "failed", f"{job.paths.stderr} ({_last_line(err)})")
                bar.update(1)
    finally:
        bar.close()
    for run, _ in todo:
        outcomes[run.config.run_id()] = Outcome(run.config.run_id(), "waiting", f"needs {run.after}")
    return [outcomes[r.config.run_id()] for r in sweep.runs]


def _last_line(err: Exception) -> str:
    """The original error of a job (submitit wraps it in the job's traceback and log paths)."""
    lines = [line.strip() for line in str(err).splitlines()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)]
    return errors[-1][:200] if errors else type(err).__name__


def submit_array(executor, runs: list[SweepRun], results_dir: Path) -> list:
    """Submit ``runs`` as one Slurm job array (its parallelism set by the executor)."""
    with executor.batch():
        jobs = [executor.submit(run_job, run.config.to_dict(), str(results_dir), None) for run in runs]
    return jobs


def _submit_wave(executor, ready, results_dir: Path, args: argparse.Namespace) -> Iterable:
    """Yield ``(run, state, finished_job)`` as jobs finish, at most ``args.jobs`` at a time."""
    if args.executor == "slurm":
        jobs = submit_array(executor, [run for run, _ in ready], results_dir)
        for (run, state), job in zip(ready, jobs):
            job.wait()
            yield run, state, job
        return
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    share = max(1, len(cores) // args.jobs) if cores else 1
    free_slots = list(range(args.jobs))
    running: list[tuple[Any, str, Any, int]] = []
    queue = list(ready)
    try:
        while queue or running:
            while queue and free_slots:
                run, state = queue.pop(0)
                slot = free_slots.pop(0)
                slot_cores = cores[slot * share : (slot + 1) * share] if cores and len(cores) >= args.jobs else None
                job = executor.submit(run_job, run.config.to_dict(), str(results_dir), slot_cores)
                running.append((run, state, job, slot))
            time.sleep(0.5)
            for item in [item for item in running if item[2].done()]:
                running.remove(item)
                free_slots.append(item[3])
                yield item[0], item[1], item[2]
    finally:
        for _, _, job, _ in running:  # interrupted: stop the runs in flight (they resume later)
            job.cancel(check=False)


def format_dry_run(sweep: Sweep, results_dir: Path) -> str:
    """Each run's state, epochs recorded and hours of training recorded (its metrics'
    ``seconds``), and the totals: what ``--dry-run`` prints."""
    rows, epochs, total, seconds = [], 0, 0, 0.0
    for run in sweep.runs:
        state = run_state(run, results_dir, sweep)
        note = state_note(run, results_dir, state, sweep)
        try:
            done, spent = RunDir.of(run.config, results_dir).work_recorded()
        except (DamagedFileError, ValueError) as err:  # a damaged metrics file: named, not a traceback
            done, spent, note = 0, 0.0, str(err)
        rows.append((run.config.run_id(), state.replace("partial", "resume"), f"{done} of {run.config.epochs}", f"{spent / 3600:.2f}", note))
        epochs, total, seconds = epochs + done, total + run.config.epochs, seconds + spent
    width = max([len(r[0]) for r in rows] + [6])
    lines = [f"{'run':<{width}}  state    {'epochs':<13}  hours  note"]
    lines += [f"{r[0]:<{width}}  {r[1]:<7}  {r[2]:<13}  {r[3]:>5}  {r[4]}".rstrip() for r in rows]
    states = [r[1] for r in rows]
    counts = ", ".join(f"{states.count(s)} {s}" for s in ("done", "resume", "new", "damaged", "blocked", "diverged") if s in states)
    lines.append(f"{counts}; {epochs:,} of {total:,} epochs recorded, {seconds / 3600:.1f} hours of training (summed over runs)")
    return "\n".join(lines)


def format_outcomes(outcomes: list[Outcome]) -> str:
    width = max([len(o.run_id) for o in outcomes] + [6])
    lines = [f"{'run':<{width}}  state     log"]
    lines += [f"{o.run_id:<{width}}  {o.state:<8}  {o.log}" for o in outcomes]
    counts = {s: sum(o.state == s for o in outcomes) for s in ("done", "finished", "resumed", "failed", "waiting", "damaged", "blocked", "diverged")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)


def _stop_on_terminate() -> None:
    """Let SIGTERM (``kill``) and SIGINT stop the sweep like Ctrl-C: the ``finally`` blocks
    then cancel the runs in flight, which resume from their checkpoints next time.
    A shell starts background jobs with SIGINT ignored, hence both handlers."""
    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def main(argv: list[str] | None = None) -> int:
    from .paths import RESULTS

    parser = argparse.ArgumentParser(prog="python -m synapses_study.sweep", description="Run the configurations of a sweep file.")
    parser.add_argument("sweep", type=Path, nargs="+", help="sweep file(s), YAML or JSON")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2: one per core here)")
    parser.add_argument("--dry-run", action="store_true", help="list what would run and what is done (epochs and hours recorded), run nothing")
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where run folders go (default: results/)")
    parser.add_argument("--executor", choices=("local", "slurm"), default="local")
    parser.add_argument("--partition", default=None, help="Slurm partition")
    parser.add_argument("--time", type=int, default=7 * 24 * 60, help="time limit per run in minutes (default one week)")
    parser.add_argument("--cpus-per-task", type=int, default=1, help="Slurm CPUs per run (default 1)")
    parser.add_argument("--gpus", type=int, default=0, help="Slurm GPUs per run (default 0)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.exit(2, "error: --jobs must be >= 1\n")
    if args.time < 1:
        parser.exit(2, f"error: --time must be at least 1 minute per run, got {args.time}\n")
    try:
        sweeps = [load_sweep(path) for path in args.sweep]
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")
    _stop_on_terminate()
    failed = False
    for sweep in sweeps:
        if args.dry_run:
            print(f"{sweep.path} ({sweep.description}): {len(sweep.runs)} runs")
            print(format_dry_run(sweep, args.results_dir))
            continue
        try:
            outcomes = execute(sweep, args.results_dir, args)
        except PermissionError as err:
            parser.exit(2, f"error: cannot write in {err.filename or args.results_dir} ({err.strerror}); choose a writable --results-dir\n")
        print(format_outcomes(outcomes))
        failed |= any(o.state in ("failed", "waiting", "damaged", "blocked", "diverged") for o in outcomes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
