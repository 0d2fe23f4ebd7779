import gzip
import lzma
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from synapses_study.setup.data import (
    MEAN,
    MNIST_MD5,
    STD,
    MNISTFileError,
    default_source,
    load_mnist,
    packed_file,
    prepare_raw_files,
)

TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_genuine_mnist(mnist):
    assert mnist.train_x.shape == (60000, 784) and mnist.train_x.dtype == torch.float32
    assert mnist.test_x.shape == (10000, 784)
    assert torch.bincount(mnist.train_y).tolist() == TRAIN_CLASS_COUNTS
    assert torch.bincount(mnist.test_y).tolist() == TEST_CLASS_COUNTS
    # normalisation: mean pixel 33.318 / 255 before it, a blank pixel at -0.424 after
    raw_mean = (mnist.train_x.double() * STD + MEAN).mean() * 255
    assert raw_mean.item() == pytest.approx(33.318, abs=1e-3)
    assert mnist.train_x.min().item() == pytest.approx(-MEAN / STD, abs=1e-6)


def _copy_sources(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    shutil.copytree(default_source(), source)
    return source


def test_missing_file_names_file_and_checksum(tmp_path):
    source = _copy_sources(tmp_path)
    packed_file(source, "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(
        MNISTFileError,
        match=(
            r"t10k-labels-idx1-ubyte is missing from .*looked for t10k-labels-idx1-ubyte\.xz and .*\.gz; expected md5 "
            r"27ae3e4e09519cfbb04c329615203637"
        ),
    ):
        prepare_raw_files(source, tmp_path / "cache")


def test_corrupt_file_is_rejected_and_never_left_in_the_cache(tmp_path):
    source = _copy_sources(tmp_path)
    labels = packed_file(source, "t10k-labels-idx1-ubyte")
    content = bytearray(lzma.decompress(labels.read_bytes()))
    content[100] ^= 0xFF
    labels.write_bytes(lzma.compress(bytes(content)))
    with pytest.raises(MNISTFileError, match=r"corrupt.*expected 27ae3e4e09519cfbb04c329615203637"):
        prepare_raw_files(source, tmp_path / "cache")
    raw = tmp_path / "cache" / "MNIST" / "raw"
    assert not (raw / "t10k-labels-idx1-ubyte").exists()
    assert not list(raw.glob("*.partial"))


@pytest.mark.parametrize("suffix", [".xz", ".gz"])
def test_truncated_file_is_rejected(tmp_path, suffix):
    source = _copy_sources(tmp_path)
    images = source / f"t10k-images-idx3-ubyte{suffix}"
    if suffix == ".gz":  # the usual gzip files are read too
        images.write_bytes(gzip.compress(lzma.decompress((source / "t10k-images-idx3-ubyte.xz").read_bytes())))
        (source / "t10k-images-idx3-ubyte.xz").unlink()
    images.write_bytes(images.read_bytes()[:10_000])
    with pytest.raises(MNISTFileError, match="t10k-images-idx3-ubyte"):
        prepare_raw_files(source, tmp_path / "cache")


def test_other_roots_by_argument_and_environment(tmp_path, monkeypatch, mnist):
    source = _copy_sources(tmp_path)
    monkeypatch.setenv("SYNAPSES_MNIST_DIR", str(source))
    monkeypatch.setenv("SYNAPSES_CACHE_DIR", str(tmp_path / "envcache"))
    data = load_mnist()
    assert torch.equal(data.test_y, mnist.test_y)
    assert sorted(p.name for p in (tmp_path / "envcache" / "MNIST" / "raw").iterdir()) == sorted(MNIST_MD5)
    data = load_mnist(source=source, cache=tmp_path / "argcache")
    assert np.array_equal(data.test_x.numpy(), mnist.test_x.numpy())


def test_runs_preparing_the_cache_together_do_not_collide(tmp_path, monkeypatch):
    """Two jobs of a sweep on a fresh checkout both decompress MNIST: while this call checks
    its copy of a file, another one (simulated by a nested call) completes the same file."""
    import synapses_study.setup.data as data

    source, cache = _copy_sources(tmp_path), tmp_path / "cache"
    real_md5, interrupted = data._md5, []

    def md5_with_a_rival(path: Path) -> str:
        if path.suffix == ".partial" and not interrupted:
            interrupted.append(path)
            prepare_raw_files(source, cache)  # the other job, start to finish
        return real_md5(path)

    monkeypatch.setattr(data, "_md5", md5_with_a_rival)
    prepare_raw_files(source, cache)
    raw = cache / "MNIST" / "raw"
    assert interrupted and not list(raw.glob("*.partial"))
    assert {p.name: real_md5(p) for p in raw.iterdir()} == MNIST_MD5
