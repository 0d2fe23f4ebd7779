"""Launching sweeps: a sweep file's runs on this machine or on a Slurm cluster, through
submitit, and the runs a notebook needs (:func:`ensure_runs`).

    python -m synapses_study.training.sweep configs/sweep155.yaml --jobs 2
    python -m synapses_study.training.sweep configs/sweep155.yaml --dry-run
    python -m synapses_study.training.sweep configs/reproduction.yaml --executor slurm --partition gpu --time 720

Every run lands in ``results/<run_id>/`` whatever the executor; finished runs are skipped
and interrupted ones resume from their checkpoints. What a sweep file holds:
:mod:`synapses_study.setup.sweep_file`.
"""

from __future__ import annotations

# ruff: noqa: E402 (torch must not compute before pin() sets the rounding)
from .rounding import pin

pin()

import argparse
import os
import re
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from tqdm.auto import tqdm

from ..runs.run_dir import RunDir
from ..runs.run_files import DamagedFileError, RunInProgressError
from ..setup.config import ConfigError, ExperimentConfig
from ..setup.data import load_mnist
from ..setup.paths import RESULTS, results_root
from ..setup.sweep_file import Sweep, SweepRun, load_sweep
from .engine import run_experiment


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
    made_here = sweep.run_ids() if sweep is not None else frozenset()
    for source in (run.config.init_from, run.config.topology_from):
        if source is not None and source not in made_here and not _is_finished_run(results_dir / source):
            return source
    return None


def _is_finished_run(folder: Path) -> bool:
    """Whether ``folder`` holds a finished run of the config it records (an unreadable
    ``config.json`` is not one)."""
    run = RunDir(folder)
    try:
        return run.config_file.exists() and run.is_finished(run.config())
    except (ConfigError, ValueError, OSError):
        return False


def state_note(run: SweepRun, results_dir: Path, state: str, sweep: Sweep | None = None) -> str:
    """Why a run is in ``state``, for the states that need a reason."""
    if state in ("damaged", "diverged"):
        return RunDir.of(run.config, results_dir).problem(run.config) or ""
    if state == "blocked":
        return f"needs {missing_source(run, results_dir, sweep)}, which is not a finished run there"
    return f"after {run.after}" if run.after else ""


def startable(
    configs: Iterable[ExperimentConfig], results_dir: str | Path | None = None
) -> tuple[list[ExperimentConfig], list[ExperimentConfig]]:
    """``(startable, blocked)``: the configs whose source runs (``init_from``,
    ``topology_from``) are finished in ``results_dir`` or come earlier in ``configs``, and
    the others (a smoke profile's scaled-down sweep that links to another sweep's long runs)."""
    root = results_root(results_dir)
    ready, blocked, produced = [], [], set()
    for config in configs:
        sources = [s for s in (config.init_from, config.topology_from) if s is not None]
        if all(s in produced or _is_finished_run(root / s) for s in sources):
            ready.append(config)
            produced.add(config.run_id())
        else:
            blocked.append(config)
    return ready, blocked


def ensure_runs(
    configs: Iterable[ExperimentConfig], results_dir: str | Path | None = None, progress: bool = True
) -> list[Path]:
    """Run the configs that have no finished results yet (resuming partial ones), in order.

    A run that another process is training is waited for. Returns the run folders of all
    ``configs``. For many long runs, prefer
    ``python -m synapses_study.training.sweep``, which uses every core.
    """
    configs = list(configs)
    root = results_root(results_dir)
    missing = [c for c in configs if not RunDir.of(c, root).is_finished(c)]
    if missing:
        data = load_mnist()
        for config in missing:
            try:
                run_experiment(config, root, data=data, progress=progress)
            except RunInProgressError:
                # another notebook (make -j2 figures) trains it: wait, then take its result
                RunDir.of(config, root).wait_while_in_progress()
                run_experiment(config, root, data=data, progress=progress)
    return [root / c.run_id() for c in configs]


