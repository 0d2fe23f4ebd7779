"""Sweep files: many runs described in one file, expanded into their configs.

A sweep file (YAML or JSON) holds a ``base`` config, an optional ``grid`` of axes to expand
(their product) and an optional list of ``runs``, each a set of overrides that may carry its
own ``grid`` and ``zip`` (axes taken in lockstep, such as each seed with the run it takes
its topology from). A run may name another entry of the same file with ``after: <name>``:
it then starts from that entry's final network (same grid values; see ``init_from``) and
runs once that one is done; ``compare_with:`` names plain runs drawn beside an entry.
Launching a sweep's runs is :mod:`synapses_study.training.sweep`'s job.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, ExperimentConfig, unique_keys
from .paths import CONFIGS  # the study's sweep files

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

    def run_ids(self) -> frozenset[str]:
        """The run ids of :attr:`runs`, computed once per length of the list (a dry run of
        thousands of runs asks for them once per run)."""
        cached = getattr(self, "_run_ids", None)
        if cached is None or cached[0] != len(self.runs):
            cached = (len(self.runs), frozenset(run.config.run_id() for run in self.runs))
            self._run_ids = cached
        return cached[1]

    def entries(self) -> list[str]:
        return list(dict.fromkeys(run.entry for run in self.runs))

    def only(self, entry: str) -> Sweep:
        """The runs of one entry (and its baselines)."""
        if entry not in self.entries():
            raise ConfigError(f"{self.path.name} has no entry {entry!r} (entries: {', '.join(self.entries())})")
        return Sweep(
            self.path,
            self.description,
            [r for r in self.runs if r.entry == entry],
            {entry: self.baselines.get(entry, [])},
        )


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
    :func:`synapses_study.setup.params.check_parameters`."""
    expected = f'a sweep of configs/ as "name" or "name/entry" (names: {", ".join(sweep_names())})'
    if not isinstance(value, str):
        return expected
    try:
        load_sweep_spec(value)
    except ConfigError as err:
        return f"{expected}; {err}"
    return None


def sweep_names(configs_dir: Path = CONFIGS) -> list[str]:
    """The study's sweep files, by name (``configs/<name>.yaml``).

    Raises:
        ConfigError: there is no ``configs/`` folder: the study's checkout was not found
            (an empty list would read as "no sweep is allowed" to every caller).
    """
    if not configs_dir.is_dir():
        raise ConfigError(
            f"no configs/ (nor results/) found: {configs_dir} is not a folder; run from inside the study's checkout "
            "or set SYNAPSES_ROOT to it"
        )
    return sorted(path.stem for path in configs_dir.glob("*.yaml"))


class _SweepLoader(yaml.SafeLoader):
    """Safe YAML with YAML 1.1's surprises taken out: ``1e-3`` (no dot) is the number, not a
    string; a key given twice in one mapping is refused (YAML keeps the last silently); an
    integer with a leading zero (``010``, which YAML reads as octal 8) is refused, and so is
    a base-60 number (``1:30``, which YAML reads as 90) and a key that is not a name (``1``,
    ``null``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key_node.value!r} is not a field name; write a name (or quote it)",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping; keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        _refuse_base_60(node, super().construct_yaml_int(node))
        text = str(node.value).replace("_", "").lstrip("+-")
        if len(text) > 1 and text.startswith("0") and text[1:2].isdigit():
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{node.value!r} has a leading zero, which YAML reads as octal; write {int(text, 10)} (or quote it)",
                node.start_mark,
            )
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value = super().construct_yaml_float(node)
        _refuse_base_60(node, value)
        return value


def _refuse_base_60(node: yaml.ScalarNode, value: float) -> None:
    """YAML 1.1 reads ``1:30`` as 90 and ``1:30.5`` as 90.5 (base 60): never what a config means."""
    if ":" in str(node.value):
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"{node.value!r} is a base-60 number to YAML (it reads {node.value} as {value!r}); write the number you "
            "mean, or quote it for text",
            node.start_mark,
        )


_SweepLoader.add_constructor("tag:yaml.org,2002:int", _SweepLoader.construct_yaml_int)
_SweepLoader.add_constructor("tag:yaml.org,2002:float", _SweepLoader.construct_yaml_float)


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
        spec = (
            yaml.load(text, Loader=_SweepLoader)
            if path.suffix in (".yaml", ".yml")
            else json.loads(text, object_pairs_hook=unique_keys)
        )
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
            raise ConfigError(
                f"{path}: two entries are named {name!r}; entry names must be unique (after: refers to them)"
            )
        grid = {**top_grid, **_grid(entry.get("grid", {}), f"{where}: grid")}
        grid = {k: axis_override.get(k, v) for k, v in grid.items() if k not in field_override}
        after = entry.get("after")
        if after is not None and after not in names:
            raise ConfigError(f"{where}: after={after!r} names no earlier entry (known: {sorted(names)})")
        zipped = _zipped(entry.get("zip", {}), f"{where}: zip", set(grid))
        zipped = [
            {k: v for k, v in z.items() if k not in field_override}
            for z in zipped
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
            sweep.baselines[name] = _baselines(
                entry["compare_with"], [r.config for r in sweep.runs if r.entry == name], f"{where}: compare_with"
            )
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
        raise ConfigError(
            f"{where}: zipped axes must have equal lengths, got " + ", ".join(f"{k}: {len(v)}" for k, v in axes.items())
        )
    return [dict(zip(axes, values)) for values in zip(*axes.values())] if axes else [{}]


def _baselines(value: Any, members: list[ExperimentConfig], where: str) -> list[ExperimentConfig]:
    """The plain runs an entry is compared with: each point of the ``compare_with`` grid at
    the entry's epochs, data subset and seeds, every other field at its default."""
    grid = _grid(value, where)
    first = members[0]
    return [
        ExperimentConfig.from_dict(
            {
                "epochs": first.epochs,
                "train_size": first.train_size,
                "test_size": first.test_size,
                "seed": seed,
                **dict(zip(grid, values)),
            },
            where=where,
        )
        for values in itertools.product(*grid.values())
        for seed in sorted({c.seed for c in members})
    ]


# Fields that tell seeds apart rather than configurations: the seed and the links to the
# run a run starts from (its network, or its topology), which follow the seed.
RUN_LINKS = ("seed", "init_from", "topology_from")


def varying_fields(configs: list[ExperimentConfig]) -> list[str]:
    """Config fields other than :data:`RUN_LINKS` that differ between ``configs``, in the
    config's field order."""
    return [
        f.name
        for f in dataclass_fields(ExperimentConfig)
        if f.name not in RUN_LINKS and len({getattr(c, f.name) for c in configs}) > 1
    ]


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


def matching(sweep: Sweep, **fields: object) -> list[ExperimentConfig]:
    """The configs of ``sweep``'s runs whose fields equal ``fields``, in file order."""
    return [run.config for run in sweep.runs if all(getattr(run.config, k) == v for k, v in fields.items())]


def labelled_groups(sweep: Sweep, entry: str | None = None) -> dict[str, list[ExperimentConfig]]:
    """The configs of ``sweep`` (of one ``entry`` only, if given) grouped by their
    :func:`run_labels` (seeds pooled), in file order: how tables, figures and the explorer
    group runs into configurations."""
    labels = run_labels(sweep)  # labels of the whole file, so that an entry keeps its own
    groups: dict[str, list[ExperimentConfig]] = {}
    for run in sweep.runs:
        if entry is None or run.entry == entry:
            groups.setdefault(labels[run.config.run_id()], []).append(run.config)
    return groups


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
