"""docs/developing.md's recipe for a condition with its figure and a number in the write-up,
walked in a scratch copy of the study's folders: the files it lists are all it takes."""

import re
from pathlib import Path

from synapses_study.figures.figure_runs import figure_table, load_figure_run
from synapses_study.setup.sweep_file import load_sweep
from synapses_study.training.engine import run_experiment
from synapses_study.writeup.report import refresh

ROOT = Path(__file__).parents[2]


def test_a_condition_with_its_figure_and_a_number_takes_the_five_files_of_its_recipe(tmp_path, small_mnist):
    recipe = (ROOT / "docs" / "developing.md").read_text().split("**A condition, with its figure")[1]
    recipe = recipe.split("\n\n**")[0]
    listed = re.findall(r"^\d\. `([^`]+)`", recipe, flags=re.MULTILINE)
    assert listed == [
        "configs/NAME.yaml",
        "notebooks/runs/NOTEBOOK@NAME.yaml",
        "regularization.md",
        "docs/figures.md",
        "figures/FIGURE.png",
    ]
    # 1. the sweep file, and its runs
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "new_condition.yaml").write_text(
        "base: {epochs: 2, train_size: 1000, test_size: 200}\ngrid:\n  weight_decay: [0.0, 1.0e-3]\n"
    )
    for run in load_sweep(configs / "new_condition.yaml").runs:
        run_experiment(run.config, tmp_path / "results", data=small_mnist, progress=False)
    # 2. its figure run, of a notebook that takes a sweep parameter (the notebook is checked to take them)
    run_file = tmp_path / "notebooks" / "runs" / "regularization_study@new_condition.yaml"
    run_file.parent.mkdir(parents=True)
    run_file.write_text(
        "# The new condition.\nparameters: {sweep: new_condition, prefix: new}\n"
        "figures:\n  new_curves.png: train and test loss and accuracy\n"
    )
    figure_run = load_figure_run(run_file)
    # 4. the figure table of docs/figures.md lists it (regenerated from the run files)
    assert '| `new_curves.png` | `regularization_study@new_condition` (`sweep` "new_condition")' in figure_table(
        [figure_run]
    )
    # 3. the number: a marker in the write-up, filled from the runs by the report
    text = "Test accuracy without decay: <!--v new_condition | weight_decay=0.0 | test acc (%) -->?<!--/v-->.\n"
    filled = refresh(text, tmp_path / "results", configs)
    number = re.search(r"-->(.*?)<!--/v-->", filled)
    assert number is not None and re.fullmatch(r"\d+\.\d+", number.group(1)), filled