def run_job(config: dict[str, Any], results_dir: str, cores: list[int] | None = None) -> str:
    """What each submitit job executes: one run, pinned to ``cores`` when given. A run that
    another sweep on the same results folder is training is waited for, then taken as it
    finished (both sweeps report it finished, neither failed)."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    run = ExperimentConfig.from_dict(config)
    try:
        return str(run_experiment(run, results_dir, progress=False))
    except RunInProgressError:
        RunDir.of(run, results_dir).wait_while_in_progress()
        return str(run_experiment(run, results_dir, progress=False))


# ---------------------------------------------------------------------------- execution
@dataclass
class Outcome:
    run_id: str
    state: str  # done (before), finished, resumed, failed, waiting, damaged, blocked
    log: str = ""


def _executor(args: argparse.Namespace, log_dir: Path):
    executor = submitit.AutoExecutor(folder=log_dir, cluster="local" if args.executor == "local" else "slurm")
    if args.executor == "local":
        executor.update_parameters(timeout_min=args.time)
    else:
        params: dict[str, Any] = dict(
            timeout_min=args.time, cpus_per_task=args.cpus_per_task, slurm_array_parallelism=args.jobs
        )
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
    log_dir = results_dir / ".sweep-logs" / sweep.path.stem
    executor = _executor(args, log_dir)
    outcomes: dict[str, Outcome] = {}
    todo = []
    for run in sweep.runs:
        state = run_state(run, results_dir, sweep)
        if state == "done":
            outcomes[run.config.run_id()] = Outcome(run.config.run_id(), "done")
        elif state in ("damaged", "blocked", "diverged"):  # reported, never trained over
            outcomes[run.config.run_id()] = Outcome(
                run.config.run_id(), state, state_note(run, results_dir, state, sweep)
            )
        else:
            todo.append((run, state))
    bar = tqdm(total=len(sweep.runs), initial=len(outcomes), desc=sweep.path.stem, unit="run", dynamic_ncols=True)
    try:
        while todo:
            ready = [
                (r, s)
                for r, s in todo
                if r.after is None or outcomes.get(r.after, Outcome("", "")).state in ("done", "finished", "resumed")
            ]
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
        rows.append(
            (
                run.config.run_id(),
                state.replace("partial", "resume"),
                f"{done} of {run.config.epochs}",
                f"{spent / 3600:.2f}",
                note,
            )
        )
        epochs, total, seconds = epochs + done, total + run.config.epochs, seconds + spent
    width = max([len(r[0]) for r in rows] + [6])
    lines = [f"{'run':<{width}}  state    {'epochs':<13}  hours  note"]
    lines += [f"{r[0]:<{width}}  {r[1]:<7}  {r[2]:<13}  {r[3]:>5}  {r[4]}".rstrip() for r in rows]
    states = [r[1] for r in rows]
    counts = ", ".join(
        f"{states.count(s)} {s}" for s in ("done", "resume", "new", "damaged", "blocked", "diverged") if s in states
    )
    lines.append(
        f"{counts}; {epochs:,} of {total:,} epochs recorded, {seconds / 3600:.1f} hours of training (summed over runs)"
    )
    return "\n".join(lines)


def format_outcomes(outcomes: list[Outcome]) -> str:
    width = max([len(o.run_id) for o in outcomes] + [6])
    lines = [f"{'run':<{width}}  state     log"]
    lines += [f"{o.run_id:<{width}}  {o.state:<8}  {o.log}" for o in outcomes]
    counts = {
        s: sum(o.state == s for o in outcomes)
        for s in ("done", "finished", "resumed", "failed", "waiting", "damaged", "blocked", "diverged")
    }
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
    parser = argparse.ArgumentParser(
        prog="python -m synapses_study.training.sweep", description="Run the configurations of a sweep file."
    )
    parser.add_argument("sweep", type=Path, nargs="+", help="sweep file(s), YAML or JSON")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2: one per core here)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would run and what is done (epochs and hours recorded), run nothing",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where run folders go (default: results/)")
    parser.add_argument("--executor", choices=("local", "slurm"), default="local")
    parser.add_argument("--partition", default=None, help="Slurm partition")
    parser.add_argument(
        "--time", type=int, default=7 * 24 * 60, help="time limit per run in minutes (default one week)"
    )
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
        except OSError as err:  # not writable, read-only file system, full disk: one line
            parser.exit(
                2,
                f"error: cannot write in {err.filename or args.results_dir} ({err.strerror or err}); choose a writable "
                "--results-dir\n",
            )
        print(format_outcomes(outcomes))
        failed |= any(o.state in ("failed", "waiting", "damaged", "blocked", "diverged") for o in outcomes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
