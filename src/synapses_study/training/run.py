"""Command line for one training run.

    python -m synapses_study.training.run --weight-decay 1e-3 --epochs 155 --seed 0
    python -m synapses_study.training.run --config my_run.json --epochs 10

Every field of :class:`synapses_study.setup.config.ExperimentConfig` is an option (``--weight-decay``
for ``weight_decay``); options override the ``--config`` file. An interrupted run picks up
from its last finished epoch when the same command is given again.
"""

from __future__ import annotations

# ruff: noqa: E402 (torch must not compute before pin() sets the rounding)
from .rounding import pin

pin()

import argparse
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from ..setup.config import ConfigError, ExperimentConfig, field_help, read_json_object


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m synapses_study.training.run",
        description="Train one SET configuration on MNIST; results go to results/<run_id>/.",
    )
    parser.add_argument("--config", type=Path, help="JSON file with config fields (options override it)")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="parent folder of run folders (default: the repository's results/)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    hints = get_type_hints(ExperimentConfig)
    meanings = field_help()
    for f in fields(ExperimentConfig):
        hint = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_text = f"{meanings.get(f.name, '')} (default: {default!r})".replace("%", "%%")
        if getattr(hint, "__origin__", None) is Literal:
            parser.add_argument(flag, choices=get_args(hint), default=None, help=help_text)
        elif hint is bool:
            parser.add_argument(flag, type=_parse_bool, default=None, metavar="{true,false}", help=help_text)
        else:
            parser.add_argument(flag, type=_scalar_parser(hint), default=None, metavar=f.name.upper(), help=help_text)
    return parser


def _parse_bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _scalar_parser(hint: Any):
    """A parser for a field's option: its scalar type, or a comma-separated list where the
    field takes a tuple (``--hidden 1000,1000,1000``, ``--epsilon 20,10``)."""
    members = get_args(hint) if get_args(hint) and getattr(hint, "__origin__", None) is not tuple else (hint,)
    scalars = [k for k in members if k is not type(None) and getattr(k, "__origin__", None) is not tuple]
    sequences = [get_args(k)[0] for k in members if getattr(k, "__origin__", None) is tuple]

    def convert(kind: Any, text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None

    def parse(text: str) -> Any:
        if type(None) in members and text.lower() == "none":
            return None
        if sequences and ("," in text or not scalars):
            return tuple(convert(sequences[0], part) for part in text.split(","))
        return convert(scalars[0], text)

    return parse


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    values: dict[str, Any] = {}
    if args.config is not None:
        values = read_json_object(args.config)  # a key given twice is refused, as in sweep files
    for f in fields(ExperimentConfig):
        value = getattr(args, f.name)
        if value is not None:
            values[f.name] = value
    return ExperimentConfig.from_dict(values, where=str(args.config) if args.config else "options")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")
    from ..runs.run_files import DamagedFileError, RunInProgressError
    from ..setup.data import MNISTFileError  # heavy imports only once the arguments are good
    from ..setup.paths import RESULTS, ROOT_FOUND
    from .engine import DivergedError, run_experiment

    where = "--results-dir" if args.results_dir is not None else f"results/ of {ROOT_FOUND}"
    print(f"run {config.run_id()} in {(args.results_dir or RESULTS) / config.run_id()} ({where})", flush=True)
    try:
        run_dir = run_experiment(config, args.results_dir, progress=not args.no_progress)
    except (ConfigError, RunInProgressError, DamagedFileError, MNISTFileError) as err:
        parser.exit(2, f"error: {err}\n")
    except MemoryError:  # widths or a batch this machine cannot hold: say which, no traceback
        parser.exit(
            2,
            f"error: out of memory for hidden={list(config.hidden)}, batch_size={config.batch_size}; choose smaller "
            "ones\n",
        )
    except DivergedError as err:  # not the user's mistake: the training itself failed
        parser.exit(1, f"error: {err}\n")
    except OSError as err:  # read-only folder, full disk: say which file, no traceback
        where = f" ({err.filename})" if err.filename else ""
        parser.exit(2, f"error: {err.strerror or err}{where}\n")
    print(f"results: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
