"""The library half depends on torch alone and leaves the process as it found it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).parents[2]
STUDY_ONLY = ("pandas", "yaml", "submitit", "torchvision", "tqdm", "scipy", "matplotlib", "synapses_study")


def test_the_core_declares_torch_and_numpy_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(dep.split(">")[0].split("=")[0] for dep in project["dependencies"]) == ["numpy", "torch"]
    study = tomllib.loads((ROOT / "src" / "synapses_study" / "pyproject.toml").read_text())["project"]
    assert "synapses-set" in study["dependencies"] and "pandas" in study["dependencies"]


def test_the_library_wheel_holds_the_library_alone():
    import setuptools

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = setuptools.find_packages(where=str(ROOT / find["where"][0]), include=find["include"])
    assert "synapses" in packages and all(p == "synapses" or p.startswith("synapses.") for p in packages), packages


def test_the_core_imports_and_trains_without_the_study_packages():
    # Uses the whole public API once, then lists the study's packages that got imported
    # beyond those torch imports by itself (it imports tqdm when it is installed). They are
    # installed here, so an import of one by synapses would succeed and show up.
    script = f"""
import sys
import torch
from torch import nn
def study_modules():
    return {{m for m in sys.modules if m.split(".")[0] in {STUDY_ONLY[:-1]!r} or m.startswith("synapses_study")}}
torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9).step()
torch_alone = study_modules()
import synapses
model = synapses.sparsify(nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 3)), epsilon=3, verbose=False)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
evolution = synapses.Evolution(model, optimizer, every=1)
nn.functional.cross_entropy(model(torch.randn(4, 30)), torch.tensor([0, 1, 2, 0])).backward()
optimizer.step(); evolution.step()
print(sorted(study_modules() - torch_alone))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_import_changes_no_warning_filter_and_the_kernels_warn_nothing():
    script = """
import warnings, torch
before = list(warnings.filters)
import synapses
assert warnings.filters == before, "import synapses changed the warning filters"
warnings.simplefilter("error")  # any warning from here on fails the script
for compute in ("sparse", "native"):  # the compiled kernels are built (or loaded) quietly too
    layer = synapses.SETLayer(300, 200, epsilon=5, compute=compute)
    layer(torch.randn(8, 300)).sum().backward()
print("quiet")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "quiet", out.stderr


def readme_install_commands() -> list[list[str]]:
    """The library's install command as README gives it (its first ``pip install`` line in a
    bash block), split into arguments."""
    import re
    import shlex

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    lines = [
        line.split("#")[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith("pip install")
    ]
    return [shlex.split(lines[0])]


def test_readme_installs_this_package_not_the_upstream_of_the_same_name():
    for command in readme_install_commands():
        assert command[:2] == ["pip", "install"] and command[2:] == ["."], (
            command
        )  # from the checkout, never "synapses"
    assert 'name = "synapses-set"' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.skipif(
    not os.environ.get("CI"), reason="installs torch into a fresh virtual environment (2 minutes, 5 GB); CI runs it"
)
def test_a_clean_venv_installs_as_readme_says_and_runs_the_library_example(tmp_path, torch_venv):
    python = str(torch_venv)
    # the shared environment may hold the wheel another test installed: README's command
    # runs as written on an environment with torch alone
    subprocess.run([python, "-m", "pip", "uninstall", "--quiet", "--yes", "synapses-set"], check=True)
    for command in readme_install_commands():
        subprocess.run([python, "-m", *command[:2], "--quiet", *command[2:]], check=True, cwd=ROOT)
    listed = subprocess.run([python, "-m", "pip", "list"], capture_output=True, text=True, check=True).stdout.lower()
    assert "synapses-set" in listed and not any(
        name in listed.split()
        for name in ("pandas", "pyyaml", "submitit", "torchvision", "tqdm", "scipy", "matplotlib")
    )
    study = subprocess.run([python, "-c", "import synapses_study"], capture_output=True, text=True, cwd=tmp_path)
    assert study.returncode == 1 and "No module named 'synapses_study'" in study.stderr  # not in the library's wheel
    example = [
        python,
        str(ROOT / "examples" / "your_model.py"),
        "--epochs",
        "1",
        "--train-size",
        "1000",
        "--test-size",
        "200",
        "--data",
        str(ROOT / "data" / "mnist"),
    ]
    out = subprocess.run(example, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "SETLayer with" in out.stderr and "sparse MLP: test accuracy per epoch" in out.stdout
