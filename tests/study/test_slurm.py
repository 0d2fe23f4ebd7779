"""A sweep through a real Slurm: a one-node cluster on localhost (Debian's slurm-wlm and
munge, which .ci/run installs), against the local executor's results, file for file."""

from __future__ import annotations

import json
import lzma
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.end_to_end,
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch", "sinfo")),
        reason="Slurm (slurm-wlm, munge) is not installed; .ci/run installs it",
    ),
]

ROOT = Path(__file__).parents[2]
SWEEP = """description: two tiny runs through Slurm
base: {epochs: 1, train_size: 1000, test_size: 200}
grid:
  weight_decay: [0.0, 1.0e-3]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _munge_works() -> bool:
    encode = subprocess.run(["munge", "-n"], capture_output=True)
    return (
        encode.returncode == 0 and subprocess.run(["unmunge"], input=encode.stdout, capture_output=True).returncode == 0
    )


def _wait(condition, what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``SLURM_CONF`` of a running one-node cluster (partition ``test``, 2 CPUs)."""
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld and slurmd as a test needs root")
    folder = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    node = socket.gethostname()
    conf = folder / "slurm.conf"
    conf.write_text(f"""ClusterName=synapses-test
SlurmctldHost={node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation={folder / "state"}
SlurmdSpoolDir={folder / "spool"}
SlurmctldPidFile={folder / "slurmctld.pid"}
SlurmdPidFile={folder / "slurmd.pid"}
SlurmctldLogFile={folder / "slurmctld.log"}
SlurmdLogFile={folder / "slurmd.log"}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
ReturnToService=2
MpiDefault=none
NodeName={node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started_munge = False
    if not _munge_works():
        Path("/run/munge").mkdir(exist_ok=True)
        subprocess.run(["munged", "--force"], check=True, capture_output=True)
        started_munge = True
        _wait(_munge_works, "munged")
    daemons = [
        subprocess.Popen([daemon, "-D"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for daemon in ("slurmctld", "slurmd")
    ]
    try:
        _wait(
            lambda: (
                "idle" in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
            ),
            "the node to be idle",
        )
        yield env
    finally:
        for daemon in daemons:
            daemon.terminate()
            daemon.wait(timeout=30)
        if started_munge:
            pid = Path("/run/munge/munged.pid")
            if pid.exists():
                subprocess.run(["kill", pid.read_text().strip()])


def _sweep(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synapses_study.training.sweep", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _files(results: Path) -> dict[str, bytes]:
    """Every file of every run folder; the metrics without their wall-clock column."""
    files = {}
    for path in sorted(results.glob("*/*")):
        if path.name == ".lock" or path.parent.name.startswith("."):
            continue
        data = path.read_bytes()
        if path.name == "metrics.csv.xz":
            data = b"\n".join(line.rsplit(b",", 1)[0] for line in lzma.decompress(data).splitlines())
        if path.name == "manifest.json":  # its hash of the metrics covers the wall-clock column too
            manifest = json.loads(data)
            del manifest["files"]["metrics.csv.xz"]
            data = json.dumps(manifest, sort_keys=True).encode()
        files[str(path.relative_to(results))] = data
    return files


def test_a_sweep_through_slurm_matches_the_local_executor_and_reruns_as_a_no_op(cluster, tmp_path):
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(SWEEP)
    through_slurm = _sweep(
        [
            str(sweep),
            "--executor",
            "slurm",
            "--partition",
            "test",
            "--time",
            "10",
            "--results-dir",
            str(tmp_path / "slurm"),
        ],
        cluster,
    )
    assert through_slurm.returncode == 0, through_slurm.stdout + through_slurm.stderr
    assert "2 finished" in through_slurm.stdout
    logs = list((tmp_path / "slurm" / ".sweep-logs" / "tiny").glob("*_log.out"))
    assert logs, "no Slurm job logs: the runs did not go through sbatch"

    local = _sweep([str(sweep), "--executor", "local", "--results-dir", str(tmp_path / "local")], cluster)
    assert local.returncode == 0, local.stdout + local.stderr
    slurm_files, local_files = _files(tmp_path / "slurm"), _files(tmp_path / "local")
    assert len(slurm_files) == 2 * 6  # config, environment, metrics, topology, model, manifest per run
    assert slurm_files == local_files

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "slurm").glob("*/*")}
    again = _sweep(
        [str(sweep), "--executor", "slurm", "--partition", "test", "--results-dir", str(tmp_path / "slurm")], cluster
    )
    assert again.returncode == 0 and "2 done" in again.stdout, again.stdout + again.stderr
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "slurm").glob("*/*")} == stamps
