"""MNIST, offline: the committed IDX files, checked, decompressed once, held as tensors.

The four IDX files live in ``data/mnist/`` of the repository, xz-compressed (``.xz``; the
usual ``.gz`` files are read too, e.g. from ``$SYNAPSES_MNIST_DIR``). :func:`load_mnist` checks
them (md5 of the uncompressed bytes), decompresses them once into
``<cache>/MNIST/raw/`` where torchvision's ``datasets.MNIST`` reads them with
``download=False``, and returns the normalised images as in-memory tensors, so an epoch
is a permutation and a few hundred slices, never a per-image transform.

Where the files come from: ``source`` argument, else ``$SYNAPSES_MNIST_DIR``, else the
repository's ``data/mnist``. Where they are decompressed: ``cache`` argument, else
``$SYNAPSES_CACHE_DIR``, else the repository's ``.cache``. ``download=True`` lets
torchvision fetch the files into the cache instead when none are found (needs a network).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import lzma
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from .config import ConfigError
from .paths import CACHE, MNIST_DIR

MEAN, STD = 0.1307, 0.3081

# md5 of the uncompressed IDX files (the ones torchvision reads)
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


class MNISTFileError(RuntimeError):
    """An MNIST file is missing or does not have the expected checksum."""


@dataclass(frozen=True)
class MNISTTensors:
    """Normalised MNIST in memory.

    Attributes:
        train_x: ``(60000, 784)`` float32, ``(pixel / 255 - 0.1307) / 0.3081``.
        train_y: ``(60000,)`` int64 labels.
        test_x: ``(10000, 784)`` float32.
        test_y: ``(10000,)`` int64.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def to(self, device: torch.device) -> MNISTTensors:
        """The same tensors on ``device`` (these, where they are there already)."""
        return MNISTTensors(
            self.train_x.to(device), self.train_y.to(device), self.test_x.to(device), self.test_y.to(device)
        )


def default_source() -> Path:
    return Path(os.environ.get("SYNAPSES_MNIST_DIR", MNIST_DIR))


def default_cache() -> Path:
    return Path(os.environ.get("SYNAPSES_CACHE_DIR", CACHE))


def packed_file(source: Path, name: str) -> Path:
    """The compressed file of ``name`` in ``source``: ``.xz`` if there, else ``.gz``."""
    xz = source / f"{name}.xz"
    return xz if xz.exists() else source / f"{name}.gz"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare_raw_files(source: Path, cache: Path) -> Path:
    """Check and decompress the four files into ``cache/MNIST/raw``; return ``cache``.

    Already decompressed files with the right checksum are kept. A file is written under a
    temporary name of its own and renamed once complete, so an interrupted run never leaves
    a partial file where torchvision would read it, and runs that start together on a fresh
    checkout (a sweep's first jobs) each write their own copy instead of racing on one.

    Raises:
        MNISTFileError: naming the file and its expected md5, if a file is missing or wrong.
    """
    raw = cache / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, md5 in MNIST_MD5.items():
        target = raw / name
        if target.exists() and _md5(target) == md5:
            continue
        packed = packed_file(source, name)
        if not packed.exists():
            raise MNISTFileError(
                f"MNIST file {name} is missing from {source} (looked for {name}.xz and {name}.gz; expected md5 {md5} "
                "once decompressed); "
                "run from a checkout of this repository (the study finds data/mnist/ from the working directory), or "
                "set SYNAPSES_ROOT or SYNAPSES_MNIST_DIR"
            )
        with tempfile.NamedTemporaryFile(dir=raw, prefix=f"{name}.", suffix=".partial", delete=False) as handle:
            partial = Path(handle.name)
        opener = lzma.open if packed.suffix == ".xz" else gzip.open
        try:
            with opener(packed, "rb") as f_in, open(partial, "wb") as f_out:
                while block := f_in.read(1 << 20):
                    f_out.write(block)
        except OSError as err:
            partial.unlink(missing_ok=True)
            if err.errno == errno.ENOSPC:  # the cache's disk, not the data: say so
                raise MNISTFileError(
                    f"no space left on the device of the MNIST cache {raw} (about 55 MB needed); free some or point "
                    "the cache elsewhere"
                ) from None
            raise MNISTFileError(f"MNIST file {packed} cannot be decompressed ({err}); expected md5 {md5}") from err
        except (EOFError, lzma.LZMAError) as err:
            partial.unlink(missing_ok=True)
            raise MNISTFileError(f"MNIST file {packed} cannot be decompressed ({err}); expected md5 {md5}") from err
        if (found := _md5(partial)) != md5:
            partial.unlink()
            raise MNISTFileError(f"MNIST file {packed} is corrupt: md5 {found} once decompressed, expected {md5}")
        os.replace(partial, target)
    return cache


def load_mnist(
    source: str | Path | None = None, cache: str | Path | None = None, download: bool = False
) -> MNISTTensors:
    """MNIST as normalised tensors (see :class:`MNISTTensors`), through torchvision."""
    from torchvision import datasets  # imported here: torchvision is slow to import

    source = Path(source) if source is not None else default_source()
    cache = Path(cache) if cache is not None else default_cache()
    if download and not all(packed_file(source, name).exists() for name in MNIST_MD5):
        root = cache  # let torchvision fetch into the cache (network needed)
    else:
        root = prepare_raw_files(source, cache)
    splits = [datasets.MNIST(str(root), train=train, download=download) for train in (True, False)]

    def normalise(images: torch.Tensor) -> torch.Tensor:
        return ((images.reshape(len(images), -1).float() / 255) - MEAN) / STD

    train, test = splits
    return MNISTTensors(normalise(train.data), train.targets.long(), normalise(test.data), test.targets.long())


InputScale = Literal["standardized", "unit", "scaled"]


def prepare_data(
    data: MNISTTensors, train_size: int | None = None, test_size: int | None = None, inputs: InputScale = "standardized"
) -> MNISTTensors:
    """The first ``train_size`` / ``test_size`` images (all for ``None``) at the scale ``inputs``.

    ``"standardized"`` leaves ``data`` as loaded. ``"unit"`` undoes the standardisation:
    pixels in [0, 1], blank pixels exactly 0, so that weights from blank pixels receive no
    gradient at all. ``"scaled"`` undoes only the centring: pixels in [0, 1 / 0.3081], the
    standardised scale with blank pixels at 0.
    """
    for name, size, available in (
        ("train_size", train_size, len(data.train_y)),
        ("test_size", test_size, len(data.test_y)),
    ):
        if size is not None and size > available:
            raise ConfigError(
                f"{name}={size} asks for more images than the {available:,} there are; use at most {available} (or "
                "None: all)"
            )
    train_x, test_x = data.train_x[:train_size], data.test_x[:test_size]
    if inputs == "unit":
        train_x, test_x = ((x * STD + MEAN).clamp_(0, 1) for x in (train_x, test_x))
    elif inputs == "scaled":
        train_x, test_x = ((x * STD + MEAN).clamp_(0, 1) / STD for x in (train_x, test_x))
    return MNISTTensors(train_x, data.train_y[:train_size], test_x, data.test_y[:test_size])
