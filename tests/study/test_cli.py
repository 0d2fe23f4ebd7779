import re
import subprocess
import sys
from pathlib import Path

import pytest

from synapses_study.setup.config import ExperimentConfig
from synapses_study.training import run as cli


def test_every_config_field_is_an_option():
    help_text = cli._parser().format_help()
    for name in ExperimentConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in help_text


def test_options_override_the_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"epochs": 3, "weight_decay": 0.01}')
    args = cli._parser().parse_args(
        ["--config", str(path), "--weight-decay", "1e-3", "--seed", "4", "--weight-decay-end", "none"]
    )
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
        [
            sys.executable,
            "-m",
            "synapses_study.training.run",
            "--epochs",
            "1",
            "--results-dir",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = ExperimentConfig(epochs=1).run_id()
    assert proc.stdout.strip().splitlines()[-1] == f"results: {tmp_path / run_id}"
    assert (tmp_path / run_id / "metrics.csv.xz").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--weight-decay", "nan"], "weight_decay must be a finite number, got nan"),
        (["--lr", "inf"], "lr must be a finite number, got inf"),
        (["--momentum", "nan"], "momentum must be a finite number"),
        (["--l1", "nan"], "l1 must be a finite number"),
        (["--weight-decay-end", "nan"], "weight_decay_end must be a finite number"),
        (["--epsilon", "1000"], "epsilon=1000 asks for more connections than the 784 x 512 layer 0"),
        (["--epsilon", "inf"], "epsilon must be a finite number"),
        (["--seed", "12345678901234567890"], r"seed must be in \[0, 2\*\*32\)"),
        (["--evolution-proba", "0.5"], "evolution_proba applies to model='EvolNet' only"),
        (["--hidden", "100,x"], "expected int, got 'x'"),
        (["--init-from", "no_such_run"], "init_from='no_such_run': no finished run of that id"),
    ],
)
def test_user_errors_are_one_line_exit_2_and_create_nothing(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--results-dir", str(tmp_path), "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert re.search(message, err[-1]), err
    assert not any("Traceback" in line for line in err)
    assert list(tmp_path.iterdir()) == []


def test_list_options_parse_as_tuples():
    args = cli._parser().parse_args(["--hidden", "1000,1000,1000", "--epsilon", "20", "--dropout", "0.3"])
    config = cli.config_from_args(args)
    assert config.hidden == (1000, 1000, 1000) and config.epsilon == 20.0
    assert cli.config_from_args(cli._parser().parse_args(["--epsilon", "20,10"])).epsilon == (20.0, 10.0)


def test_binary_config_file_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--config", str(path)])
    assert exit_info.value.code == 2
    assert f"{path}: not a readable JSON config file" in capsys.readouterr().err


def test_run_held_by_another_process_is_a_one_line_error(tmp_path, capsys):
    import fcntl

    run_dir = tmp_path / ExperimentConfig(epochs=1).run_id()
    run_dir.mkdir()
    with open(run_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["--epochs", "1", "--results-dir", str(tmp_path), "--no-progress"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {run_dir} is being trained by another process"


def test_unusable_results_folder_is_a_one_line_error(tmp_path, capsys):
    not_a_folder = tmp_path / "results"
    not_a_folder.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--epochs", "1", "--results-dir", str(not_a_folder / "sub"), "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Not a directory (") and "\n" not in err


def test_read_only_results_folder_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    # As root (CI) a chmod'ed folder stays writable, so the refusal is simulated where it happens.

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--epochs", "1", "--results-dir", str(tmp_path), "--no-progress"])
    assert exit_info.value.code == 2
    run_dir = tmp_path / ExperimentConfig(epochs=1).run_id()
    assert capsys.readouterr().err.strip() == f"error: Permission denied ({run_dir})"


def test_help_gives_every_fields_meaning_from_the_config_docstring():
    from synapses_study.setup.config import field_help

    meanings = field_help()
    assert set(meanings) == set(ExperimentConfig.__dataclass_fields__)
    assert meanings["dropout"].startswith("probability of dropping each hidden unit") and "``" not in meanings["model"]
    help_text = " ".join(cli._parser().format_help().split())
    assert (
        "--dropout DROPOUT probability of dropping each hidden unit after its ReLU in training. (default: 0.0)"
        in help_text
    )
