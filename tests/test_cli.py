import re
import subprocess
import sys

import pytest

from synapses import run as cli
from synapses.config import ExperimentConfig


def test_every_config_field_is_an_option():
    help_text = cli._parser().format_help()
    for name in ExperimentConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in help_text


def test_options_override_the_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"epochs": 3, "weight_decay": 0.01}')
    args = cli._parser().parse_args(["--config", str(path), "--weight-decay", "1e-3", "--seed", "4", "--weight-decay-end", "none"])
    assert cli.config_from_args(args) == ExperimentConfig(epochs=3, weight_decay=1e-3, seed=4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "-3"], "error: options: epochs must be > 0"),
        (["--epochs", "ten"], "expected int, got 'ten'"),
        (["--model", "MLP"], "invalid choice: 'MLP'"),
        (["--zeta", "2"], r"zeta must be in \[0, 1\]"),
    ],
)
def test_bad_values_get_a_one_line_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(message, err), err


def test_bad_config_file(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text('{"epochs": 3, "lerning_rate": 0.1}')
    with pytest.raises(SystemExit):
        cli.main(["--config", str(path)])
    assert "unknown key(s) 'lerning_rate'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_runs_and_says_where_the_results_are(tmp_path):
    # one epoch on the full data set through the real command line
    proc = subprocess.run(
        [sys.executable, "-m", "synapses.run", "--epochs", "1", "--results-dir", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, check=True,
    )
    run_id = ExperimentConfig(epochs=1).run_id()
    assert proc.stdout.strip().splitlines()[-1] == f"results: {tmp_path / run_id}"
    assert (tmp_path / run_id / "metrics.csv").exists()
